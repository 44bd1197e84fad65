//! Values read when /metrics is scraped rather than counted as they change:
//! the app's state, what the cache holds, certificate expiry, the heap.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// The app's states, as `app_state` labels them.
const STATES: [&str; 4] = ["starting", "ready", "draining", "stopped"];

/// What the layers above report when /metrics is scraped: the metrics layer
/// encodes what it is given and reaches into no other layer.
pub trait Scraped: Send + Sync {
    /// One of `STATES`.
    fn app_state(&self) -> &'static str;
    /// URLs with a response in the cache, and the bytes counted against CACHE_SIZE.
    fn cache_held(&self) -> (u64, u64);
    /// Bytes compression dictionaries and their deltas hold, as weighed
    /// against their budget (0 with THRUST_COMPRESSION_DICTIONARIES off).
    fn dictionaries_held(&self) -> u64;
    /// When the certificate served for each domain expires.
    fn certificate_expiries(&self) -> Vec<(String, SystemTime)>;
    /// Connections to the app open, and those counted against
    /// THRUST_MAX_APP_CONNECTIONS (event streams and WebSockets are not).
    fn app_connections(&self) -> (u64, u64);
}

pub struct Collected(pub Box<dyn Scraped>);

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
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

/// One gauge family: a value for each value of the one label.
fn labelled_gauges<'a>(
    encoder: &mut DescriptorEncoder,
    (name, help, unit): (&str, &str, Option<&Unit>),
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (label_value, value) in values {
        let labels = [(label, label_value)];
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
            .encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let current = self.0.app_state();
        labelled_gauges(
            &mut encoder,
            (
                "app_state",
                "1 for the state the app is in: starting (booting, or down after a failure), ready, draining (thrust is stopping), stopped",
                None,
            ),
            "state",
            STATES.map(|state| (state, u64::from(state == current))),
        )?;

        let (urls, bytes) = self.0.cache_held();
        gauge(
            &mut encoder,
            "cache_entries",
            "URLs with a response in the cache",
            None,
            urls,
        )?;
        gauge(
            &mut encoder,
            "cache",
            "Bytes the cache holds, as counted against CACHE_SIZE",
            Some(&Unit::Bytes),
            bytes,
        )?;
        gauge(
            &mut encoder,
            "dictionary",
            "Bytes compression dictionaries and their deltas hold, within a quarter of CACHE_SIZE",
            Some(&Unit::Bytes),
            self.0.dictionaries_held(),
        )?;

        let (open, counted) = self.0.app_connections();
        gauge(
            &mut encoder,
            "app_connections",
            "Connections to the app open, in every worker's pool",
            None,
            open,
        )?;
        gauge(
            &mut encoder,
            "app_connections_counted",
            "Connections to the app counted against THRUST_MAX_APP_CONNECTIONS: all but event streams, WebSockets and uploads opened past it",
            None,
            counted,
        )?;

        if let Some(heap) = crate::memory::heap::read() {
            labelled_gauges(
                &mut encoder,
                (
                    "heap",
                    "Bytes the allocator has given out and not had back (in_use), and keeps resident beyond them (free: room in its pages, pages freed and not yet returned to the system, its bookkeeping)",
                    Some(&Unit::Bytes),
                ),
                "state",
                [("in_use", heap.in_use), ("free", heap.free)],
            )?;
        }

        let expiries = self.0.certificate_expiries();
        if !expiries.is_empty() {
            labelled_gauges(
                &mut encoder,
                (
                    "certificate_expiry_timestamp",
                    "When the certificate served for a domain expires (Unix time)",
                    Some(&Unit::Seconds),
                ),
                "domain",
                expiries.iter().map(|(domain, at)| {
                    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    (domain.as_str(), seconds)
                }),
            )?;
        }
        Ok(())
    }
}
