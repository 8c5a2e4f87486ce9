//! Logs as the original release wrote them (lager): one JSON object a line,
//! `{"timestamp", "source": "ServiceBackup", "message", "log_level", "data"}`, with the
//! fields of every enclosing span (such as `backup_guid` and `identifier`) in `data`.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// The `source` of every log line.
pub const SOURCE: &str = "ServiceBackup";

/// Where and how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// lager JSON lines.
    Json,
    /// Human lines for a terminal.
    Text,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output (the daemon and `backup`, as the original).
    Stdout,
    /// Standard error (commands whose standard output is their result).
    Stderr,
}

/// Installs the global log subscriber; events below `min` are dropped.
pub fn init(format: LogFormat, target: LogTarget, min: Level) {
    let layer = LagerLayer {
        format,
        target,
        min,
        lock: Mutex::new(()),
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    // A second init (tests calling twice) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Installs the subscriber of a command: `format` is `json` or `text`; a command whose
/// standard output is its result logs warnings and errors to stderr only.
pub fn init_for(format: &str, logs_to_stdout: bool) {
    let format = if format == "text" {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    if logs_to_stdout {
        init(format, LogTarget::Stdout, Level::INFO);
    } else {
        init(format, LogTarget::Stderr, Level::WARN);
    }
}

/// Logs at lager's fatal level (3): an error that stops the agent.
#[macro_export]
macro_rules! fatal {
    ($($arg:tt)+) => { tracing::error!(fatal = true, $($arg)+) };
}

struct LagerLayer {
    format: LogFormat,
    target: LogTarget,
    min: Level,
    lock: Mutex<()>,
}

/// The fields a span carries, kept in its extensions.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a> {
    map: &'a mut Map<String, Value>,
    message: Option<String>,
}

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.map.insert(field.name().to_string(), value);
        }
    }
}

impl<S> Layer<S> for LagerLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut map = Map::new();
        attrs.record(&mut JsonVisitor {
            map: &mut map,
            message: None,
        });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(map));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor {
                    map: &mut fields.0,
                    message: None,
                });
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.min {
            return;
        }
        let mut data = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    data.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut visitor = JsonVisitor {
            map: &mut data,
            message: None,
        };
        event.record(&mut visitor);
        let message = visitor.message.take().unwrap_or_default();
        let fatal = data.remove("fatal").is_some();
        let log_level = match level {
            Level::TRACE | Level::DEBUG => 0,
            Level::INFO | Level::WARN => 1,
            Level::ERROR if fatal => 3,
            Level::ERROR => 2,
        };
        let line = match self.format {
            LogFormat::Json => json_line(&message, log_level, data),
            LogFormat::Text => text_line(&message, level, &data),
        };
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = match self.target {
            LogTarget::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
            LogTarget::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
        };
    }
}

fn json_line(message: &str, log_level: u8, data: Map<String, Value>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut line = Map::new();
    line.insert(
        "timestamp".into(),
        Value::String(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
    );
    line.insert("source".into(), Value::String(SOURCE.into()));
    line.insert("message".into(), Value::String(message.into()));
    line.insert("log_level".into(), Value::from(log_level));
    line.insert("data".into(), Value::Object(data));
    Value::Object(line).to_string()
}

fn text_line(message: &str, level: Level, data: &Map<String, Value>) -> String {
    let mut line = format!(
        "{} {:<5} {message}",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S"),
        level
    );
    for (k, v) in data {
        match v {
            Value::String(s) => _ = write!(line, " {k}={s}"),
            other => _ = write!(line, " {k}={other}"),
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_the_lager_shape() {
        let mut data = Map::new();
        data.insert("backup_guid".into(), Value::String("g".into()));
        let line: Value =
            serde_json::from_str(&json_line("Perform backup started", 1, data)).unwrap();
        assert_eq!(line["source"], "ServiceBackup");
        assert_eq!(line["message"], "Perform backup started");
        assert_eq!(line["log_level"], 1);
        assert_eq!(line["data"]["backup_guid"], "g");
        let ts: f64 = line["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(ts > 1.7e9);
    }
}
