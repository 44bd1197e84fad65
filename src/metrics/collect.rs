//! Values read when /metrics is scraped rather than counted as they change:
//! the app's state, what the cache holds, certificate expiry.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::pipeline::cache;
use crate::readiness::{Health, Readiness};
use crate::tls::Certificates;

const STATES: [(Health, &str); 4] = [
    (Health::Starting, "starting"),
    (Health::Ready, "ready"),
    (Health::Draining, "draining"),
    (Health::Stopped, "stopped"),
];

pub struct Collected {
    pub readiness: Arc<Readiness>,
    pub cache: cache::Store,
    pub certificates: Option<Certificates>,
}

impl std::fmt::Debug for Collected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collected")
    }
}

/// One gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let health = self.readiness.health();
        let mut states = encoder.encode_descriptor(
            "app_state",
            "1 for the state the app is in: starting (booting, or down after a failure), ready, draining (thrust is stopping), stopped",
            None,
            MetricType::Gauge,
        )?;
        for (state, name) in STATES {
            let labels = [("state", name)];
            ConstGauge::new(i64::from(state == health)).encode(states.encode_family(&labels)?)?;
        }

        let (urls, bytes) = self.cache.held();
        gauge(
            &mut encoder,
            "cache_entries",
            "URLs with a response in the cache",
            None,
            i64::try_from(urls).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "cache",
            "Bytes the cache holds, as counted against CACHE_SIZE",
            Some(&Unit::Bytes),
            i64::try_from(bytes).unwrap_or(i64::MAX),
        )?;

        let expiries = self
            .certificates
            .as_ref()
            .map(Certificates::expiries)
            .unwrap_or_default();
        if !expiries.is_empty() {
            let mut family = encoder.encode_descriptor(
                "certificate_expiry_timestamp",
                "When the certificate served for a domain expires (Unix time)",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (domain, at) in expiries {
                let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let labels = [("domain", domain.as_str())];
                ConstGauge::new(i64::try_from(seconds).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
