//! Invalid configurations: the exact lines, all problems at once, and no secret in them.

use std::path::Path;

use super::super::{load, parse};
use super::{MSG, S3_OK, problems};

#[test]
fn bad_configs_give_the_expected_lines() {
    let with_s3 = |extra: &str| format!("{S3_OK}{extra}");
    let table: Vec<(String, Vec<String>)> = vec![
        (
            "destinations:\n- type: s3\n  config: {bucket_name: b, access_key_id: a, secret_access_key: s}\n\
             source_folder: /s\ncron_schedule: '@daily'\nmissing_properties_message: custom message\n"
                .into(),
            vec!["Invalid config - Missing values for s3: bucket_path. custom message".into()],
        ),
        (
            "destinations:\n- type: ftp\n  config: {}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec!["Invalid config - Unknown destination type: ftp.".to_string()],
        ),
        (
            "destinations:\n- type: local\n  config: {path: /x}\n".into(),
            vec![format!(
                "Invalid config - Missing values for service_backup: source_folder, cron_schedule. {MSG}"
            )],
        ),
        (
            "destinations:\n- type: local\n  config: {path: /x}\nsource_folder: ''\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - Missing values for service_backup: source_folder. {MSG}")],
        ),
        (
            "destinations:\n- type: azure\n".into(),
            vec![
                format!("Invalid config - Missing values for azure: storage_account, storage_access_key, container, path. {MSG}"),
                format!("Invalid config - Missing values for service_backup: source_folder, cron_schedule. {MSG}"),
            ],
        ),
        (
            "destinations:\n- type: scp\n  config: {server: s, key: k}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - Missing values for scp: user, destination. {MSG}")],
        ),
        (
            "destinations:\n- type: gcs\n  config: {bucket_name: b}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - Missing values for gcs: service_account_json, project_id. {MSG}")],
        ),
        (
            "destinations:\n- config: {path: /x}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec!["Invalid config - destination 1 has no type (use s3, azure, scp, gcs or local).".to_string()],
        ),
        (
            "destinations:\n- local\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec!["Invalid config - destination 1 must be a mapping with type and config, not a string.".to_string()],
        ),
        (
            "destinations:\n- type: local\n  config: /x\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec!["Invalid config - local destination 1: config must be a mapping of settings, not a string.".to_string()],
        ),
        (
            with_s3("cron_schedule: '61 * * * *'\n").replace("cron_schedule: '0 3 * * *'\n", ""),
            vec!["Invalid config - cron_schedule \"61 * * * *\" is not a valid schedule: minute field \"61\": 61 is above the maximum 59.".to_string()],
        ),
        (
            with_s3("verify_schedule: '61 * * * *'\n"),
            vec!["Invalid config - verify_schedule \"61 * * * *\" is not a valid schedule: minute field \"61\": 61 is above the maximum 59.".to_string()],
        ),
        (
            with_s3("verify_schedule: ''\n"),
            vec!["Invalid config - verify_schedule is empty: give a schedule such as \"0 5 * * 0\", or remove the key.".to_string()],
        ),
        (
            with_s3("verify_schedule: '@daily'\nrestore_check_executable: bin/check-restored --quick\n"),
            vec!["Invalid config - restore_check_executable bin/check-restored is a relative path: give the executable's full path.".to_string()],
        ),
        (
            with_s3("verify_schedule: '@daily'\nrestore_check_executable: ' '\n"),
            vec!["Invalid config - restore_check_executable is empty: give the executable's full path, or remove the key.".to_string()],
        ),
        (
            with_s3("verify_schedule: '@daily'\nrestore_check_timeout: 0s\n"),
            vec!["Invalid config - restore_check_timeout \"0s\" is too short: give at least 1s, such as 30m.".to_string()],
        ),
        (
            with_s3("verify_schedule: '@daily'\nrestore_check_timeout: '30'\n"),
            vec!["Invalid config - restore_check_timeout \"30\" is not a duration such as 1h30m or 90s: a unit (ns, us, ms, s, m or h) is missing.".to_string()],
        ),
        (
            with_s3("verify_schedule: '@daily'\nrestore_check_timeout: ''\n"),
            vec!["Invalid config - restore_check_timeout is empty: give a duration such as 30m, or remove the key.".to_string()],
        ),
        (
            with_s3("restore_check_executable: /bin/check-restored\n"),
            vec!["Invalid config - restore_check_executable is set but verify_schedule is not: it runs only in restore drills.".to_string()],
        ),
        (
            with_s3("compression_level: 12\n"),
            vec!["Invalid config - compression_level must be a whole number from 1 to 9, not 12.".to_string()],
        ),
        (
            with_s3("compression: zstd\ncompression_level: 20\n"),
            vec!["Invalid config - compression_level must be a whole number from 1 to 19 for zstd, not 20.".to_string()],
        ),
        (
            with_s3("compression: xz\n"),
            vec!["Invalid config - compression must be gzip or zstd, not \"xz\".".to_string()],
        ),
        (
            with_s3("compression_level: fast\n"),
            vec!["Invalid config - compression_level must be a whole number from 1 to 9, not \"fast\".".to_string()],
        ),
        (
            "api: {tls: {cert_file: c}}\n".into(),
            vec![
                format!("Invalid config - Missing values for api: listen, bearer_tokens_file. {MSG}"),
                format!("Invalid config - Missing values for api.tls: key_file. {MSG}"),
            ],
        ),
        (
            "api: {listen: 8443, bearer_tokens_file: t}\n".into(),
            vec!["Invalid config - api.listen must be an address and port such as 127.0.0.1:8443, not \"8443\".".to_string()],
        ),
        (
            "exit_if_in_progress: maybe\n".into(),
            vec!["Invalid config - exit_if_in_progress must be true or false, not \"maybe\".".to_string()],
        ),
        (
            "add_deployment_name_to_backup_path: true\n".into(),
            vec!["Invalid config - add_deployment_name_to_backup_path is true but deployment_name is not set.".to_string()],
        ),
        (
            "instance_id: a/b\n".into(),
            vec!["Invalid config - instance_id \"a/b\" may contain only letters, digits, '.', '_' and '-' (at most 128).".to_string()],
        ),
        (
            "source_folder: [a, b]\nrestore: yes\n".into(),
            vec![
                "Invalid config - source_folder must be a string, not a list.".to_string(),
                "Invalid config - restore must be a mapping of settings, not a string.".to_string(),
            ],
        ),
        (
            "destinations:\n- type: scp\n  name: box\n  config: {server: s, user: u, destination: /d, key: k, port: 70000}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec!["Invalid config - scp destination \"box\": port must be a number from 1 to 65535, not 70000.".to_string()],
        ),
        (
            "destinations:\n- type: s3\n  config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: s, endpoint_url: 'ftp://x'}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec!["Invalid config - s3 destination 1: endpoint_url must be an http:// or https:// URL.".to_string()],
        ),
        (
            "destinations:\n- {type: local, name: a, config: {path: /x}}\n- {type: local, name: a, config: {path: /y}}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec!["Invalid config - two destinations are named \"a\"; give each a different name.".to_string()],
        ),
        (
            "- just\n- a list\n".into(),
            vec!["Invalid config - the configuration must be a mapping of settings, not a list.".to_string()],
        ),
        (
            "missing_properties_message: [x]\n".into(),
            vec!["Invalid config - missing_properties_message must be a string, not a list.".to_string()],
        ),
    ];
    for (yaml, want) in table {
        assert_eq!(problems(&yaml), want, "{yaml}");
    }
}

#[test]
fn malformed_yaml_says_where() {
    let got = problems("destinations:\n  - type: s3\n config: x\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("Invalid config - the file is not valid YAML: "),
        "{}",
        got[0]
    );
    assert!(got[0].contains("line 3 column"), "{}", got[0]);
    // Not a missing value: the custom message does not follow (it may not even be
    // readable in a broken file).
    assert!(!got[0].contains(MSG), "{}", got[0]);
    let got = problems("missing_properties_message: \"Ask the platform team.\"\nk: [1, 2\n");
    assert_eq!(
        got,
        [
            "Invalid config - the file is not valid YAML: did not find expected ',' or ']' at \
          line 3 column 1, while parsing a flow sequence at line 2 column 4."
        ]
    );
}

#[test]
fn many_problems_are_listed_together() {
    let yaml = "
destinations:
- type: s3
  config: {bucket_name: b}
- type: ftp
- config: {}
- type: local
  config: {path: /x}
cron_schedule: 'every day'
compression_level: 0
encryption: {}
api: {listen: ':80', metrics: {namespace: 'org..node', parachute_threshold: 101}}
missing_properties_message: Fix the manifest.
";
    let got = problems(yaml);
    let want = [
        "Missing values for s3: bucket_path, access_key_id, secret_access_key",
        "Unknown destination type: ftp",
        "destination 3 has no type (use s3, azure, scp, gcs or local)",
        "Missing values for service_backup: source_folder",
        "cron_schedule \"every day\" is not a valid schedule: expected 5 or 6 fields, found 2",
        "encryption needs key_file (a key file written by `service-backup keygen`) or key (its base64 text)",
        "compression_level must be a whole number from 1 to 9, not 0",
        "Missing values for api: bearer_tokens_file",
        "api.listen must be an address and port such as 127.0.0.1:8443, not \":80\"",
        "api.metrics.namespace must be names of letters, digits, '_' and '-' joined by dots, such as org.space.instance.name.service.node, not \"org..node\"",
        "api.metrics.parachute_threshold must be a whole number from 0 (off) to 100, not 101",
    ]
    .map(|p| {
        // The custom message follows only the problems of missing values.
        let message = if p.starts_with("Missing values") {
            " Fix the manifest."
        } else {
            ""
        };
        format!("Invalid config - {p}.{message}")
    });
    assert_eq!(got, want);
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let secrets = [
        "S3SECRETVALUE",
        "AZSECRETVALUE",
        "SSHSECRETVALUE",
        "GCSSECRETVALUE",
    ];
    let good = "
destinations:
- {type: s3, config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: S3SECRETVALUE}}
- {type: azure, config: {storage_account: a, storage_access_key: AZSECRETVALUE, container: c, path: p}}
- {type: scp, config: {server: s, user: u, destination: /d, key: SSHSECRETVALUE}}
- {type: gcs, config: {service_account_json: GCSSECRETVALUE, project_id: p, bucket_name: b}}
source_folder: /s
cron_schedule: '@hourly'
";
    let config = parse(good).unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{config:?} {config:#?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // The same secrets in configs with problems everywhere around them.
    let bad = good
        .replace("bucket_path: p,", "")
        .replace("container: c,", "")
        .replace("user: u,", "port: [SSHSECRETVALUE],")
        .replace("project_id: p,", "endpoint: 'gopher://GCSSECRETVALUE',")
        .replace("cron_schedule: '@hourly'", "cron_schedule: '@every'")
        + "encryption: {key: AZSECRETVALUE}\nalerts: {config: {cloud_controller: {password: [S3SECRETVALUE]}}}\n";
    let err = parse(&bad).expect_err("invalid");
    assert!(err.problems().len() >= 6, "{err}");
    let text = format!("{err} {err:?}");
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // A secret of the wrong shape is named, not shown.
    let err = parse("destinations:\n- {type: s3, config: {secret_access_key: [S3SECRETVALUE]}}\n")
        .expect_err("invalid");
    assert!(!err.to_string().contains("S3SECRETVALUE"), "{err}");
    assert!(
        err.to_string()
            .contains("secret_access_key must be a string, not a list"),
        "{err}"
    );
    // YAML syntax errors do not quote what they found.
    let err = parse("secret_access_key: \"S3SECRETVALUE\n  - x: [").expect_err("invalid");
    assert!(!err.to_string().contains("S3SECRETVALUE"), "{err}");
}

#[test]
fn unreadable_config_files_are_one_problem() {
    let err = load(Path::new("/nonexistent/backup.yml")).expect_err("missing");
    assert_eq!(
        err.problems(),
        ["Invalid config - cannot read config file /nonexistent/backup.yml: No such file or directory.".to_string()]
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("binary.yml");
    std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
    let err = load(&path).expect_err("binary");
    assert!(err.to_string().contains("it is not UTF-8 text"), "{err}");
}

#[test]
fn odd_documents_never_panic() {
    for yaml in [
        "!!binary aGVsbG8=",
        "? [a]\n: b\n",
        "destinations: {a: b}",
        "destinations: [[], null, 3, {type: null}, {type: [s3]}, {type: local, config: null}]",
        "&a [*a]",
        "a: &x b\nc: *x\n",
        "destinations: !custom [x]",
        "compression_level: 1.5\nencryption: {previous_key_files: x}",
        "api: {listen: '[::1:80', bearer_tokens_file: t, tls: 3}",
        "\u{feff}source_folder: /x",
        "---\na: 1\n---\nb: 2\n",
    ] {
        let _ = parse(yaml);
    }
}

#[test]
fn plain_http_beyond_loopback_and_bad_connection_caps_are_refused() {
    let plain = |listen: &str| {
        format!(
            "Invalid config - api.listen {listen} is reachable from other machines and api.tls \
             is not set, so bearer tokens and backups would cross the network in plain HTTP; \
             set api.tls (cert_file and key_file), listen on 127.0.0.1, or set \
             api.allow_plaintext: true to accept plain HTTP."
        )
    };
    for listen in [
        "0.0.0.0:8443",
        "[::]:8443",
        "10.0.0.5:80",
        "backup.example.com:8443",
    ] {
        let yaml = format!("api: {{listen: '{listen}', bearer_tokens_file: t}}\n");
        assert_eq!(problems(&yaml), [plain(listen)], "{listen}");
        let allowed =
            format!("api: {{listen: '{listen}', bearer_tokens_file: t, allow_plaintext: true}}\n");
        let config = parse(&allowed).unwrap_or_else(|e| panic!("{listen}: {e}"));
        assert!(config.api.expect("api").allow_plaintext);
        let with_tls = format!(
            "api: {{listen: '{listen}', bearer_tokens_file: t, tls: {{cert_file: c, key_file: k}}}}\n"
        );
        parse(&with_tls).unwrap_or_else(|e| panic!("{listen}: {e}"));
    }
    for listen in [
        "127.0.0.1:8443",
        "127.0.0.2:80",
        "[::1]:8443",
        "localhost:8443",
        "LOCALHOST:1",
        "[::ffff:127.0.0.1]:80",
    ] {
        let yaml = format!("api: {{listen: '{listen}', bearer_tokens_file: t}}\n");
        let config = parse(&yaml).unwrap_or_else(|e| panic!("{listen}: {e}"));
        let api = config.api.expect("api");
        assert_eq!((api.allow_plaintext, api.max_connections), (false, 256));
    }
    let cap = |v: &str| {
        format!("api: {{listen: '127.0.0.1:1', bearer_tokens_file: t, max_connections: {v}}}\n")
    };
    assert_eq!(
        parse(&cap("8"))
            .expect("valid")
            .api
            .expect("api")
            .max_connections,
        8
    );
    for bad in ["0", "-1", "16385", "many", "1.5"] {
        assert_eq!(
            problems(&cap(bad)),
            [format!(
                "Invalid config - api.max_connections must be a whole number from 1 to 16384, \
                 not {}.",
                if bad == "many" {
                    "\"many\"".to_string()
                } else {
                    bad.to_string()
                }
            )],
            "{bad}"
        );
    }
    assert_eq!(
        problems("api: {listen: '127.0.0.1:1', bearer_tokens_file: t, allow_plaintext: sure}\n"),
        ["Invalid config - api.allow_plaintext must be true or false, not \"sure\".".to_string()]
    );
}

#[test]
fn secret_files_and_the_configuration_are_mode_checked_all_at_once() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let chmod = |name: &str, mode: u32| {
        std::fs::set_permissions(dir.path().join(name), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    };
    for name in ["tokens", "tls.key", "tls.crt"] {
        std::fs::write(dir.path().join(name), "x\n").expect("write");
    }
    let path = dir.path().join("backup.yml");
    std::fs::write(
        &path,
        "api:\n  listen: 127.0.0.1:8443\n  bearer_tokens_file: tokens\n  tls: {cert_file: tls.crt, key_file: tls.key}\ncron_schedule: 'bad'\n",
    )
    .expect("write");
    chmod("backup.yml", 0o666);
    chmod("tokens", 0o644);
    chmod("tls.key", 0o660);
    chmod("tls.crt", 0o644);
    let err = load(&path).expect_err("refused");
    let lines = err.problems();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(
        lines[0],
        format!(
            "Invalid config - the configuration file {d}/backup.yml: users other than its owner \
             may change it (mode 0666), and it names the commands the agent runs; run `chmod \
             go-w {d}/backup.yml`."
        )
    );
    assert!(
        lines[1].starts_with("Invalid config - cron_schedule \"bad\""),
        "{lines:?}"
    );
    assert_eq!(
        lines[2],
        format!(
            "Invalid config - api.bearer_tokens_file {d}/tokens: other users may read or write \
             it (mode 0644); run `chmod 600 {d}/tokens` (or 640 when the agent reads it through \
             its group)."
        )
    );
    assert!(
        lines[3].starts_with(&format!(
            "Invalid config - api.tls.key_file {d}/tls.key: its group may write it (mode 0660)"
        )),
        "{lines:?}"
    );
    // The certificate is public; a configuration that others may read is fine.
    chmod("backup.yml", 0o644);
    chmod("tokens", 0o600);
    chmod("tls.key", 0o640);
    std::fs::write(
        &path,
        "api:\n  listen: 127.0.0.1:8443\n  bearer_tokens_file: tokens\n  tls: {cert_file: tls.crt, key_file: tls.key}\n",
    )
    .expect("write");
    load(&path).unwrap_or_else(|e| panic!("{e}"));
}
