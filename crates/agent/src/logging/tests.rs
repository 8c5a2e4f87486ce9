//! The log lines: lager's JSON and pretty forms, journald prefixes, the text format's
//! escaping and what a person sees.

use super::*;
use std::sync::Arc;

/// The lines `f` logs through a JSON layer, with journald's prefixes when `journal`.
fn captured_for(journal: bool, f: impl FnOnce()) -> Vec<String> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let layer = LagerLayer {
        format: LogFormat::Json,
        target: LogTarget::Stdout,
        min: Level::INFO,
        verbose: false,
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

/// The lines `f` logs through a layer of `format` with `min` and `-v` or not.
fn captured_as(format: LogFormat, min: Level, verbose: bool, f: impl FnOnce()) -> Vec<String> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let layer = LagerLayer {
        format,
        target: LogTarget::Stderr,
        min,
        verbose,
        journal: false,
        lock: Mutex::new(()),
        capture: Some(lines.clone()),
    };
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    lines.lock().unwrap().clone()
}

#[test]
fn text_lines_quote_spaces_escape_controls_and_give_utc() {
    // A file name with a newline and an ANSI escape must not forge a second line or move the
    // cursor; a value with spaces must not read as several pairs.
    let mut data = Map::new();
    data.insert(
        "file".into(),
        Value::String("dump\n2026-12-06T00:00:00.000Z ERROR forged \u{1b}[2Kx".into()),
    );
    data.insert("destination_name".into(), Value::String("s3 prod".into()));
    data.insert("size_in_bytes".into(), Value::from(42));
    data.insert("empty".into(), Value::String(String::new()));
    data.insert("quote".into(), Value::String(r#"a"b=c\d"#.into()));
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:45:00.5+01:00")
        .unwrap()
        .with_timezone(&Utc);
    let line = text_line_at(at, "Executable output\r", Level::WARN, &data);
    assert_eq!(
        line,
        r#"2026-12-06T09:45:00.500Z WARN  Executable output\r destination_name="s3 prod" empty="" file="dump\n2026-12-06T00:00:00.000Z ERROR forged \u{1b}[2Kx" quote="a\"b=c\\d" size_in_bytes=42"#
    );
    assert!(!line.contains('\n') && !line.contains('\u{1b}') && !line.contains('\r'));
    // Bidirectional overrides and C1 controls are escaped too.
    assert_eq!(escape_controls("a\u{202e}b\u{9b}c"), r"a\u{202e}b\u{9b}c");
}

#[test]
fn text_lines_come_through_the_layer_in_utc() {
    let lines = captured_as(LogFormat::Text, Level::INFO, false, || {
        tracing::info!(file = "a\nb", "Upload backup started");
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (stamp, rest) = lines[0].split_once(' ').unwrap();
    assert!(stamp.ends_with('Z'), "{stamp}");
    chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    assert_eq!(rest, r#"INFO  Upload backup started file="a\nb""#);
}

#[test]
fn a_person_sees_each_error_once_and_no_retries() {
    // The errors a command prints when it ends are not also logged for a person: the log
    // line would repeat the sentence. A retry is a note on the bar, not a line. Other
    // errors (an alert that could not be sent) are lines.
    let lines = captured_as(LogFormat::Human, Level::WARN, false, || {
        tracing::info!("Upload backup started");
        tracing::warn!(
            request = "GET",
            attempt = 2,
            error = "connection refused",
            "retrying after a temporary failure"
        );
        tracing::warn!(error = "connection refused", "trying the next destination");
        let span = tracing::info_span!("run", backup_guid = "g-1");
        let _entered = span.enter();
        tracing::warn!(error = "bad\n\u{1b}[31mname", "a copy is damaged");
        tracing::warn!(file = "x y\n\u{1b}[2K", "skipping a special file");
        tracing::error!(
            error = "connection refused",
            "Perform restore completed with error"
        );
        tracing::error!(error = "boom", "Upload backup completed with error");
        tracing::error!(error = "boom", "Error running backup");
        tracing::error!(
            sink = "kafka",
            error = "no broker",
            "error sending service alert"
        );
    });
    assert_eq!(
        lines,
        [
            r"warning: a copy is damaged: bad\n\u{1b}[31mname",
            r#"warning: skipping a special file (file="x y\n\u{1b}[2K")"#,
            "error: error sending service alert: no broker (sink=kafka)",
        ],
        "{lines:?}"
    );
}

#[test]
fn with_v_a_person_sees_every_line_as_text() {
    let lines = captured_as(LogFormat::Human, Level::DEBUG, true, || {
        tracing::debug!("Backup task started");
        tracing::error!(error = "boom", "Perform restore completed with error");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("DEBUG Backup task started"), "{lines:?}");
    assert!(
        lines[1].contains("ERROR Perform restore completed with error error=boom"),
        "{lines:?}"
    );
}

#[test]
fn the_format_follows_the_terminal_unless_named() {
    let choice = |format, interactive| Choice {
        format,
        logs_to_stdout: false,
        interactive,
        verbosity: 0,
    };
    assert_eq!(resolve(&choice(None, true), true), LogFormat::Human);
    assert_eq!(resolve(&choice(None, true), false), LogFormat::Json);
    // The daemon logs lager JSON even on a terminal.
    assert_eq!(resolve(&choice(None, false), true), LogFormat::Json);
    assert_eq!(resolve(&choice(Some("json"), true), true), LogFormat::Json);
    assert_eq!(
        resolve(&choice(Some("human"), true), false),
        LogFormat::Human
    );
    assert_eq!(resolve(&choice(Some("text"), false), true), LogFormat::Text);
}

#[test]
fn v_and_q_move_the_level() {
    use LogFormat::{Human, Json};
    assert_eq!(min_level(Json, true, 0), Level::INFO);
    assert_eq!(min_level(Json, true, 1), Level::DEBUG);
    assert_eq!(min_level(Json, true, -1), Level::WARN);
    assert_eq!(min_level(Json, false, 0), Level::WARN);
    assert_eq!(min_level(Json, false, 2), Level::DEBUG);
    assert_eq!(min_level(Json, false, -5), Level::ERROR);
    assert_eq!(min_level(Human, true, 0), Level::WARN);
    assert_eq!(min_level(Human, true, 9), Level::TRACE);
}

#[test]
fn other_crates_debug_lines_stay_out() {
    let lines = captured_as(LogFormat::Json, Level::TRACE, true, || {
        tracing::debug!(target: "tokio::runtime", "parked");
        tracing::debug!(target: "service_backup::daemon", "Next backup scheduled");
        tracing::info!(target: "tower", "an info line of another crate");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("Next backup scheduled"), "{lines:?}");
}
