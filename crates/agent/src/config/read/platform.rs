//! `api.uaa` and `api.cloud_controller`: the platform's tokens and who may use the API.

use serde_norway::Value;

use super::super::keys;
use super::super::model::{
    CloudControllerConfig, DEFAULT_JWT_LEEWAY_SECONDS, DEFAULT_PERMISSION_CACHE_SECONDS, UaaConfig,
};
use super::super::section::{Problems, Section, scalar_text, shown};

/// The longest leeway or cache lifetime accepted, in seconds.
const MAX_SECONDS: u64 = 300;

/// An `http://` or `https://` URL with a host, without a trailing slash; one holding a
/// user or password is refused (its credentials go in headers or keys of their own).
pub(super) fn url(section: &Section<'_>, key: &str, problems: &mut Problems) -> Option<String> {
    let text = section.text(key, problems)?.trim().to_string();
    let name = section.name(key);
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(char::is_whitespace)) {
        problems.push(format!(
            "{name} must be an http:// or https:// URL, not \"{}\"",
            redacted(&text)
        ));
        return None;
    }
    let parsed = match reqwest::Url::parse(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            problems.push(format!(
                "{name} is not a valid URL ({e}): \"{}\"",
                redacted(&text)
            ));
            return None;
        }
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        problems.push(format!(
            "{name} must not hold a user name or password (\"{}\"): give credentials in \
             headers or in their own keys",
            redacted(&text)
        ));
        return None;
    }
    Some(text.trim_end_matches('/').to_string())
}

/// A URL as messages show it: without its user and password, query and fragment, where
/// secrets are often put.
fn redacted(text: &str) -> String {
    let cut = text.find(['?', '#']).map_or(text, |end| &text[..end]);
    let (scheme, rest) = cut.split_once("://").unwrap_or(("", cut));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let hidden = if host.len() == authority.len() {
        ""
    } else {
        "…@"
    };
    let more = if cut.len() == text.len() { "" } else { "…" };
    let scheme = if scheme.is_empty() && !cut.contains("://") {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{scheme}{hidden}{host}{path}{more}")
}

/// A whole number of seconds from 0 to [`MAX_SECONDS`].
fn seconds(section: &Section<'_>, key: &str, default: u64, problems: &mut Problems) -> u64 {
    let Some(value) = section.get(key) else {
        return default;
    };
    match scalar_text(value).and_then(|t| t.trim().parse::<u64>().ok()) {
        Some(n) if n <= MAX_SECONDS => n,
        _ => {
            problems.push(format!(
                "{} must be a whole number of seconds from 0 to {MAX_SECONDS}, not {}",
                section.name(key),
                shown(value)
            ));
            default
        }
    }
}

/// A PEM certificate, when set.
pub(super) fn ca_cert(section: &Section<'_>, problems: &mut Problems) -> Option<String> {
    let pem = section.text("ca_cert", problems)?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        problems.push(format!(
            "{} must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)",
            section.name("ca_cert")
        ));
        return None;
    }
    Some(pem)
}

/// `api.uaa.required_scopes`: a list of scope names (or one name).
fn scopes(section: &Section<'_>, problems: &mut Problems) -> Vec<String> {
    let Some(value) = section.get("required_scopes") else {
        return Vec::new();
    };
    let items: Vec<&Value> = match value {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        match scalar_text(item).map(|t| t.trim().to_string()) {
            Some(t) if !t.is_empty() && !t.contains(char::is_whitespace) => out.push(t),
            _ => problems.push(format!(
                "{} must be a list of scope names, such as [cloud_controller.write], not {}",
                section.name("required_scopes"),
                shown(value)
            )),
        }
    }
    out
}

/// `api.uaa`, when present.
pub(super) fn uaa(api: &Section<'_>, problems: &mut Problems) -> Option<UaaConfig> {
    let uaa = api.section("uaa", keys::API_UAA, problems)?;
    let keys_url = match (uaa.has("jwks_url"), uaa.has("token_keys_url")) {
        (true, true) => {
            problems.push(
                "api.uaa takes jwks_url or token_keys_url, not both: they name the same keys"
                    .to_string(),
            );
            None
        }
        (false, false) => {
            problems.push("Missing values for api.uaa: jwks_url or token_keys_url".to_string());
            None
        }
        (true, false) => url(&uaa, "jwks_url", problems),
        (false, true) => url(&uaa, "token_keys_url", problems),
    };
    if uaa.missing(&["issuer"]).contains(&"issuer") {
        problems.push("Missing values for api.uaa: issuer".to_string());
    }
    let issuer = uaa.text("issuer", problems).map(|t| t.trim().to_string());
    let audience = uaa.text("audience", problems).map(|t| t.trim().to_string());
    let required_scopes = scopes(&uaa, problems);
    let leeway_seconds = seconds(&uaa, "leeway_seconds", DEFAULT_JWT_LEEWAY_SECONDS, problems);
    let ca_cert = ca_cert(&uaa, problems);
    if required_scopes.is_empty() && !api.has("cloud_controller") {
        problems.push(
            "api.uaa needs api.cloud_controller or api.uaa.required_scopes: without either, \
             every user of the platform could manage this instance's backups"
                .to_string(),
        );
    }
    Some(UaaConfig {
        keys_url: keys_url?,
        issuer: issuer?,
        audience,
        required_scopes,
        leeway_seconds,
        ca_cert,
    })
}

/// `api.cloud_controller`, when present.
pub(super) fn cloud_controller(
    api: &Section<'_>,
    problems: &mut Problems,
) -> Option<CloudControllerConfig> {
    let cc = api.section("cloud_controller", keys::API_CLOUD_CONTROLLER, problems)?;
    if !cc.missing(&["url"]).is_empty() {
        problems.push("Missing values for api.cloud_controller: url".to_string());
    }
    let url = url(&cc, "url", problems);
    let service_instance_guid = cc
        .text("service_instance_guid", problems)
        .map(|t| t.trim().to_string());
    if !api.has("uaa") {
        problems.push(
            "api.cloud_controller needs api.uaa: the Cloud Controller is asked about the \
             platform's tokens only"
                .to_string(),
        );
    }
    let cache_seconds = seconds(
        &cc,
        "cache_seconds",
        DEFAULT_PERMISSION_CACHE_SECONDS,
        problems,
    );
    let ca_cert = ca_cert(&cc, problems);
    Some(CloudControllerConfig {
        url: url?,
        service_instance_guid,
        cache_seconds,
        ca_cert,
    })
}
