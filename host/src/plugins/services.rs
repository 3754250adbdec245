//! What the host calls of every plugin's jobs reach beyond their store.

use std::sync::Arc;

use super::kv::{CommittedKv, NoKv};
use crate::metrics::HttpMetrics;

/// Shared by every job of a runtime.
#[derive(Clone)]
pub struct Services {
    /// Where outbound HTTP requests are counted.
    pub http_metrics: Arc<HttpMetrics>,
    /// Where jobs read committed key-value state.
    pub kv: Arc<dyn CommittedKv>,
}

impl Services {
    /// Metrics of their own and no key-value store: for commands that run
    /// no jobs, or tests.
    pub fn standalone() -> Self {
        Services {
            http_metrics: Arc::new(HttpMetrics::default()),
            kv: Arc::new(NoKv),
        }
    }
}
