//! Reading a whole configuration from YAML text, every problem collected.

use std::fmt::Write as _;
use std::path::Path;

use serde_norway::{Mapping, Value};
use service_backup_core::compression::Algorithm;

use super::destination::read_destinations;
use super::encryption::read_keyring;
use super::error::ConfigError;
use super::file_mode::secret_file_problem;
use super::keys;
use super::model::{
    ApiConfig, Config, DEFAULT_MAX_CONNECTIONS, DEFAULT_MISSING_PROPERTIES_MESSAGE,
    DEFAULT_PARACHUTE_THRESHOLD, MAX_MAX_CONNECTIONS, MetricsConfig, RestoreConfig, TlsConfig,
};
use super::section::{
    Problems, Section, escaped, kind_of, plain_keys, scalar_text, shown, untagged,
};
use crate::schedule::Schedule;

mod alerts;
mod platform;

/// Parses and validates `yaml`, adding its problems to `problems` (those of the file
/// itself); relative key and API files resolve against `base`.
pub(super) fn from_text(
    yaml: &str,
    base: Option<&Path>,
    mut problems: Problems,
) -> Result<Config, ConfigError> {
    if let Some(problem) = too_big(yaml) {
        problems.push(problem);
        return Err(ConfigError::new(
            problems,
            DEFAULT_MISSING_PROPERTIES_MESSAGE,
        ));
    }
    // `<<` merge keys are applied, as the original's YAML parser did, so that `<<` is
    // not taken for an unknown key.
    let document = serde_norway::from_str::<Value>(yaml).and_then(|mut document| {
        document.apply_merge()?;
        Ok(document)
    });
    let document = document.map_err(|e| {
        problems.push(yaml_problem(&e));
        // Not a missing value: the custom message is not needed (nor readable) here.
        ConfigError::new(
            std::mem::take(&mut problems),
            DEFAULT_MISSING_PROPERTIES_MESSAGE,
        )
    })?;
    let mut document = plain_keys(document, "", &mut problems);
    if let Value::Mapping(map) = &mut document {
        // `x-` keys hold anchors for use elsewhere in the file (`x-defaults: &d {...}`),
        // as in Compose files; nothing reads them.
        map.retain(|key, _| key.as_str().is_none_or(|k| !k.starts_with("x-")));
    }
    let empty = Mapping::new();
    let map = match untagged(&document) {
        Value::Mapping(map) => map,
        Value::Null => &empty,
        other => {
            problems.push(format!(
                "the configuration must be a mapping of settings, not {}",
                kind_of(other)
            ));
            return Err(ConfigError::new(
                problems,
                DEFAULT_MISSING_PROPERTIES_MESSAGE,
            ));
        }
    };
    let top = Section::new(Some(map), "").known(keys::TOP, &mut problems);

    let missing_properties_message = match top.get("missing_properties_message") {
        None => DEFAULT_MISSING_PROPERTIES_MESSAGE.to_string(),
        Some(value) => scalar_text(value).map_or_else(
            || {
                problems.push(format!(
                    "missing_properties_message must be a string, not {}",
                    kind_of(value)
                ));
                DEFAULT_MISSING_PROPERTIES_MESSAGE.to_string()
            },
            |text| text.trim().to_string(),
        ),
    };

    let (destinations, any_destination) = read_destinations(&top, &mut problems);
    if any_destination {
        let missing = top.missing(&["source_folder", "cron_schedule"]);
        if !missing.is_empty() {
            problems.push(format!(
                "Missing values for service_backup: {}",
                missing.join(", ")
            ));
        }
    }

    let source_folder = top.path("source_folder", &mut problems);
    let source_executable = top.text("source_executable", &mut problems);
    let cleanup_executable = top.text("cleanup_executable", &mut problems);
    let cron_schedule = top
        .text("cron_schedule", &mut problems)
        .map(|s| s.trim().to_string());
    let schedule = cron_schedule
        .as_deref()
        .and_then(|expr| match Schedule::parse(expr) {
            Ok(schedule) => Some(schedule),
            Err(why) => {
                problems.push(format!(
                    "cron_schedule \"{expr}\" is not a valid schedule: {why}"
                ));
                None
            }
        });
    let exit_if_in_progress = top.flag("exit_if_in_progress", false, &mut problems);
    let (catch_up, spread) = super::timing::read(&top, schedule.as_ref(), &mut problems);
    let catalog_full_refresh = super::timing::full_refresh(&top, &mut problems);
    let service_identifier_executable = top.text("service_identifier_executable", &mut problems);
    let deployment_name = top.text("deployment_name", &mut problems);
    let add_deployment_name_to_backup_path =
        top.flag("add_deployment_name_to_backup_path", false, &mut problems);
    if add_deployment_name_to_backup_path && deployment_name.is_none() {
        problems.push(
            "add_deployment_name_to_backup_path is true but deployment_name is not set".to_string(),
        );
    }
    let mut key_files = Vec::new();
    let keyring = read_keyring(&top, base, &mut key_files, &mut problems);
    let compression = compression(&top, &mut problems);
    let compression_level = compression_level(&top, compression, &mut problems);
    let state_dir = top.path("state_dir", &mut problems);
    let instance_id = instance_id(&top, &mut problems);
    let restore = restore(&top, &mut problems);
    let drill = super::drill::read_drill(&top, &mut problems);
    let retention = super::retention::read_retention(top.get("retention"), "", "", &mut problems);
    let api = api(&top, base, &mut problems);
    let alerts = alerts::alerts(&top, &mut problems);
    let health = super::health::read_health(&top, &mut problems);
    let ignored_keys = keys::IGNORED
        .iter()
        .filter(|key| top.has(key))
        .map(ToString::to_string)
        .collect();

    if !problems.is_empty() {
        return Err(ConfigError::new(problems, &missing_properties_message));
    }
    Ok(Config {
        destinations,
        source_folder,
        source_executable,
        cleanup_executable,
        cron_schedule,
        schedule,
        exit_if_in_progress,
        catch_up,
        spread,
        catalog_full_refresh,
        service_identifier_executable,
        missing_properties_message,
        deployment_name,
        add_deployment_name_to_backup_path,
        keyring,
        key_files,
        compression,
        compression_level,
        state_dir,
        instance_id,
        restore,
        drill,
        retention,
        api,
        alerts,
        health,
        ignored_keys,
        source_path: None,
    })
}

/// The largest configuration file read, in bytes.
pub(super) const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// The problem of a file over [`MAX_CONFIG_BYTES`].
pub(super) fn too_long() -> String {
    format!(
        "the file is too long: a configuration file may be at most {MAX_CONFIG_BYTES} bytes (1 MiB)"
    )
}

/// The deepest nesting of `[` and `{` read.
pub(super) const MAX_FLOW_DEPTH: usize = 64;

/// The most `[` and `{` in a file.
pub(super) const MAX_FLOW_BRACKETS: usize = 4096;

/// Why `yaml` is refused before it is parsed: the parser takes time quadratic in the
/// nesting of flow collections (`[[[[...`) before it gives up.
fn too_big(yaml: &str) -> Option<String> {
    if yaml.len() > MAX_CONFIG_BYTES {
        return Some(too_long());
    }
    // Brackets inside quoted text count too: a configuration has no reason to come near
    // either limit, and a count that skipped quotes could be fooled by them. The total
    // bounds what quotes could hide from the depth.
    let (mut depth, mut deepest, mut total) = (0usize, 0usize, 0usize);
    for byte in yaml.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                total += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_FLOW_DEPTH {
        return Some(format!(
            "the file nests [ and {{ more than {MAX_FLOW_DEPTH} deep"
        ));
    }
    (total > MAX_FLOW_BRACKETS)
        .then(|| format!("the file holds more than {MAX_FLOW_BRACKETS} [ and {{ brackets"))
}

/// A YAML syntax error: the kind of problem and its line and column. Nothing quoted from
/// the file is kept (it could be part of a secret, and the parser does not always escape
/// quotes inside what it quotes), except the name of a duplicated key.
fn yaml_problem(err: &serde_norway::Error) -> String {
    let raw = err.to_string();
    if raw.starts_with("duplicate entry with key") {
        return format!("the file is not valid YAML: {}", escaped(&raw));
    }
    // A value refused by the parser is quoted in its message, where it could hold a
    // secret: only the kind of problem is kept. The syntax errors are the parser's own
    // words and places.
    let refused = ["invalid type", "invalid value", "invalid length"]
        .into_iter()
        .find(|kind| raw.contains(kind));
    let mut text = match refused {
        Some(kind) => format!("{kind} (a value does not fit its YAML tag)"),
        None if raw.contains(['"', '`']) => "a value the YAML parser refused".to_string(),
        None => escaped(&raw),
    };
    if let Some(location) = err.location()
        && !text.contains(" line ")
    {
        let _ = write!(
            text,
            " at line {} column {}",
            location.line(),
            location.column()
        );
    }
    format!("the file is not valid YAML: {text}")
}

fn compression(top: &Section<'_>, problems: &mut Problems) -> Algorithm {
    let Some(value) = top.get("compression") else {
        return Algorithm::default();
    };
    if let Some(algorithm) = scalar_text(value).and_then(|t| Algorithm::from_name(t.trim())) {
        algorithm
    } else {
        problems.push(format!(
            "compression must be gzip or zstd, not {}",
            shown(value)
        ));
        Algorithm::default()
    }
}

fn compression_level(top: &Section<'_>, compression: Algorithm, problems: &mut Problems) -> u32 {
    let Some(value) = top.get("compression_level") else {
        return compression.default_level();
    };
    let levels = compression.levels();
    match scalar_text(value).and_then(|t| t.trim().parse::<u32>().ok()) {
        Some(level) if levels.contains(&level) => level,
        _ => {
            problems.push(format!(
                "compression_level must be a whole number from {} to {}{}, not {}",
                levels.start(),
                levels.end(),
                match compression {
                    Algorithm::Gzip => "",
                    Algorithm::Zstd => " for zstd",
                },
                shown(value)
            ));
            compression.default_level()
        }
    }
}

/// The instance id goes into object names: keep it to characters safe in any store.
fn instance_id(top: &Section<'_>, problems: &mut Problems) -> Option<String> {
    let id = top.text("instance_id", problems)?;
    let safe = id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !safe {
        problems.push(format!(
            "instance_id \"{id}\" may contain only letters, digits, '.', '_' and '-' \
             (at most 128)"
        ));
    }
    safe.then_some(id)
}

fn restore(top: &Section<'_>, problems: &mut Problems) -> RestoreConfig {
    let Some(restore) = top.section("restore", keys::RESTORE, problems) else {
        return RestoreConfig::default();
    };
    RestoreConfig {
        target_folder: restore.path("target_folder", problems),
        restore_executable: restore.text("restore_executable", problems),
    }
}

fn api(top: &Section<'_>, base: Option<&Path>, problems: &mut Problems) -> Option<ApiConfig> {
    let api = top.section("api", keys::API, problems)?;
    // The static tokens may give way to the platform's (api.uaa), not to nothing.
    let required: &[&'static str] = if api.has("uaa") {
        &["listen"]
    } else {
        &["listen", "bearer_tokens_file"]
    };
    let missing = api.missing(required);
    if !missing.is_empty() {
        problems.push(format!("Missing values for api: {}", missing.join(", ")));
    }
    let listen = api.text("listen", problems).map(|l| l.trim().to_string());
    if let Some(listen) = &listen
        && !is_host_and_port(listen)
    {
        problems.push(format!(
            "api.listen must be an address and port such as 127.0.0.1:8443, not \"{listen}\""
        ));
    }
    let bearer_tokens_file = api.file("bearer_tokens_file", base, problems);
    if let Some(path) = &bearer_tokens_file {
        problems.extend(secret_file_problem("api.bearer_tokens_file", path));
    }
    let tls = api.section("tls", keys::API_TLS, problems).and_then(|tls| {
        let missing = tls.missing(&["cert_file", "key_file"]);
        if !missing.is_empty() {
            problems.push(format!(
                "Missing values for api.tls: {}",
                missing.join(", ")
            ));
        }
        let cert_file = tls.file("cert_file", base, problems);
        let key_file = tls.file("key_file", base, problems);
        if let Some(path) = &key_file {
            problems.extend(secret_file_problem("api.tls.key_file", path));
        }
        Some(TlsConfig {
            cert_file: cert_file?,
            key_file: key_file?,
        })
    });
    let allow_plaintext = api.flag("allow_plaintext", false, problems);
    if let Some(listen) = &listen
        && is_host_and_port(listen)
        && !api.has("tls")
        && !allow_plaintext
        && !is_loopback(listen)
    {
        problems.push(format!(
            "api.listen {listen} is reachable from other machines and api.tls is not set, so \
             bearer tokens and backups would cross the network in plain HTTP; set api.tls \
             (cert_file and key_file), listen on 127.0.0.1, or set api.allow_plaintext: true \
             to accept plain HTTP"
        ));
    }
    let max_connections = max_connections(&api, problems);
    let metrics = api
        .section("metrics", keys::API_METRICS, problems)
        .map(|m| metrics(&m, problems))
        .unwrap_or_default();
    let uaa = platform::uaa(&api, problems);
    let cloud_controller = platform::cloud_controller(&api, problems);
    Some(ApiConfig {
        listen: listen?,
        bearer_tokens_file,
        uaa,
        cloud_controller,
        tls,
        allow_plaintext,
        max_connections,
        metrics,
    })
}

/// `api.max_connections`: a whole number from 1 to [`MAX_MAX_CONNECTIONS`].
fn max_connections(api: &Section<'_>, problems: &mut Problems) -> usize {
    let Some(value) = api.get("max_connections") else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    match scalar_text(value).and_then(|t| t.trim().parse::<usize>().ok()) {
        Some(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => n,
        _ => {
            problems.push(format!(
                "api.max_connections must be a whole number from 1 to {MAX_MAX_CONNECTIONS}, \
                 not {}",
                shown(value)
            ));
            DEFAULT_MAX_CONNECTIONS
        }
    }
}

/// Whether the host of a valid `api.listen` is a loopback address or `localhost`, which
/// no other machine reaches.
pub fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The namespace parts of `api.metrics`, each one part of a dotted path.
const NAMESPACE_PARTS: [&str; 6] = [
    "org_guid",
    "space_guid",
    "instance_guid",
    "internal_instance_name",
    "internal_service_name",
    "node",
];

/// Whether `part` is one name of a metric path: letters, digits, `_` and `-` (a quote or
/// backslash would break the Prometheus text and the dotted paths).
fn is_metric_name(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn metrics(section: &Section<'_>, problems: &mut Problems) -> MetricsConfig {
    let namespace = section
        .text("namespace", problems)
        .map(|n| n.trim().to_string());
    if let Some(n) = &namespace
        && !n.split('.').all(is_metric_name)
    {
        problems.push(format!(
            "api.metrics.namespace must be names of letters, digits, '_' and '-' joined by dots, such as org.space.instance.name.service.node, not \"{n}\""
        ));
    }
    let mut parts: Vec<Option<String>> = Vec::new();
    for key in NAMESPACE_PARTS {
        let value = section.text(key, problems).map(|v| v.trim().to_string());
        if let Some(v) = &value
            && !is_metric_name(v)
        {
            problems.push(format!(
                "api.metrics.{key} must be one name of letters, digits, '_' and '-', not \"{v}\""
            ));
        }
        parts.push(value);
    }
    let parachute_threshold = match section.get("parachute_threshold") {
        None => DEFAULT_PARACHUTE_THRESHOLD,
        Some(value) => match scalar_text(value).and_then(|t| t.trim().parse::<u64>().ok()) {
            Some(t) if t <= 100 => t,
            _ => {
                problems.push(format!(
                    "api.metrics.parachute_threshold must be a whole number from 0 (off) to 100, not {}",
                    shown(value)
                ));
                DEFAULT_PARACHUTE_THRESHOLD
            }
        },
    };
    let mut parts = parts.into_iter();
    let mut next = || parts.next().flatten();
    MetricsConfig {
        namespace,
        org_guid: next(),
        space_guid: next(),
        instance_guid: next(),
        internal_instance_name: next(),
        internal_service_name: next(),
        node: next(),
        parachute_threshold,
    }
}

/// `host:port` or `[v6]:port`, with a port from 1 to 65535.
fn is_host_and_port(listen: &str) -> bool {
    let Some((host, port)) = listen.rsplit_once(':') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && !host.chars().any(char::is_whitespace)
        && (host.contains(':') == (host.starts_with('[') && host.ends_with(']')));
    host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
}
