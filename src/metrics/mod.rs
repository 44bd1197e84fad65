//! Prometheus metrics, when THRUST_METRICS_PORT is set: what thrust counts
//! as requests pass, on prometheus-client's metrics. Labelled series are
//! looked up once, here, so recording a request is a few atomic additions
//! and one histogram observation; nothing is recorded without the port.
//!
//! The metrics layer owns the series and their encoding, and the /metrics
//! listener. It may call conn (its accept loop) and memory (the allocator's
//! figures) and nothing else: what is read at scrape time comes from the
//! layers above through `collect::Scraped`.

pub mod collect;
pub mod endpoint;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

type Labels = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const CACHE_OUTCOMES: [&str; 3] = ["hit", "miss", "bypass"];
const ENCODINGS: [&str; 4] = ["zstd", "br", "gzip", "dcz"];
const PROTOCOLS: [&str; 4] = ["http/1.1", "h2", "h2c", "h3"];

/// Request durations, in seconds: from a cached asset to a slow page.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why the app was started again.
#[derive(Clone, Copy)]
pub enum RestartReason {
    /// THRUST_RESTART=on-failure after the app failed.
    Failure,
    /// `thrust restart`.
    Command,
}

/// The protocol of a client connection, as counted in the open-connections gauge.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1 = 0,
    H2 = 1,
    H2c = 2,
    H3 = 3,
}

pub struct Metrics {
    registry: Registry,
    requests: Vec<Counter>,
    duration: Histogram,
    request_body_bytes: Counter,
    response_body_bytes: Counter,
    cache: [Counter; 3],
    compressed: [Counter; 4],
    files_sent: Counter,
    upstream_connect_errors: Counter,
    upstream_timeouts: Counter,
    bad_gateway: Counter,
    open_connections: [Gauge; 4],
    parked: Gauge,
    connections_refused: Counter,
    connections_shed: [Counter; 3],
    restarts: [Counter; 2],
}

/// A counter without labels, registered.
fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

/// A gauge without labels, registered.
fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

/// A counter of bytes, registered.
fn bytes(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register_with_unit(name, help, Unit::Bytes, counter.clone());
    counter
}

/// A family with one label, registered, and its series for each of
/// `values`, looked up once.
fn labelled<M, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [M; N]
where
    M: Clone + Default + prometheus_client::metrics::TypedMetric,
    M: prometheus_client::encoding::EncodeMetric + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<Labels, M>::default();
    let series = values.map(|value| family.get_or_create(&[(label, value)]).clone());
    registry.register(name, help, family);
    series
}

/// Requests by method and status class: one series per pair, looked up once.
fn requests(registry: &mut Registry) -> Vec<Counter> {
    let family = Family::<Labels2, Counter>::default();
    let requests = METHODS
        .iter()
        .flat_map(|method| {
            STATUS_CLASSES.iter().map(|status| {
                family
                    .get_or_create(&[("method", method), ("status", status)])
                    .clone()
            })
        })
        .collect();
    registry.register(
        "http_requests",
        "Requests answered, by method and status class",
        family,
    );
    requests
}

impl Metrics {
    /// Registers every metric; `collected` adds the values read at scrape time.
    pub fn new(collected: collect::Collected) -> Arc<Self> {
        let mut registry = Registry::with_prefix("thrust");
        registry.register_collector(Box::new(collected));
        let r = &mut registry;
        r.register(
            "build",
            "thrust's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let duration = Histogram::new(DURATION_BUCKETS);
        r.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to the end of its response",
            Unit::Seconds,
            duration.clone(),
        );
        Arc::new(Metrics {
            requests: requests(r),
            duration,
            request_body_bytes: bytes(r, "http_request_body", "Request body bytes received from clients"),
            response_body_bytes: bytes(r, "http_response_body", "Response body bytes sent to clients"),
            cache: labelled(r, "cache_requests", "Requests the response cache looked at: hit (answered from the cache), miss (from the app, storable), bypass (not cacheable)", "outcome", CACHE_OUTCOMES),
            compressed: labelled(r, "compressed_responses", "Responses sent with a Content-Encoding: compressed by thrust, from its cache, or precompressed by the app", "encoding", ENCODINGS),
            files_sent: counter(r, "sendfile_responses", "Responses whose body is a file the app named with X-Sendfile or X-Accel-Redirect"),
            upstream_connect_errors: counter(r, "upstream_connect_errors", "Connections to the app that failed to open"),
            upstream_timeouts: counter(r, "upstream_timeouts", "Requests answered 504: no response head from the app within THRUST_UPSTREAM_TIMEOUT"),
            bad_gateway: counter(r, "bad_gateway_responses", "Requests answered 502: the app was not ready in time, unreachable, or broke the connection"),
            open_connections: labelled(r, "open_connections", "Client connections open, by protocol", "protocol", PROTOCOLS),
            parked: gauge(r, "parked_connections", "Idle keep-alive client connections parked: hyper's buffers freed, the socket kept"),
            connections_refused: counter(r, "refused_connections", "Client connections refused at THRUST_MAX_CONNECTIONS: every open connection was busy"),
            connections_shed: labelled(r, "shed_connections", "Client connections closed for room: at THRUST_MAX_CONNECTIONS the longest idle (idle) or a request head coming for 100 ms or more (slow_head); the oldest request head when heads being read hold their whole memory budget (head_memory)", "reason", ["idle", "slow_head", "head_memory"]),
            restarts: labelled(r, "app_restarts", "Times the app was started again: after a failure (THRUST_RESTART=on-failure) or by thrust restart", "reason", ["failure", "command"]),
            // Last: the fields above register through `r`.
            registry,
        })
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "Cannot encode the metrics");
        }
        text
    }

    /// A request is done: its response was sent (or abandoned).
    pub fn request_done(
        &self,
        method: &Method,
        status: u16,
        took: Duration,
        sent: u64,
        cache: Option<&HeaderValue>,
        encoding: Option<&HeaderValue>,
    ) {
        let method = METHODS
            .iter()
            .position(|m| *m == method.as_str())
            .unwrap_or(METHODS.len() - 1);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[method * STATUS_CLASSES.len() + class].inc();
        self.duration.observe(took.as_secs_f64());
        self.response_body_bytes.inc_by(sent);
        if let Some(index) = cache.and_then(|c| position(&CACHE_OUTCOMES, c)) {
            self.cache[index].inc();
        }
        if let Some(index) = encoding.and_then(|e| position(&ENCODINGS, e)) {
            self.compressed[index].inc();
        }
    }

    /// Counts request body bytes as they arrive.
    pub fn request_body_bytes(&self) -> Counter {
        self.request_body_bytes.clone()
    }

    pub fn file_sent(&self) {
        self.files_sent.inc();
    }

    pub fn upstream_connect_error(&self) {
        self.upstream_connect_errors.inc();
    }

    pub fn upstream_timeout(&self) {
        self.upstream_timeouts.inc();
    }

    pub fn bad_gateway(&self) {
        self.bad_gateway.inc();
    }

    /// A new connection at the limit: one closed to make room for it
    /// (`Some`: 0 idle, 1 slow head), or it was refused (`None`).
    pub fn connection_turned_away(&self, shed: Option<usize>) {
        match shed.and_then(|reason| self.connections_shed.get(reason)) {
            Some(counter) => counter.inc(),
            None => self.connections_refused.inc(),
        };
    }

    /// The oldest heads being read were closed: heads held their whole
    /// budget.
    pub fn heads_closed_for_memory(&self, closed: usize) {
        self.connections_shed[2].inc_by(closed as u64);
    }

    pub fn app_restarted(&self, reason: RestartReason) {
        self.restarts[reason as usize].inc();
    }

    /// Counts a client connection as open, under `protocol`, until the
    /// returned guard is dropped.
    pub fn connection_opened(self: &Arc<Self>, protocol: Protocol) -> OpenClientConnection {
        self.open_connections[protocol as usize].inc();
        OpenClientConnection {
            metrics: self.clone(),
            protocol: AtomicU8::new(protocol as u8),
        }
    }
}

fn position(values: &[&str], header: &HeaderValue) -> Option<usize> {
    values
        .iter()
        .position(|v| v.as_bytes() == header.as_bytes())
}

/// A client connection counted in the open-connections gauge.
pub struct OpenClientConnection {
    metrics: Arc<Metrics>,
    protocol: AtomicU8,
}

impl OpenClientConnection {
    /// A cleartext HTTP/1 connection turned out to speak HTTP/2 (prior
    /// knowledge): counted as h2c from now on.
    pub fn saw_http2(&self) {
        let moved = self.protocol.compare_exchange(
            Protocol::Http1 as u8,
            Protocol::H2c as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if moved.is_ok() {
            self.metrics.open_connections[Protocol::Http1 as usize].dec();
            self.metrics.open_connections[Protocol::H2c as usize].inc();
        }
    }
}

/// A client connection counted in the parked-connections gauge while parked.
pub struct ParkedConnection(Arc<Metrics>);

impl OpenClientConnection {
    /// Counts the connection as parked until the returned guard is dropped.
    pub fn parked(&self) -> ParkedConnection {
        self.metrics.parked.inc();
        ParkedConnection(self.metrics.clone())
    }
}

impl Drop for ParkedConnection {
    fn drop(&mut self) {
        self.0.parked.dec();
    }
}

impl Drop for OpenClientConnection {
    fn drop(&mut self) {
        let protocol = usize::from(self.protocol.load(Ordering::Acquire));
        self.metrics.open_connections[protocol].dec();
    }
}
