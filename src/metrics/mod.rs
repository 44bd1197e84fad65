//! Prometheus metrics, when THRUST_METRICS_PORT is set: what thrust counts
//! as requests pass, on prometheus-client's metrics. Labelled series are
//! looked up once, here, so recording a request is a few atomic additions
//! and one histogram observation; nothing is recorded without the port.

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
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const CACHE_OUTCOMES: [&str; 3] = ["hit", "miss", "bypass"];
const ENCODINGS: [&str; 3] = ["zstd", "br", "gzip"];
const PROTOCOLS: [&str; 3] = ["http/1.1", "h2", "h2c"];

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
}

pub struct Metrics {
    registry: Registry,
    requests: Vec<Counter>,
    duration: Histogram,
    request_body_bytes: Counter,
    response_body_bytes: Counter,
    cache: [Counter; 3],
    compressed: [Counter; 3],
    files_sent: Counter,
    upstream_connect_errors: Counter,
    upstream_timeouts: Counter,
    bad_gateway: Counter,
    open_connections: [Gauge; 3],
    restarts: [Counter; 2],
}

/// One series of a family per label value, looked up once.
fn series<M>(family: &Family<Labels, M>, name: &'static str, value: &'static str) -> M
where
    M: Clone + Default + prometheus_client::metrics::TypedMetric,
    M: prometheus_client::encoding::EncodeMetric,
{
    family.get_or_create(&[(name, value)]).clone()
}

impl Metrics {
    /// Registers every metric; `collected` adds the values read at scrape time.
    pub fn new(collected: collect::Collected) -> Arc<Self> {
        let mut registry = Registry::with_prefix("thrust");
        registry.register(
            "build",
            "thrust's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );

        let requests_family = Family::<Labels2, Counter>::default();
        let requests = METHODS
            .iter()
            .flat_map(|method| {
                STATUS_CLASSES.iter().map(|status| {
                    requests_family
                        .get_or_create(&[("method", method), ("status", status)])
                        .clone()
                })
            })
            .collect();
        registry.register(
            "http_requests",
            "Requests answered, by method and status class",
            requests_family,
        );

        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to the end of its response",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let request_body_bytes = Counter::default();
        registry.register_with_unit(
            "http_request_body",
            "Request body bytes received from clients",
            prometheus_client::registry::Unit::Bytes,
            request_body_bytes.clone(),
        );
        let response_body_bytes = Counter::default();
        registry.register_with_unit(
            "http_response_body",
            "Response body bytes sent to clients",
            prometheus_client::registry::Unit::Bytes,
            response_body_bytes.clone(),
        );

        let cache_family = Family::<Labels, Counter>::default();
        let cache = CACHE_OUTCOMES.map(|o| series(&cache_family, "outcome", o));
        registry.register(
            "cache_requests",
            "Requests the response cache looked at: hit (answered from the cache), miss (from the app, storable), bypass (not cacheable)",
            cache_family,
        );
        let compressed_family = Family::<Labels, Counter>::default();
        let compressed = ENCODINGS.map(|e| series(&compressed_family, "encoding", e));
        registry.register(
            "compressed_responses",
            "Responses sent with a Content-Encoding: compressed by thrust, from its cache, or precompressed by the app",
            compressed_family,
        );
        let files_sent = Counter::default();
        registry.register(
            "sendfile_responses",
            "Responses whose body is a file the app named with X-Sendfile or X-Accel-Redirect",
            files_sent.clone(),
        );
        let upstream_connect_errors = Counter::default();
        registry.register(
            "upstream_connect_errors",
            "Connections to the app that failed to open",
            upstream_connect_errors.clone(),
        );
        let upstream_timeouts = Counter::default();
        registry.register(
            "upstream_timeouts",
            "Requests answered 504: no response head from the app within THRUST_UPSTREAM_TIMEOUT",
            upstream_timeouts.clone(),
        );
        let bad_gateway = Counter::default();
        registry.register(
            "bad_gateway_responses",
            "Requests answered 502: the app was not ready in time, unreachable, or broke the connection",
            bad_gateway.clone(),
        );
        let connections_family = Family::<Labels, Gauge>::default();
        let open_connections = PROTOCOLS.map(|p| series(&connections_family, "protocol", p));
        registry.register(
            "open_connections",
            "Client connections open, by protocol",
            connections_family,
        );
        let restarts_family = Family::<Labels, Counter>::default();
        let restarts = ["failure", "command"].map(|r| series(&restarts_family, "reason", r));
        registry.register(
            "app_restarts",
            "Times the app was started again: after a failure (THRUST_RESTART=on-failure) or by thrust restart",
            restarts_family,
        );
        registry.register_collector(Box::new(collected));

        Arc::new(Metrics {
            registry,
            requests,
            duration,
            request_body_bytes,
            response_body_bytes,
            cache,
            compressed,
            files_sent,
            upstream_connect_errors,
            upstream_timeouts,
            bad_gateway,
            open_connections,
            restarts,
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

impl Drop for OpenClientConnection {
    fn drop(&mut self) {
        let protocol = usize::from(self.protocol.load(Ordering::Acquire));
        self.metrics.open_connections[protocol].dec();
    }
}
