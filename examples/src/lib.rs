//! Shared pieces of the examples: the greeter service implementation.
