//! JSON-lines logging on stdout, in the shape Thruster's logs have
//! (`time`, `level`, `msg`, then the event's fields), so log pipelines built
//! for Thruster keep working.
//!
//! Lifecycle and diagnostic lines come through `tracing`; the per-request
//! line, written for every request, is written directly (`line`),
//! without allocation. Both go through `sink`, which writes to stdout from a
//! thread of its own.
//!
//! The log layer owns the line format and the writer thread; it calls no
//! other layer (every layer logs through it or through `tracing`).

pub mod json;
mod sink;
pub mod throttle;

use std::time::Duration;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Installs the global logger: debug level when `debug` is set, else info.
pub fn init(debug: bool) {
    let max_level = if debug { Level::DEBUG } else { Level::INFO };
    let layer = JsonLines { max_level };
    // A second init (tests driving `run` twice) keeps the first logger.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

struct JsonLines {
    max_level: Level,
}

impl<S: Subscriber> Layer<S> for JsonLines {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= self.max_level && metadata.target().starts_with("thrust")
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        fields.0.insert(
            "time".into(),
            Value::String(
                humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            ),
        );
        fields.0.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        event.record(&mut fields);
        let mut line = Value::Object(fields.0).to_string();
        line.push('\n');
        sink::append(line.as_bytes());
    }
}

/// Writes one line directly: time, level, msg, then what `fields` adds.
pub fn line(level: &str, msg: &str, fields: impl FnOnce(&mut json::Line)) {
    json::build(level, msg, fields, sink::append);
}

/// Waits (a bounded time) until every line logged so far is on stdout:
/// called once, before thrust exits.
pub fn flush() {
    sink::flush(Duration::from_secs(2));
}

struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" => "msg",
            other => other,
        };
        self.0.insert(name.to_string(), value);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}
