//! What /metrics reads when scraped from the parts the pipeline holds: the
//! app's state, what the cache holds, when the certificates expire.

use std::sync::Arc;
use std::time::SystemTime;

use super::cache;
use crate::app::readiness::{Health, Readiness};
use crate::metrics::collect::Scraped;
use crate::tls::Certificates;

pub struct Gauges {
    pub readiness: Arc<Readiness>,
    pub cache: cache::Store,
    pub certificates: Option<Certificates>,
}

impl Scraped for Gauges {
    fn app_state(&self) -> &'static str {
        match self.readiness.health() {
            Health::Starting => "starting",
            Health::Ready => "ready",
            Health::Draining => "draining",
            Health::Stopped => "stopped",
        }
    }

    fn cache_held(&self) -> (u64, u64) {
        self.cache.held()
    }

    fn certificate_expiries(&self) -> Vec<(String, SystemTime)> {
        self.certificates
            .as_ref()
            .map(Certificates::expiries)
            .unwrap_or_default()
    }
}
