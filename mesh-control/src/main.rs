//! `mesh-control`: the development control plane binary.

fn main() {}
