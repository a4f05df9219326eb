//! Benchmark support (the benches come with the performance issue).
