//! Endpoint pools and pickers (gRFC A27 round robin with locality and endpoint weights).
