//! Tests of the inbound listeners and their RBAC.
