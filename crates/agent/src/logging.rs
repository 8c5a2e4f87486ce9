//! Logs as the original release wrote them (lager): one JSON object a line,
//! `{"timestamp", "source": "ServiceBackup", "message", "log_level", "data"}` in that key
//! order, the message being `ServiceBackup.<session>.<action>` (a session only where the
//! original opened one), with the fields of every enclosing span (such as `backup_guid` and
//! `identifier`) in `data`, its keys sorted as Go's encoder sorts a map.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;

use chrono::Utc;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// The `source` of every log line, and the first part of every message.
pub const SOURCE: &str = "ServiceBackup";

/// A span field naming a lager session: its value goes into the message between the
/// source and the action (`ServiceBackup.WithIdentifier.Perform backup started`) and the
/// session's number into `data.session`, as lager's `Logger.Session` did.
pub const SESSION_FIELD: &str = "lager_session";

/// Where and how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// lager JSON lines as its writer sink writes them (Unix-seconds timestamp, numeric
    /// `log_level`).
    Json,
    /// lager JSON lines as its pretty sink writes them (RFC 3339 timestamp, `level` word),
    /// the form of the original daemon from v18.4.0 on.
    Pretty,
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
        journal: target_is_journal(target),
        lock: Mutex::new(()),
        capture: None,
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    // A second init (tests calling twice) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Installs the subscriber of a command: `format` is `json`, `pretty` or `text`; a command
/// whose standard output is its result logs warnings and errors to stderr only.
pub fn init_for(format: &str, logs_to_stdout: bool) {
    let format = match format {
        "text" => LogFormat::Text,
        "pretty" => LogFormat::Pretty,
        _ => LogFormat::Json,
    };
    if logs_to_stdout {
        init(format, LogTarget::Stdout, Level::INFO);
    } else {
        init(format, LogTarget::Stderr, Level::WARN);
    }
}

/// Whether `target` is journald's stream: systemd names it in `JOURNAL_STREAM`
/// (`device:inode`) for the standard output and error it connects to the journal, and a
/// stream redirected elsewhere (a file, a pipe) has another device and inode.
fn target_is_journal(target: LogTarget) -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let Ok(named) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let fd = match target {
        LogTarget::Stdout => std::io::stdout().as_fd().try_clone_to_owned(),
        LogTarget::Stderr => std::io::stderr().as_fd().try_clone_to_owned(),
    };
    let Ok(meta) = fd.and_then(|fd| std::fs::File::from(fd).metadata()) else {
        return false;
    };
    names_stream(&named, meta.dev(), meta.ino())
}

/// Whether `JOURNAL_STREAM`'s value names the stream with `dev` and `ino`.
fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    journal_stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The sd-daemon priority of a line (`<3>` error … `<7>` debug, syslog's numbers) that
/// journald reads from the start of each line, so that `journalctl -p err` finds them.
fn journal_priority(level: Level, fatal: bool) -> u8 {
    match level {
        Level::ERROR if fatal => 2,
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Logs at lager's fatal level (3): an error that stops the agent.
#[macro_export]
macro_rules! fatal {
    ($($arg:tt)+) => { tracing::error!(fatal = true, $($arg)+) };
}

/// Libraries whose own lines stay out of the agent's log: rskafka logs every reconnection
/// attempt to a broker that is down (50 to 70 lines per 10 s), and its fatal errors come back
/// to the health sender, which logs its own line once per outage.
const QUIET_TARGETS: &[&str] = &["rskafka"];

/// Families of cloud and HTTP client crates (a target starting with one of these) whose
/// lines stay out: at debug they dump requests and answers, with credentials, session
/// tokens and SAS signatures in them; what they fail at comes back to us as an error,
/// which we log without the secrets.
const QUIET_FAMILIES: &[&str] = &[
    "aws_", "azure_", "typespec", "reqwest", "hyper", "h2", "rustls",
];

/// Whether a line of `target` (a module path) is kept out of the log.
fn is_quiet(target: &str) -> bool {
    QUIET_TARGETS.iter().any(|quiet| {
        target
            .strip_prefix(quiet)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    }) || QUIET_FAMILIES.iter().any(|family| {
        target.strip_prefix(family).is_some_and(|rest| {
            family.ends_with('_')
                || rest.is_empty()
                || rest.starts_with("::")
                || rest.starts_with('_')
        })
    })
}

struct LagerLayer {
    format: LogFormat,
    target: LogTarget,
    min: Level,
    /// The target stream is connected to journald: each line gets its priority prefix.
    journal: bool,
    lock: Mutex<()>,
    /// Lines kept instead of written (the unit tests read them).
    capture: Option<std::sync::Arc<Mutex<Vec<String>>>>,
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
        if level > self.min || is_quiet(event.metadata().target()) {
            return;
        }
        let mut data = Map::new();
        let mut sessions = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &fields.0 {
                        match (k.as_str(), v) {
                            (SESSION_FIELD, Value::String(task)) => sessions.push(task.clone()),
                            _ => _ = data.insert(k.clone(), v.clone()),
                        }
                    }
                }
            }
        }
        if !sessions.is_empty() {
            // lager numbers a logger's sessions from 1, and a session's own ones "1.1"; each
            // run opens its one session on a fresh logger.
            data.insert(
                "session".into(),
                Value::String(vec!["1"; sessions.len()].join(".")),
            );
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
        let mut line = match self.format {
            LogFormat::Json => json_line(&lager_message(&sessions, &message), log_level, &data),
            LogFormat::Pretty => pretty_line(&lager_message(&sessions, &message), log_level, &data),
            LogFormat::Text => text_line(&message, level, &data),
        };
        if self.journal {
            line.insert_str(0, &format!("<{}>", journal_priority(level, fatal)));
        }
        if let Some(capture) = &self.capture {
            capture
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
            return;
        }
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

/// The message of a line: the source, the open sessions, then the action.
fn lager_message(sessions: &[String], action: &str) -> String {
    let mut message = String::from(SOURCE);
    for task in sessions {
        message.push('.');
        message.push_str(task);
    }
    message.push('.');
    message.push_str(action);
    message
}

/// lager's timestamp: Unix seconds as Go's `%.9f` prints the float64 `UnixNano / 1e9`.
fn lager_timestamp(now: std::time::Duration) -> String {
    #[allow(
        clippy::cast_precision_loss,
        reason = "lager divides a float64, so its last digits are rounded the same way"
    )]
    let seconds = now.as_nanos() as f64 / 1e9;
    format!("{seconds:.9}")
}

fn json_line(message: &str, log_level: u8, data: &Map<String, Value>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let text = |s: &str| Value::String(s.into()).to_string();
    // Written by hand: serde_json's map sorts keys, and lager's struct order is the contract.
    let line = format!(
        "{{\"timestamp\":{},\"source\":{},\"message\":{},\"log_level\":{log_level},\"data\":{}}}",
        text(&lager_timestamp(now)),
        text(SOURCE),
        text(message),
        serde_json::to_string(data).unwrap_or_else(|_| "{}".into()),
    );
    go_escape(&line)
}

/// lager's pretty sink: `timestamp` in RFC 3339 with nine fractional digits (UTC), then
/// `level` as a word, `source`, `message`, `data`.
fn pretty_line(message: &str, log_level: u8, data: &Map<String, Value>) -> String {
    let text = |s: &str| Value::String(s.into()).to_string();
    let level = ["debug", "info", "error", "fatal"]
        .get(usize::from(log_level))
        .unwrap_or(&"invalid");
    let timestamp = Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
    let line = format!(
        "{{\"timestamp\":{},\"level\":{},\"source\":{},\"message\":{},\"data\":{}}}",
        text(&timestamp),
        text(level),
        text(SOURCE),
        text(message),
        serde_json::to_string(data).unwrap_or_else(|_| "{}".into()),
    );
    go_escape(&line)
}

/// Escapes as Go's `encoding/json` does by default (`<`, `>`, `&`, U+2028, U+2029); in
/// JSON text these characters only occur inside strings, so the whole line can be mapped.
fn go_escape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
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
    use std::sync::Arc;

    /// The lines `f` logs through a JSON layer, with journald's prefixes when `journal`.
    fn captured_for(journal: bool, f: impl FnOnce()) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let layer = LagerLayer {
            format: LogFormat::Json,
            target: LogTarget::Stdout,
            min: Level::INFO,
            journal,
            lock: Mutex::new(()),
            capture: Some(lines.clone()),
        };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        lines.lock().unwrap().clone()
    }

    /// The lines `f` logs through a JSON layer.
    fn captured(f: impl FnOnce()) -> Vec<String> {
        captured_for(false, f)
    }

    /// Attack finding 9: rskafka's own lines about a broker that is down flooded the log.
    #[test]
    fn rskafka_lines_are_kept_out_at_every_level() {
        let lines = captured(|| {
            tracing::warn!(target: "rskafka::connection", "Failed to connect to broker");
            tracing::error!(target: "rskafka::client::partition", "request encountered fatal error");
            tracing::warn!(target: "rskafkaesque", "a crate of another name");
            tracing::warn!("ours");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("rskafkaesque") || lines[0].contains("another name"));
        assert!(lines[1].contains("ours"), "{lines:?}");
    }

    /// The cloud SDKs' own debug lines carry request and answer dumps (an instance-metadata
    /// answer with its session token, a URL with a SAS signature): never in our log.
    #[test]
    fn cloud_and_http_client_lines_are_kept_out() {
        let lines = captured(|| {
            tracing::error!(target: "aws_config::imds::client", "token=AQoDYXdzEJr");
            tracing::error!(target: "aws_smithy_runtime::client::orchestrator", "answer");
            tracing::error!(target: "azure_core::http::policies", "sig=TOPSECRET");
            tracing::error!(target: "typespec_client_core::http", "sig=TOPSECRET");
            tracing::error!(target: "hyper_util::client", "connection");
            tracing::error!(target: "reqwest::connect", "connection");
            tracing::warn!(target: "h2o", "a crate of another name");
            tracing::warn!("ours");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("another name"), "{lines:?}");
        assert!(lines[1].contains("ours"), "{lines:?}");
        assert!(!lines.concat().contains("TOPSECRET"), "{lines:?}");
    }

    #[test]
    fn lines_to_the_journal_start_with_their_priority() {
        let lines = captured_for(true, || {
            tracing::error!("Upload backup completed with error");
            crate::fatal!("failed to parse config");
            tracing::warn!("a warning");
            tracing::info!("Upload backup started");
        });
        let prefixes: Vec<&str> = lines.iter().map(|l| &l[..l.find('{').unwrap()]).collect();
        assert_eq!(prefixes, ["<3>", "<2>", "<4>", "<6>"], "{lines:?}");
        assert_eq!(journal_priority(Level::DEBUG, false), 7);
        // Elsewhere (a file, a pipe, a terminal) never a prefix.
        let plain = captured(|| tracing::error!("Upload backup completed with error"));
        assert!(plain[0].starts_with('{'), "{plain:?}");
    }

    #[test]
    fn journal_stream_must_name_the_very_stream() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(!names_stream("8:12345", 8, 12346));
        assert!(!names_stream("9:12345", 8, 12345));
        assert!(!names_stream("", 8, 12345));
        assert!(!names_stream("8", 8, 12345));
        assert!(!names_stream("x:y", 8, 12345));
    }

    #[test]
    fn lines_have_lager_key_order_and_message_form() {
        // The original's executor_test.go and s3_integration_test.go expect
        // `"backup_guid":` on every line and, with an identifier, the message
        // "ServiceBackup.WithIdentifier.Perform backup started"; lager's LogFormat
        // struct writes timestamp, source, message, log_level, data in this order.
        let lines = captured(|| {
            tracing::info!("Service-backup Started");
            let span = tracing::info_span!(
                "backup",
                backup_guid = "g-1",
                identifier = tracing::field::Empty,
                lager_session = tracing::field::Empty
            );
            let _entered = span.enter();
            tracing::info!("Perform backup started");
            span.record("identifier", "redis-0");
            span.record(SESSION_FIELD, "WithIdentifier");
            tracing::error!(error = "boom", "Upload backup completed with error");
        });
        assert_eq!(lines.len(), 3, "{lines:?}");
        for line in &lines {
            let keys: Vec<&str> = ["timestamp", "source", "message", "log_level", "data"]
                .iter()
                .map(|k| {
                    let at = line.find(&format!("\"{k}\":")).unwrap();
                    (at, *k)
                })
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_values()
                .collect();
            assert_eq!(
                keys,
                ["timestamp", "source", "message", "log_level", "data"],
                "{line}"
            );
        }
        let v: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v[0]["message"], "ServiceBackup.Service-backup Started");
        assert_eq!(v[0]["data"], serde_json::json!({}));
        assert_eq!(v[1]["message"], "ServiceBackup.Perform backup started");
        assert_eq!(v[1]["data"], serde_json::json!({"backup_guid": "g-1"}));
        assert_eq!(
            v[2]["message"],
            "ServiceBackup.WithIdentifier.Upload backup completed with error"
        );
        assert_eq!(v[2]["log_level"], 2);
        // lager's Session adds "session":"1"; Go's encoder sorts the map's keys.
        assert!(
            lines[2].ends_with(
                r#""data":{"backup_guid":"g-1","error":"boom","identifier":"redis-0","session":"1"}}"#
            ),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn pretty_lines_are_lager_pretty_sink_lines() {
        // lager's prettyLogFormat: timestamp (RFC 3339, nine digits), level, source,
        // message, data; the original daemon's sink from v18.4.0 on (main.go).
        let line = pretty_line("ServiceBackup.Service-backup Started", 2, &Map::new());
        assert!(line.starts_with(r#"{"timestamp":"20"#), "{line}");
        let rest = line.split_once(r#"Z","level":"error","source":"ServiceBackup","#);
        assert_eq!(
            rest.map(|(_, tail)| tail),
            Some(r#""message":"ServiceBackup.Service-backup Started","data":{}}"#),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        let stamp = v["timestamp"].as_str().unwrap();
        assert_eq!(stamp.split('.').nth(1).unwrap().len(), 10, "{stamp}");
        chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    }

    #[test]
    fn timestamps_are_go_float_seconds() {
        // lager's formatTimestamp: fmt.Sprintf("%.9f", float64(t.UnixNano())/1e9).
        let t = std::time::Duration::new(1_763_867_700, 123_456_789);
        let text = lager_timestamp(t);
        assert!(text.starts_with("1763867700.123456"), "{text}");
        assert_eq!(text.split('.').nth(1).unwrap().len(), 9);
    }

    #[test]
    fn html_characters_are_escaped_as_go_does() {
        let line = json_line("ServiceBackup.a <b> & c", 1, &Map::new());
        assert!(
            line.contains(r#""ServiceBackup.a \u003cb\u003e \u0026 c""#),
            "{line}"
        );
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["message"], "ServiceBackup.a <b> & c");
    }
}
