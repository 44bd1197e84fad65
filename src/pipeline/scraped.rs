//! What /metrics reads when scraped from the parts the pipeline holds: the
//! app's state, what the cache holds, when the certificates expire, the
//! connections to the app.

use std::sync::Arc;
use std::time::SystemTime;

use super::cache;
use crate::app::app_connections::AppConnections;
use crate::app::readiness::{Health, Readiness};
use crate::metrics::collect::Scraped;
use crate::tls::Certificates;

pub struct Gauges {
    pub readiness: Arc<Readiness>,
    pub cache: cache::Store,
    pub certificates: Option<Certificates>,
    /// Each worker's pool's share of THRUST_MAX_APP_CONNECTIONS.
    pub app_connections: Vec<Arc<AppConnections>>,
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

    fn dictionaries_held(&self) -> u64 {
        self.cache.dictionaries_held()
    }

    fn certificate_expiries(&self) -> Vec<(String, SystemTime)> {
        self.certificates
            .as_ref()
            .map(Certificates::expiries)
            .unwrap_or_default()
    }

    fn app_connections(&self) -> (u64, u64) {
        self.app_connections
            .iter()
            .fold((0, 0), |(open, counted), pool| {
                let (o, c) = pool.open_and_counted();
                (open + o as u64, counted + c as u64)
            })
    }
}
