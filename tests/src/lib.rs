//! Test support: spawning backends, control planes and clients on loopback.

pub mod gocp;
