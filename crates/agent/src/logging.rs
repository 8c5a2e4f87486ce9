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

use crate::escape::escape_controls;

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
    /// One line an event with the time in UTC, values with spaces quoted and control
    /// characters escaped (`--log-format text`).
    Text,
    /// For a person at a terminal: warnings as `warning: …` lines above the progress bar,
    /// retries as a note on the bar, errors left to the command (which prints each once);
    /// with `-v`, every line in the text format.
    Human,
}

impl LogFormat {
    /// The format `--log-format` names (`json`, `pretty`, `text`, `human`); `None` for
    /// another word.
    pub fn named(word: &str) -> Option<Self> {
        match word {
            "json" => Some(Self::Json),
            "pretty" => Some(Self::Pretty),
            "text" => Some(Self::Text),
            "human" => Some(Self::Human),
            _ => None,
        }
    }
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
    init_verbose(format, target, min, 0);
}

fn init_verbose(format: LogFormat, target: LogTarget, min: Level, verbosity: i8) {
    let layer = LagerLayer {
        format,
        target,
        min,
        verbose: verbosity > 0,
        journal: format != LogFormat::Human && target_is_journal(target),
        lock: Mutex::new(()),
        capture: None,
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    // A second init (tests calling twice) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// How a command asked to log.
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a> {
    /// `--log-format`, when given.
    pub format: Option<&'a str>,
    /// The command's standard output is not its result (the daemon, `backup`): logs go
    /// there, from info up, as the original's did.
    pub logs_to_stdout: bool,
    /// The command is one a person runs by hand (every one but the daemon).
    pub interactive: bool,
    /// `-v` count minus `-q` count.
    pub verbosity: i8,
}

/// The format a command logs in: the one `--log-format` names; else, for an interactive
/// command whose stderr is a terminal, [`LogFormat::Human`]; else lager JSON.
pub fn resolve(choice: &Choice<'_>, stderr_is_terminal: bool) -> LogFormat {
    match choice.format.and_then(LogFormat::named) {
        Some(format) => format,
        None if choice.interactive && stderr_is_terminal => LogFormat::Human,
        None => LogFormat::Json,
    }
}

/// The lowest level written: info (on stdout) or warnings (on stderr, and for a person),
/// each `-v` one level more, each `-q` one less (errors are always written).
pub fn min_level(format: LogFormat, logs_to_stdout: bool, verbosity: i8) -> Level {
    const LEVELS: [Level; 5] = [
        Level::ERROR,
        Level::WARN,
        Level::INFO,
        Level::DEBUG,
        Level::TRACE,
    ];
    let base: i8 = if logs_to_stdout && format != LogFormat::Human {
        2
    } else {
        1
    };
    let at = (base + verbosity).clamp(0, 4);
    LEVELS[usize::try_from(at).unwrap_or(0)]
}

/// Installs the subscriber of a command and returns the format it logs in; a command whose
/// standard output is its result logs to stderr, as does every command printing for a
/// person.
pub fn init_for(choice: &Choice<'_>) -> LogFormat {
    use std::io::IsTerminal as _;
    let format = resolve(choice, std::io::stderr().is_terminal());
    let target = if choice.logs_to_stdout && format != LogFormat::Human {
        LogTarget::Stdout
    } else {
        LogTarget::Stderr
    };
    let min = min_level(format, choice.logs_to_stdout, choice.verbosity);
    init_verbose(format, target, min, choice.verbosity);
    format
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
    /// `-v` was given: a person sees every line, errors included.
    verbose: bool,
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
        let target = event.metadata().target();
        // Other crates' debug lines are theirs to read, not an operator's.
        let foreign_detail = level > Level::INFO && !target.starts_with("service_backup");
        if level > self.min || is_quiet(target) || foreign_detail {
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
            LogFormat::Human => {
                // The event's own fields, not its spans' (guids a person does not need).
                let mut own = Map::new();
                event.record(&mut JsonVisitor {
                    map: &mut own,
                    message: None,
                });
                if let Some(line) = self.for_a_person(&message, level, &data, &own) {
                    self.write(line);
                }
                return;
            }
        };
        if self.journal {
            line.insert_str(0, &format!("<{}>", journal_priority(level, fatal)));
        }
        self.write(line);
    }
}

/// Lines whose news a person reads better as a short note on the progress bar than as a
/// line: the operation goes on.
const NOTES: &[&str] = &[
    "retrying after a temporary failure",
    "trying the next destination",
];

/// Error lines whose error the command itself prints when it ends (`error: …`, or the
/// backup's problems): a person would read the same sentence twice.
const REPORTED: &[&str] = &[
    "Perform backup completed with error",
    "Upload backup completed with error",
    "Error running backup",
    "Perform restore completed with error",
];

impl LagerLayer {
    /// The line a person sees for an event, if any: `warning: …` or `error: …` with the
    /// event's own fields; a retry becomes a note on the bar; an error the command prints
    /// itself when it ends is left to it. With `-v`, every event as a text line.
    fn for_a_person(
        &self,
        message: &str,
        level: Level,
        data: &Map<String, Value>,
        own: &Map<String, Value>,
    ) -> Option<String> {
        if NOTES.contains(&message) {
            let attempt = data
                .get("attempt")
                .map(|a| format!(" (attempt {a})"))
                .unwrap_or_default();
            crate::progress::note(&escape_controls(&format!("{message}{attempt}")));
        }
        if self.verbose {
            return Some(text_line(message, level, data));
        }
        let word = match level {
            Level::ERROR if !REPORTED.contains(&message) => "error",
            Level::WARN if !NOTES.contains(&message) => "warning",
            _ => return None,
        };
        let detail = match data.get("error") {
            Some(Value::String(e)) => format!(": {e}"),
            Some(other) => format!(": {other}"),
            None => String::new(),
        };
        let mut line = escape_controls(&format!("{word}: {message}{detail}"));
        let context: Vec<String> = own
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "error" | "fatal"))
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{}={}", escape_controls(k), quoted(&text))
            })
            .collect();
        if !context.is_empty() {
            _ = write!(line, " ({})", context.join(" "));
        }
        Some(line)
    }

    fn write(&self, line: String) {
        if let Some(capture) = &self.capture {
            capture
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
            return;
        }
        if self.format == LogFormat::Human {
            crate::progress::print_above(&line);
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

/// A line of `--log-format text`: the time in UTC with its zone, the level, the message,
/// then `key=value` pairs; a value with a space, a quote, an `=` or nothing is quoted, and
/// control characters anywhere are escaped, so that a file name or an executable's output
/// cannot forge a line or move the cursor.
fn text_line(message: &str, level: Level, data: &Map<String, Value>) -> String {
    text_line_at(Utc::now(), message, level, data)
}

fn text_line_at(
    at: chrono::DateTime<Utc>,
    message: &str,
    level: Level,
    data: &Map<String, Value>,
) -> String {
    let mut line = format!(
        "{} {:<5} {}",
        at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        level,
        escape_controls(message)
    );
    for (k, v) in data {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        _ = write!(line, " {}={}", escape_controls(k), quoted(&text));
    }
    line
}

/// A value as written after `key=`: quoted (with `"` escaped) when it is empty or holds a
/// space, a quote or an `=`, so that one value never reads as several pairs.
fn quoted(text: &str) -> String {
    let escaped = escape_controls(text);
    if text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=')
    {
        format!("\"{}\"", escaped.replace('"', "\\\""))
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests;
