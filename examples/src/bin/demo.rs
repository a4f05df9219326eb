//! The demo (in progress).
fn main() {}
