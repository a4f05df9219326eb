//! Resilience: request replay for transparent retries (gRFC A6). Retries with budgets,
//! timeouts, circuit breaking and fault injection come with the resilience work.

pub mod replay;
