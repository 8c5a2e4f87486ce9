//! Keys that no section knows: refused at every level, with their path and a close key.

use super::super::parse;
use super::{MSG, S3_OK, problems};

fn line(problem: &str) -> String {
    let stop = if problem.ends_with('?') { "" } else { "." };
    format!("Invalid config - {problem}{stop}")
}

#[test]
fn the_typos_of_the_issue_are_each_refused_with_their_path() {
    let table = [
        (
            "retension: {keep_last: 1}\n",
            "unknown key retension; did you mean retention?",
        ),
        (
            "compresion: zstd\n",
            "unknown key compresion; did you mean compression?",
        ),
        (
            "state_dirr: /var/lib/sb\n",
            "unknown key state_dirr; did you mean state_dir?",
        ),
        (
            "encyption: {key_file: /k}\n",
            "unknown key encyption; did you mean encryption?",
        ),
        (
            "encryption: {key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=, previous_keyfiles: [/old.key]}\n",
            "unknown key encryption.previous_keyfiles; did you mean previous_key_files?",
        ),
        (
            "api: {listen: '127.0.0.1:1', bearer_tokens_file: t, metrics: {parachute_treshold: 90}}\n",
            "unknown key api.metrics.parachute_treshold; did you mean parachute_threshold?",
        ),
        (
            "api: {listen: '127.0.0.1:1', bearer_tokens_file: t, tls_cert: /c.pem}\n",
            "unknown key api.tls_cert; the keys here are listen, bearer_tokens_file, tls, \
             allow_plaintext, max_connections, metrics, uaa, cloud_controller",
        ),
        (
            "api: {listen: '127.0.0.1:1', bearer_tokens_file: t, tls: {cert_file: c, key_file: k, ca_file: x}}\n",
            "unknown key api.tls.ca_file; the keys here are cert_file, key_file",
        ),
        (
            "restore: {target: /r}\n",
            "unknown key restore.target; the keys here are target_folder, restore_executable",
        ),
    ];
    for (extra, want) in table {
        let yaml = format!("{S3_OK}{extra}");
        assert_eq!(problems(&yaml), [line(want)], "{extra}");
    }
}

#[test]
fn destination_keys_are_named_by_their_path_after_the_destination() {
    let yaml = "
destinations:
- type: local
  config: {path: /a}
- type: s3
  name: primary
  config: {bucket_nme: b, bucket_path: p, access_key_id: a, secret_access_key: S3SECRETVALUE}
  retension: {keep_last: 1}
- type: scp
  config: {server: s, user: u, destination: /d, key: SSHSECRETVALUE, prot: 22}
- typ: local
  config: {path: /b}
- type: ftp
  confg: {}
source_folder: /s
cron_schedule: '@daily'
";
    assert_eq!(
        problems(yaml),
        [
            line(
                "s3 destination \"primary\": unknown key destinations[1].retension; did you mean retention?"
            ),
            line(
                "s3 destination \"primary\": unknown key destinations[1].config.bucket_nme; did you mean bucket_name?"
            ),
            format!("{} {MSG}", line("Missing values for s3: bucket_name")),
            line("scp destination 3: unknown key destinations[2].config.prot; did you mean port?"),
            line("destination 4 has no type (use s3, azure, scp, gcs or local)"),
            line("destination 4: unknown key destinations[3].typ; did you mean type?"),
            line("Unknown destination type: ftp"),
            line("destination 5: unknown key destinations[4].confg; did you mean config?"),
        ]
    );
}

#[test]
fn unknown_keys_come_with_every_other_problem_and_never_show_a_value() {
    let yaml = "
destinations:
- type: azure
  config: {storage_account: a, storage_acess_key: AZSECRETVALUE, container: c, path: p}
source_folder: /s
cron_schedule: 'never'
S3SECRETVALUE: 1
encryption: {kye: GCSSECRETVALUE}
";
    let got = problems(yaml);
    assert_eq!(
        got,
        [
            line("unknown key S3SECRETVALUE"),
            line(
                "azure destination 1: unknown key destinations[0].config.storage_acess_key; did you mean storage_access_key?"
            ),
            format!(
                "{} {MSG}",
                line("Missing values for azure: storage_access_key")
            ),
            line(
                "cron_schedule \"never\" is not a valid schedule: expected 5 or 6 fields, found 1"
            ),
            line("unknown key encryption.kye; did you mean key?"),
            line(
                "encryption needs key_file (a key file written by `service-backup keygen`) or key (its base64 text)"
            ),
        ]
    );
    let all = got.join("\n");
    for secret in ["AZSECRETVALUE", "GCSSECRETVALUE"] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
}

#[test]
fn keys_that_are_not_text_are_named_by_their_kind() {
    assert_eq!(
        problems("? [a, b]\n: 1\n7: x\n"),
        [
            line("a key at the top level must be text, not a list"),
            line("a key at the top level must be text, not a number")
        ]
    );
    assert_eq!(
        problems(
            "destinations:\n- type: local\n  config: {path: /b, 3: x}\nsource_folder: /s\ncron_schedule: '@daily'\n"
        ),
        [line(
            "a key at destinations[0].config must be text, not a number"
        )]
    );
}

#[test]
fn the_original_keys_that_do_nothing_are_accepted_and_alerts_are_checked() {
    let original = format!(
        "{S3_OK}aws_cli_path: /var/vcap/packages/aws/bin/aws\nazure_cli_path: /x\n\
         backup_user: vcap\nalerts:\n  product_name: Redis\n  config:\n    \
         cloud_controller: {{url: 'https://api.sys', user: u, password: PASSWORD1}}\n    \
         notifications: {{service_url: 'https://n', cf_org: o, cf_space: s, reply_to: r, \
         client_id: c, client_secret: SECRET2}}\n    timeout_seconds: 60\n    \
         skip_ssl_validation: false\n"
    );
    let config = parse(&original).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.ignored_keys,
        ["aws_cli_path", "azure_cli_path", "backup_user"]
    );
    assert!(config.alerts.is_some_and(|a| a.notifications.is_some()));
    // Release 17.2's alerts, and the job's empty ones. The space is found through the
    // Cloud Controller, so alerts that send need it (the shape without it is refused in
    // tests/alerts.rs).
    let older = format!(
        "{S3_OK}alerts:\n  product_name: MySQL\n  config:\n    \
         cloud_controller: {{url: 'https://api.sys', user: u, password: PASSWORD1}}\n    \
         notification_target:\n      \
         url: 'https://n'\n      skip_ssl_validation: true\n      cf_org: o\n      cf_space: s\n      \
         reply_to: r\n      authentication: {{uaa: {{url: 'https://uaa', client_id: c, client_secret: x}}}}\n    \
         timeout_seconds: 42\n"
    );
    parse(&older).unwrap_or_else(|e| panic!("{e}"));
    parse(&format!("{S3_OK}alerts:\n")).unwrap_or_else(|e| panic!("{e}"));
    let typo = format!(
        "{S3_OK}alerts:\n  product_nam: Redis\n  config:\n    cloud_controler: {{password: PASSWORD1}}\n    \
         notifications: {{client_secrt: SECRET2}}\n    timeout: 5\n"
    );
    let got = problems(&typo);
    assert_eq!(
        got,
        [
            line("unknown key alerts.product_nam; did you mean product_name?"),
            line("unknown key alerts.config.cloud_controler; did you mean cloud_controller?"),
            line(
                "unknown key alerts.config.timeout; the keys here are cloud_controller, \
                 notifications, notification_target, timeout_seconds, skip_ssl_validation, \
                 retry_limit",
            ),
            line(
                "unknown key alerts.config.notifications.client_secrt; did you mean client_secret?"
            ),
        ]
    );
    assert!(!got.join("\n").contains("PASSWORD1"));
    assert_eq!(
        problems(&format!("{S3_OK}alerts: {{config: [PASSWORD1]}}\n")),
        [line(
            "alerts.config must be a mapping of settings, not a list"
        )]
    );
}

#[test]
fn merge_keys_are_applied_not_taken_for_unknown_keys() {
    let yaml = "
destinations:
- type: s3
  name: first
  config: &bucket {bucket_name: b, bucket_path: one, access_key_id: a, secret_access_key: s}
- type: s3
  name: second
  config:
    <<: *bucket
    bucket_path: two
source_folder: /s
cron_schedule: '@daily'
";
    let config = parse(yaml).unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<String> = config
        .destinations
        .iter()
        .map(|d| match &d.kind {
            super::super::DestinationKind::S3(s3) => {
                format!("{}/{}", s3.bucket_name, s3.bucket_path)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(paths, ["b/one", "b/two"]);
    // A merged mapping's own typo is still found.
    let typo = yaml.replace("bucket_path: two", "bucket_pth: two");
    assert_eq!(
        problems(&typo),
        [line(
            "s3 destination \"second\": unknown key destinations[1].config.bucket_pth; did you mean bucket_path?"
        )]
    );
}
