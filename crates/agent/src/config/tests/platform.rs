//! `api.uaa` and `api.cloud_controller`: what they read and what they refuse.

use super::super::parse;
use super::{S3_OK, problems};

fn with_api(api: &str) -> String {
    format!("{S3_OK}api:\n  listen: 127.0.0.1:8443\n{api}")
}

#[test]
fn platform_tokens_may_replace_the_static_ones() {
    let yaml = with_api(
        "  uaa:\n    token_keys_url: https://uaa.example.com/token_keys/\n    \
         issuer: https://uaa.example.com/oauth/token\n  \
         cloud_controller: {url: 'https://api.example.com'}\n",
    );
    let config = parse(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let api = config.api.expect("api");
    assert_eq!(api.bearer_tokens_file, None);
    let uaa = api.uaa.expect("uaa");
    assert_eq!(uaa.keys_url, "https://uaa.example.com/token_keys");
    assert_eq!(
        (uaa.audience, uaa.required_scopes, uaa.leeway_seconds),
        (None, Vec::<String>::new(), 30)
    );
    let cc = api.cloud_controller.expect("cloud_controller");
    assert_eq!(
        (cc.url.as_str(), cc.service_instance_guid, cc.cache_seconds),
        ("https://api.example.com", None, 30)
    );
    let yaml =
        with_api("  uaa: {jwks_url: 'http://127.0.0.1:1/jwks', issuer: i, required_scopes: a.b}\n");
    let uaa = parse(&yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .api
        .unwrap()
        .uaa
        .unwrap();
    assert_eq!(uaa.required_scopes, ["a.b"]);
}

#[test]
fn bad_platform_settings_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("", "Missing values for api: bearer_tokens_file"),
        (
            "  uaa: {issuer: i, required_scopes: [s]}\n",
            "Missing values for api.uaa: jwks_url or token_keys_url",
        ),
        (
            "  uaa: {jwks_url: 'https://u/k', token_keys_url: 'https://u/k', issuer: i, required_scopes: [s]}\n",
            "api.uaa takes jwks_url or token_keys_url, not both",
        ),
        (
            "  uaa: {jwks_url: 'https://u/k', required_scopes: [s]}\n",
            "Missing values for api.uaa: issuer",
        ),
        (
            "  uaa: {jwks_url: 'ftp://u/k', issuer: i, required_scopes: [s]}\n",
            "api.uaa.jwks_url must be an http:// or https:// URL, not \"ftp://u/k\"",
        ),
        (
            "  uaa: {jwks_url: 'https://u/k', issuer: i}\n",
            "api.uaa needs api.cloud_controller or api.uaa.required_scopes",
        ),
        (
            "  uaa: {jwks_url: 'https://u/k', issuer: i, required_scopes: [s], leeway_seconds: -1}\n",
            "api.uaa.leeway_seconds must be a whole number of seconds from 0 to 300, not -1",
        ),
        (
            "  uaa: {jwks_url: 'https://u/k', issuer: i, required_scopes: [{a: 1}]}\n",
            "api.uaa.required_scopes must be a list of scope names",
        ),
        (
            "  uaa: {jwks_url: 'https://u/k', issuer: i, required_scopes: [s], ca_cert: 'not PEM'}\n",
            "api.uaa.ca_cert must be a PEM certificate",
        ),
        (
            "  bearer_tokens_file: t\n  cloud_controller: {url: 'https://api'}\n",
            "api.cloud_controller needs api.uaa",
        ),
        (
            "  bearer_tokens_file: t\n  uaa: {jwks_url: 'https://u/k', issuer: i}\n  cloud_controller: {cache_seconds: 301}\n",
            "Missing values for api.cloud_controller: url",
        ),
        (
            "  bearer_tokens_file: t\n  uaa: {jwks_url: 'https://u/k', issuer: i}\n  cloud_controller: {url: 'https://api', cache_seconds: 301}\n",
            "api.cloud_controller.cache_seconds must be a whole number of seconds from 0 to 300, not 301",
        ),
        (
            "  bearer_tokens_file: t\n  uaa: {jwks_url: 'https://u/k', issuer: i, required_scopes: [s], audiense: x}\n",
            "unknown key api.uaa.audiense; did you mean audience?",
        ),
    ];
    for (api, expected) in cases {
        let found = problems(&with_api(api));
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{api:?}: {expected:?} is not in {found:?}"
        );
    }
}
