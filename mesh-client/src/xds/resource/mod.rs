//! Decoding and validation of xDS resources into [`crate::config`] values (gRFC A27, A28, A46).
