//! Unit tests of the telemetry module: propagation round trips, B3, body observation.

use super::*;

#[test]
fn paths_split_into_service_and_method() {
    assert_eq!(split_path("/a.B/C"), Some(("a.B", "C")));
    assert_eq!(split_path("/a.B/C/D"), None);
    assert_eq!(split_path("a.B/C"), None);
    assert_eq!(split_path("//C"), None);
}
