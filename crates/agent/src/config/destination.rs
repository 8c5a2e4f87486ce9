//! The `destinations` list: each item's type, name and settings.

use std::path::PathBuf;

use serde_norway::Value;

use super::keys;
use super::model::{
    AzureAuth, AzureConfig, DestinationConfig, DestinationKind, GcsConfig, LocalConfig, S3Config,
    S3Credentials, ScpConfig, ServerSideEncryption,
};
use super::section::{Problems, Section, kind_of, scalar_text, shown};

const TYPES: &str = "s3, azure, scp, gcs or local";

/// The destinations, and whether any item was given at all (valid or not): then
/// `source_folder` and `cron_schedule` are required.
pub(super) fn read_destinations(
    top: &Section<'_>,
    problems: &mut Problems,
) -> (Vec<DestinationConfig>, bool) {
    let Some(value) = top.get("destinations") else {
        return (Vec::new(), false);
    };
    let Value::Sequence(items) = value else {
        problems.push(format!(
            "destinations must be a list of destinations, not {}",
            kind_of(value)
        ));
        return (Vec::new(), false);
    };
    let mut destinations = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if let Some(destination) = read_destination(index, item, problems) {
            destinations.push(destination);
        }
    }
    check_unique_names(&destinations, problems);
    (destinations, !items.is_empty())
}

fn read_destination(
    index: usize,
    item: &Value,
    problems: &mut Problems,
) -> Option<DestinationConfig> {
    let number = index + 1;
    let Value::Mapping(map) = super::section::untagged(item) else {
        problems.push(format!(
            "destination {number} must be a mapping with type and config, not {}",
            kind_of(item)
        ));
        return None;
    };
    let path = format!("destinations[{index}].");
    // Its keys are checked below, under the label that names the destination.
    let mut quiet = Problems::new();
    let outer = Section::new(Some(map), format!("destination {number}: "))
        .at(path.as_str())
        .known(keys::DESTINATION, &mut quiet);
    let name = outer.text("name", problems);
    let Some(type_word) = outer.text("type", problems) else {
        // A list or mapping was already reported as not a string.
        if outer.get("type").is_none_or(|v| scalar_text(v).is_some()) {
            problems.push(format!("destination {number} has no type (use {TYPES})"));
        }
        problems.append(&mut quiet);
        return None;
    };
    let type_word = type_word.trim().to_ascii_lowercase();
    if !["s3", "azure", "scp", "gcs", "local"].contains(&type_word.as_str()) {
        problems.push(format!("Unknown destination type: {type_word}"));
        problems.append(&mut quiet);
        return None;
    }
    let label = match &name {
        Some(name) => format!("{type_word} destination \"{name}\": "),
        None => format!("{type_word} destination {number}: "),
    };
    let _ = Section::new(Some(map), label.as_str())
        .at(path.as_str())
        .known(keys::DESTINATION, problems);
    if !compiled_in(&type_word) {
        problems.push(format!(
            "{label}this build of service-backup has no {type_word} destination"
        ));
    }
    let retention =
        super::retention::read_retention(outer.get("retention"), &label, &path, problems);
    let known = keys::destination_config(&type_word);
    let config_path = format!("{path}config.");
    let config = match outer.get("config") {
        None => Section::new(None, label),
        Some(Value::Mapping(map)) => Section::new(Some(map), label),
        Some(other) => {
            problems.push(format!(
                "{label}config must be a mapping of settings, not {}",
                kind_of(other)
            ));
            return None;
        }
    }
    .at(config_path.as_str())
    .known(known, problems);
    // Each store that can lock objects takes it: s3 and gcs here, azure at the Azure
    // destination's own wiring.
    let immutability = if ["s3", "gcs", "azure"].contains(&type_word.as_str()) {
        super::immutability::read_immutability(&config, &config_path, problems)
    } else {
        None
    };
    let kind = match type_word.as_str() {
        "s3" => s3(&config, problems).map(DestinationKind::S3),
        "azure" => azure(&config, problems).map(DestinationKind::Azure),
        "scp" => scp(&config, problems).map(DestinationKind::Scp),
        "gcs" => gcs(&config, problems).map(DestinationKind::Gcs),
        _ => local(&config, problems).map(DestinationKind::Local),
    }?;
    Some(DestinationConfig {
        name,
        kind,
        retention,
        immutability,
    })
}

/// Whether this build has the destination type `word` (each remote type is a feature).
fn compiled_in(word: &str) -> bool {
    let features = [
        ("s3", cfg!(feature = "s3")),
        ("azure", cfg!(feature = "azure")),
        ("scp", cfg!(feature = "scp")),
        ("gcs", cfg!(feature = "gcs")),
    ];
    features.iter().all(|&(w, on)| w != word || on)
}

/// Reports `Missing values for <type>: a, b.` as the original did; true if none is missing.
fn require(
    config: &Section<'_>,
    type_word: &str,
    keys: &[&'static str],
    problems: &mut Problems,
) -> bool {
    let missing = config.missing(keys);
    if !missing.is_empty() {
        problems.push(format!(
            "Missing values for {type_word}: {}",
            missing.join(", ")
        ));
    }
    missing.is_empty()
}

fn s3(c: &Section<'_>, problems: &mut Problems) -> Option<S3Config> {
    let source = one_of(
        c,
        "credentials_source",
        &["static", "env_or_instance_profile"],
        problems,
    );
    let from_environment = source.as_deref() == Some("env_or_instance_profile");
    // Keys are required of static credentials only (an unknown source was reported).
    let required: &[&'static str] = if source.as_deref() == Some("static") {
        &[
            "bucket_name",
            "bucket_path",
            "access_key_id",
            "secret_access_key",
        ]
    } else {
        &["bucket_name", "bucket_path"]
    };
    let complete = require(c, "s3", required, problems);
    let bucket_name = c.text("bucket_name", problems);
    let bucket_path = c.text("bucket_path", problems);
    let access_key_id = c.text("access_key_id", problems);
    let secret_access_key = c.secret("secret_access_key", problems);
    if from_environment {
        let given: Vec<&str> = ["access_key_id", "secret_access_key"]
            .into_iter()
            .filter(|k| c.get(k).is_some())
            .collect();
        if !given.is_empty() {
            problems.push(format!(
                "{} comes with credentials_source env_or_instance_profile, which takes the \
                 credentials from the VM: use one or the other (remove {}, or set \
                 credentials_source: static)",
                c.name(given[0]),
                given.join(" and ")
            ));
        }
    }
    let server_side_encryption = s3_encryption(c, problems);
    let endpoint_url = endpoint(c, "endpoint_url", problems);
    let region = c.text("region", problems);
    let ca_cert = pem_certificate(c, problems);
    if !complete || source.is_none() {
        return None;
    }
    let credentials = if from_environment {
        S3Credentials::EnvOrInstanceProfile
    } else {
        S3Credentials::Static {
            access_key_id: access_key_id?,
            secret_access_key: secret_access_key?,
        }
    };
    Some(S3Config {
        bucket_name: bucket_name?,
        bucket_path: bucket_path?,
        credentials,
        server_side_encryption: server_side_encryption.ok()?,
        endpoint_url,
        region,
        ca_cert,
    })
}

/// `server_side_encryption` and `kms_key_id`; `Ok(None)`: none asked for, `Err`: invalid
/// (reported).
fn s3_encryption(
    c: &Section<'_>,
    problems: &mut Problems,
) -> Result<Option<ServerSideEncryption>, ()> {
    let kind = c.get("server_side_encryption").map(|_| {
        one_of_exact(
            c,
            "server_side_encryption",
            &["AES256", "aws:kms"],
            problems,
        )
    });
    // Blank reads as absent, as every key does: the account's aws/s3 key.
    let key_id = c.text("kms_key_id", problems);
    match kind {
        None if key_id.is_some() => {
            problems.push(format!(
                "{} needs server_side_encryption: aws:kms",
                c.name("kms_key_id")
            ));
            Err(())
        }
        None => Ok(None),
        Some(None) => Err(()),
        Some(Some(k)) if k == "AES256" => {
            if key_id.is_some() {
                problems.push(format!(
                    "{} needs server_side_encryption: aws:kms, not AES256",
                    c.name("kms_key_id")
                ));
                return Err(());
            }
            Ok(Some(ServerSideEncryption::Aes256))
        }
        Some(Some(_)) => Ok(Some(ServerSideEncryption::Kms {
            key_id: key_id.map(|k| k.trim().to_string()),
        })),
    }
}

/// The text of `key` when it is one of `allowed` (lowercase), its first if absent; `None`
/// (reported) otherwise.
fn one_of(c: &Section<'_>, key: &str, allowed: &[&str], problems: &mut Problems) -> Option<String> {
    if c.get(key).is_none() {
        return Some(allowed[0].to_string());
    }
    one_of_exact(c, key, allowed, problems)
}

/// The text of `key` when it is exactly one of `allowed`; `None` (reported) otherwise.
fn one_of_exact(
    c: &Section<'_>,
    key: &str,
    allowed: &[&str],
    problems: &mut Problems,
) -> Option<String> {
    let value = c.get(key)?;
    let text = scalar_text(value).map(|t| t.trim().to_string());
    match text {
        Some(t) if allowed.contains(&t.as_str()) => Some(t),
        _ => {
            problems.push(format!(
                "{} must be {}, not {}",
                c.name(key),
                allowed.join(" or "),
                shown(value)
            ));
            None
        }
    }
}

/// A `ca_cert`: one or more PEM certificates that the TLS stack takes as trust anchors,
/// checked with its own parser so that `validate` refuses what the first connection would.
fn pem_certificate(c: &Section<'_>, problems: &mut Problems) -> Option<String> {
    let ca_cert = c.text("ca_cert", problems);
    if let Some(pem) = &ca_cert {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            problems.push(format!(
                "{} must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)",
                c.name("ca_cert")
            ));
        } else if let Err(why) = trust_anchors(pem) {
            problems.push(format!(
                "{} is not a usable certificate: {why} (set it to the PEM text of the CA certificate that signed the endpoint's certificate)",
                c.name("ca_cert")
            ));
        }
    }
    ca_cert
}

/// Whether every certificate of `pem` parses as a trust anchor; why not otherwise.
fn trust_anchors(pem: &str) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let der = der.map_err(|e| format!("its PEM does not parse ({e:?})"))?;
        roots
            .add(der)
            .map_err(|e| format!("its certificate does not parse ({e})"))?;
    }
    if roots.is_empty() {
        return Err("no CERTIFICATE block found".to_string());
    }
    Ok(())
}

fn azure(c: &Section<'_>, problems: &mut Problems) -> Option<AzureConfig> {
    let source = c.text("credentials_source", problems);
    let managed = source.as_deref() == Some("managed_identity");
    if let Some(word) = source.as_deref()
        && !["static", "managed_identity"].contains(&word)
    {
        problems.push(format!(
            "{} must be static (storage_access_key or sas_token) or managed_identity, not {word:?}",
            c.name("credentials_source")
        ));
    }
    // The original's manifests name the access key; a SAS token may stand in its place.
    let mut required = vec!["storage_account", "container", "path"];
    if !managed && !c.has("sas_token") {
        required.insert(1, "storage_access_key");
    }
    let complete = require(c, "azure", &required, problems);
    let storage_account = c.text("storage_account", problems);
    let storage_access_key = c.secret("storage_access_key", problems);
    let sas_token = c.secret("sas_token", problems);
    let client_id = c.text("client_id", problems);
    // It goes into the token request's query and into log lines: no line breaks or escapes.
    if client_id
        .as_deref()
        .is_some_and(|id| id.chars().any(char::is_control))
    {
        problems.push(format!(
            "{} must not contain control characters (line breaks, tabs, escapes): give the identity's client id, a GUID",
            c.name("client_id")
        ));
    }
    if managed {
        for key in ["storage_access_key", "sas_token"] {
            if c.has(key) {
                problems.push(format!(
                    "{} cannot stand beside credentials_source: managed_identity: remove it (the VM's identity authorizes the requests)",
                    c.name(key)
                ));
            }
        }
    } else {
        if storage_access_key.is_some() && sas_token.is_some() {
            problems.push(format!(
                "{} and sas_token are exclusive: set one of them",
                c.name("storage_access_key")
            ));
        }
        if client_id.is_some() {
            problems.push(format!(
                "{} is only used with credentials_source: managed_identity",
                c.name("client_id")
            ));
        }
    }
    if let Some(token) = &sas_token
        && !token
            .expose()
            .trim()
            .trim_start_matches('?')
            .split('&')
            .any(|p| p.starts_with("sig="))
    {
        problems.push(format!(
            "{} must be a shared access signature's query string (sv=…&sig=…)",
            c.name("sas_token")
        ));
    }
    let ca_cert = pem_certificate(c, problems);
    let container = c.text("container", problems);
    let path = c.text("path", problems);
    let (endpoint, base_domain) = azure_endpoint(c, problems);
    let blob_store_base_url = c.text("blob_store_base_url", problems);
    if !complete {
        return None;
    }
    let credentials = if managed {
        AzureAuth::ManagedIdentity { client_id }
    } else if let Some(token) = sas_token {
        AzureAuth::SasToken(token)
    } else {
        AzureAuth::AccessKey(storage_access_key?)
    };
    Some(AzureConfig {
        storage_account: storage_account?,
        credentials,
        container: container?,
        path: path?,
        endpoint,
        blob_store_base_url: base_domain.or(blob_store_base_url),
        ca_cert,
    })
}

/// An Azure `endpoint`, as `(full URL, base domain)`: with a scheme it is the blob service's
/// URL (Azurite's `http://127.0.0.1:10000/devstoreaccount1`); without one it has the
/// original's meaning, the domain the account's URL is built on (`core.windows.net` is
/// `https://ACCOUNT.blob.core.windows.net`), as the original's Azure client took it.
fn azure_endpoint(c: &Section<'_>, problems: &mut Problems) -> (Option<String>, Option<String>) {
    let Some(raw) = c.text("endpoint", problems) else {
        return (None, None);
    };
    if raw.contains("://") {
        return (endpoint(c, "endpoint", problems), None);
    }
    let domain = raw.trim().trim_end_matches('/');
    let host_like = domain
        .split(':')
        .next()
        .is_some_and(|h| h.contains('.') || h == "localhost");
    let allowed = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | ':');
    if domain.is_empty() || !host_like || !domain.chars().all(allowed) {
        problems.push(format!(
            "{} must be a base domain such as core.windows.net (the account's URL is \
             https://ACCOUNT.blob.DOMAIN) or a full URL such as http://127.0.0.1:10000/devstoreaccount1",
            c.name("endpoint")
        ));
        return (None, None);
    }
    (None, Some(domain.to_string()))
}

fn scp(c: &Section<'_>, problems: &mut Problems) -> Option<ScpConfig> {
    let complete = require(
        c,
        "scp",
        &["server", "user", "destination", "key"],
        problems,
    );
    let server = c.text("server", problems);
    let user = c.text("user", problems);
    let destination = c.text("destination", problems);
    let key = c.secret("key", problems);
    let fingerprint = c.text("fingerprint", problems);
    let port = match c.get("port") {
        None => Some(22),
        Some(value) => {
            let port = scalar_text(value)
                .and_then(|t| t.trim().parse::<u16>().ok())
                .filter(|p| *p != 0);
            if port.is_none() {
                problems.push(format!(
                    "{} must be a number from 1 to 65535, not {}",
                    c.name("port"),
                    shown(value)
                ));
            }
            port
        }
    };
    if !complete {
        return None;
    }
    Some(ScpConfig {
        server: server?,
        user: user?,
        destination: destination?,
        key: key?,
        port: port?,
        fingerprint,
    })
}

fn gcs(c: &Section<'_>, problems: &mut Problems) -> Option<GcsConfig> {
    let source = one_of(
        c,
        "credentials_source",
        &["service_account_json", "metadata"],
        problems,
    );
    let from_metadata = source.as_deref() == Some("metadata");
    let required: &[&'static str] = if source.as_deref() == Some("service_account_json") {
        &["service_account_json", "project_id", "bucket_name"]
    } else {
        &["project_id", "bucket_name"]
    };
    let complete = require(c, "gcs", required, problems);
    let service_account_json = c.secret("service_account_json", problems);
    if from_metadata && c.get("service_account_json").is_some() {
        problems.push(format!(
            "{} comes with credentials_source metadata, which takes tokens from the VM's \
             metadata server: use one or the other (remove service_account_json, or leave \
             credentials_source out)",
            c.name("service_account_json")
        ));
    }
    let project_id = c.text("project_id", problems);
    let bucket_name = c.text("bucket_name", problems);
    let bucket_path = c.text("bucket_path", problems);
    let endpoint = endpoint(c, "endpoint", problems);
    let ca_cert = pem_certificate(c, problems);
    if !complete || source.is_none() {
        return None;
    }
    Some(GcsConfig {
        service_account_json: if from_metadata {
            None
        } else {
            Some(service_account_json?)
        },
        project_id: project_id?,
        bucket_name: bucket_name?,
        bucket_path,
        endpoint,
        ca_cert,
    })
}

fn local(c: &Section<'_>, problems: &mut Problems) -> Option<LocalConfig> {
    let complete = require(c, "local", &["path"], problems);
    let path = c.text("path", problems).map(PathBuf::from);
    if !complete {
        return None;
    }
    Some(LocalConfig { path: path? })
}

/// An endpoint URL; without a scheme, `https://` is meant (the original's `www.s3.com`).
/// The URL is not quoted in messages: it may carry credentials.
fn endpoint(c: &Section<'_>, key: &str, problems: &mut Problems) -> Option<String> {
    let raw = c.text(key, problems)?;
    let raw = raw.trim();
    let url = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        problems.push(format!(
            "{} must be an http:// or https:// URL",
            c.name(key)
        ));
        return None;
    }
    if host.contains('@') {
        problems.push(format!(
            "{} must not hold a user name or password (user@host): the destination's \
             credentials have their own keys",
            c.name(key)
        ));
        return None;
    }
    if url.contains('?') || url.contains('#') {
        problems.push(format!(
            "{} must not have a query or fragment (?... or #...)",
            c.name(key)
        ));
        return None;
    }
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        problems.push(format!(
            "{} must be a URL with a host name, such as https://s3.example.com",
            c.name(key)
        ));
        return None;
    }
    Some(url.trim_end_matches('/').to_string())
}

fn check_unique_names(destinations: &[DestinationConfig], problems: &mut Problems) {
    let mut seen: Vec<&str> = Vec::new();
    let mut reported: Vec<&str> = Vec::new();
    for name in destinations.iter().filter_map(|d| d.name.as_deref()) {
        if seen.contains(&name) && !reported.contains(&name) {
            problems.push(format!(
                "two destinations are named \"{name}\"; give each a different name"
            ));
            reported.push(name);
        }
        seen.push(name);
    }
}

#[cfg(test)]
mod azure_endpoint_tests {
    use crate::config::model::DestinationKind;

    fn endpoint_of(value: &str) -> Result<String, String> {
        let yaml = format!(
            "destinations:\n- type: azure\n  config: {{storage_account: acct, storage_access_key: AZKEY, container: c, path: p, endpoint: '{value}'}}\nsource_folder: /src\ncron_schedule: '@daily'\n"
        );
        let config = crate::config::parse(&yaml).map_err(|e| e.to_string())?;
        let DestinationKind::Azure(a) = &config.destinations[0].kind else {
            panic!("not azure")
        };
        Ok(a.blob_endpoint())
    }

    #[test]
    fn an_endpoint_without_a_scheme_is_the_original_base_domain() {
        // The original's upload/factory.go passes `endpoint` to azure.New, whose
        // storage.NewClient(account, key, endpoint, ...) takes it as the base URL
        // (storage.DefaultBaseURL is "core.windows.net"): the account's blob service is
        // https://<account>.blob.<endpoint>.
        assert_eq!(
            endpoint_of("core.windows.net").unwrap(),
            "https://acct.blob.core.windows.net"
        );
        assert_eq!(
            endpoint_of("core.chinacloudapi.cn/").unwrap(),
            "https://acct.blob.core.chinacloudapi.cn"
        );
        // A full URL (Azurite, a private endpoint) is taken as it is.
        assert_eq!(
            endpoint_of("http://127.0.0.1:10000/devstoreaccount1/").unwrap(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(
            endpoint_of("https://acct.privatelink.blob.core.windows.net").unwrap(),
            "https://acct.privatelink.blob.core.windows.net"
        );
        for bad in ["core windows net", "core.windows.net/path", "nodots"] {
            let err = endpoint_of(bad).unwrap_err();
            assert!(
                err.contains("must be a base domain such as core.windows.net"),
                "{bad}: {err}"
            );
        }
    }
}
