//! Resilience on the request path, in the order a call meets it: fault injection (gRFC
//! A33), the call deadline (A31), then per attempt the circuit breaker (A32) and, after a
//! retryable failure, retry with backoff (A44/A6) within a retry budget (ours), replaying
//! the recorded request body.

pub mod breaker;
pub mod budget;
pub mod fault;
pub mod replay;
pub mod retry;
pub mod timeout;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Process-wide state shared by every channel that uses the same key (a cluster): gRFC A32
/// shares circuit-breaker counters this way, and our retry budgets follow suit. Only touched
/// when a config is built, never per request.
#[derive(Debug)]
pub(crate) struct SharedRegistry<T> {
    entries: Mutex<HashMap<String, Weak<T>>>,
}

impl<T> SharedRegistry<T> {
    pub(crate) fn new() -> Self {
        SharedRegistry {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The live value for `key`, or a new one from `make`.
    pub(crate) fn get_or_insert(&self, key: &str, make: impl FnOnce() -> T) -> Arc<T> {
        let Ok(mut map) = self.entries.lock() else {
            // A poisoned registry only loses sharing, never correctness of one channel.
            return Arc::new(make());
        };
        if let Some(live) = map.get(key).and_then(Weak::upgrade) {
            return live;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let value = Arc::new(make());
        map.insert(key.to_string(), Arc::downgrade(&value));
        value
    }
}
