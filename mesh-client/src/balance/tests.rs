//! Picker tests over fake endpoints (no network): distributions with fixed seeds and a
//! virtual-time simulation for the load-aware policies.
