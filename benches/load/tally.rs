//! What the load generators (`paced_clients`, `h3_load`) count and print:
//! the latencies of requests answered after warm-up, the failures, and one
//! JSON line with the requests, the rate and the latency percentiles in ms.

/// What one client or stream saw.
#[derive(Default)]
pub struct Seen {
    /// Microseconds per request answered after warm-up.
    pub latencies: Vec<u32>,
    pub errors: u64,
}

impl Seen {
    pub fn answered(&mut self, latency: std::time::Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.latencies.push(micros);
    }

    pub fn add(&mut self, other: Seen) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
    }
}

/// Prints `all` over `seconds` measured: requests, errors, rps, p50, p99,
/// p999, max.
pub fn report(mut all: Seen, seconds: f64) {
    all.latencies.sort_unstable();
    let ms = |p: f64| {
        let n = all.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let at = ((n as f64 * p / 100.0) as usize).min(n - 1);
        f64::from(all.latencies[at]) / 1000.0
    };
    println!(
        "{{\"requests\":{},\"errors\":{},\"rps\":{:.1},\"p50\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}}",
        all.latencies.len(),
        all.errors,
        all.latencies.len() as f64 / seconds,
        ms(50.0),
        ms(99.0),
        ms(99.9),
        ms(100.0)
    );
}
