//! The findings of a review of the reader by an attacker: tagged keys, secrets in parser
//! messages, credentials in endpoints, forged lines, deep nesting, unclear messages.

use super::super::parse;
use super::problems;

const BASE: &str = "destinations:\n- type: local\n  config: {path: /b}\nsource_folder: /s\ncron_schedule: '@daily'\n";

fn with(extra: &str) -> Vec<String> {
    problems(&format!("{BASE}{extra}"))
}

#[test]
fn a_tagged_key_is_read_as_the_plain_key() {
    let config = parse(&format!("{BASE}!x retention: {{keep_last: 3}}\n")).unwrap();
    assert_eq!(config.retention.unwrap().keep_last, Some(3));
    let config = parse(&format!(
        "{BASE}!!str encryption: {{key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}}\n"
    ))
    .unwrap();
    assert!(
        config.keyring.is_some(),
        "the tagged encryption was not read"
    );
    assert_eq!(
        with("!x retention: {keep_lst: 1}\n"),
        ["Invalid config - unknown key retention.keep_lst; did you mean keep_last?"]
    );
    let got = problems(
        "destinations:\n- type: local\n  config: {path: /b}\n  !x retention: {keep_lst: 1, bogus: 2}\nsource_folder: /s\ncron_schedule: '@daily'\n",
    );
    assert!(
        got.iter()
            .any(|p| p.contains("unknown key destinations[0].retention.bogus")),
        "{got:?}"
    );
    let got = with("alerts: {!x product_nme: p}\n");
    assert!(
        got.iter()
            .any(|p| p.contains("unknown key alerts.product_nme")),
        "{got:?}"
    );
}

#[test]
fn a_key_given_plain_and_tagged_is_a_duplicate() {
    assert_eq!(
        with("!x source_folder: /other\n"),
        [
            "Invalid config - the key source_folder is given twice (a YAML tag does not make it another key)."
        ]
    );
}

#[test]
fn a_value_refused_by_the_parser_is_never_quoted() {
    for (yaml, secret) in [
        (
            "encryption: {key: !!int 'x\"SEKRITVALUE1234\"y'}\n",
            "SEKRITVALUE1234",
        ),
        ("encryption: {key: !!bool 'x`SEKRIT2'}\n", "SEKRIT2"),
        (
            "destinations:\n- type: s3\n  config: {secret_access_key: !!float \"abc\\\"SEKRIT3\"}\n",
            "SEKRIT3",
        ),
    ] {
        let got = problems(yaml);
        let all = got.join("\n");
        assert!(all.contains("not valid YAML"), "{all}");
        assert!(all.contains("line 1") || all.contains("line 3"), "{all}");
        assert!(!all.contains(secret), "{secret} in {all}");
        assert!(!all.contains("abc") && !all.contains("x\\\""), "{all}");
    }
}

#[test]
fn an_endpoint_with_user_info_or_a_query_is_refused_unquoted() {
    for (config, key) in [
        (
            "{type: s3, config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: s, endpoint_url: 'http://u:SEKRITPASS@127.0.0.1:1/'}}",
            "endpoint_url",
        ),
        (
            "{type: s3, config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: s, endpoint_url: 'http://127.0.0.1:1/?token=SEKRITPASS'}}",
            "endpoint_url",
        ),
        (
            "{type: azure, config: {storage_account: a, storage_access_key: k, container: c, path: p, endpoint: 'http://u:SEKRITPASS@127.0.0.1:1/a'}}",
            "endpoint",
        ),
        (
            "{type: gcs, config: {service_account_json: j, project_id: p, bucket_name: b, endpoint: 'http://127.0.0.1:1/?key=SEKRITPASS'}}",
            "endpoint",
        ),
    ] {
        let got = problems(&format!(
            "destinations:\n- {config}\nsource_folder: /s\ncron_schedule: '@daily'\n"
        ));
        let all = got.join("\n");
        assert_eq!(got.len(), 1, "{all}");
        assert!(all.contains(&format!("{key} must not")), "{all}");
        assert!(
            !all.contains("SEKRITPASS") && !all.contains("127.0.0.1"),
            "{all}"
        );
    }
}

#[test]
fn control_characters_from_the_file_cannot_forge_a_line() {
    let got = with("\"x\\nInvalid config - forged line\\e[31mRED\": 1\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        !got[0].contains('\n') && !got[0].contains('\u{1b}'),
        "{got:?}"
    );
    assert!(
        got[0].contains("\\n") && got[0].contains("\\u{1b}"),
        "{got:?}"
    );
    let got = problems(&format!(
        "{}missing_properties_message: \"a\\nInvalid config - forged\"\n",
        "destinations:\n- type: s3\n  config: {}\n"
    ));
    assert!(got.iter().all(|p| !p.contains('\n')), "{got:?}");
}

#[test]
fn deep_nesting_and_huge_files_are_refused_before_parsing() {
    let started = std::time::Instant::now();
    let deep = format!("alerts: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        problems(&deep),
        ["Invalid config - the file nests [ and { more than 64 deep."]
    );
    // Closing brackets hidden in quotes do not hide the depth: the count of brackets
    // bounds it.
    let hidden = format!("alerts: {}\n", "['x]]]]', ".repeat(5000));
    assert_eq!(
        problems(&hidden),
        ["Invalid config - the file holds more than 4096 [ and { brackets."]
    );
    let huge = format!("{BASE}# {}\n", "x".repeat(1024 * 1024));
    let got = problems(&huge);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("a configuration file may be at most 1048576 bytes (1 MiB)"),
        "{got:?}"
    );
    // From a file, a huge one is refused without being read whole, even cut inside a
    // character.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yml");
    std::fs::write(&path, "é".repeat(4 * 1024 * 1024)).unwrap();
    let err = super::super::load(&path).unwrap_err();
    assert_eq!(
        err.problems(),
        [
            "Invalid config - the file is too long: a configuration file may be at most 1048576 bytes (1 MiB)."
        ]
    );
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    // A config under both limits still parses (in an `x-` key, which takes any value).
    let nested = format!(
        "x-deep: {{anchor: {}1{}}}\n",
        "[".repeat(60),
        "]".repeat(60)
    );
    assert!(with(&nested).is_empty());
}

#[test]
fn odd_keys_are_shown_so_that_the_difference_can_be_seen() {
    assert_eq!(
        with("\"retention \": {keep_last: 1}\n"),
        ["Invalid config - unknown key \"retention \"; did you mean retention?"]
    );
    let got = with("\"\": 1\n");
    assert!(
        got[0].starts_with("Invalid config - unknown key \"\""),
        "{got:?}"
    );
    assert_eq!(
        problems(
            "destinations:\n- type: local\n  config: {path: /b}\n  retention: {keep_last: 0}\nsource_folder: /s\ncron_schedule: '@daily'\n"
        ),
        [
            "Invalid config - local destination 1: retention keeps nothing: give at least one of keep_last, keep_days, keep_daily, keep_weekly, keep_monthly a number above 0 (or remove this destination's retention to keep every backup)."
        ]
    );
}

#[test]
fn top_level_x_keys_hold_anchors() {
    let config = parse(&format!(
        "x-keep: &keep {{keep_last: 4}}\n{BASE}retention: *keep\n"
    ))
    .unwrap();
    assert_eq!(config.retention.unwrap().keep_last, Some(4));
    // Only at the top: elsewhere it is an unknown key.
    let got = with("restore: {x-a: 1}\n");
    assert!(got[0].contains("unknown key restore.x-a"), "{got:?}");
}
