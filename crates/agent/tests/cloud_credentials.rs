//! No static cloud secrets on the VM, through the real binary: S3 credentials from the
//! environment, from web identity (STS) and from the instance profile (`IMDSv2`), all against
//! moto; server-side encryption (SSE-S3, SSE-KMS with a key of moto's KMS); GCS tokens from
//! a metadata server, and GCS behind TLS signed by a private CA.
//!
//! Every agent here runs with its own `HOME`, shared AWS files that do not exist and no
//! `AWS_*` variable of the caller, so that nothing of the developer's own cloud setup is
//! picked up. A relay in front of moto records the requests, so that each test checks
//! which credentials were really used, not only that moto (which checks no signature)
//! answered.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{Run, sample_tree, tree};
use service_backup_testkit::relay::Relay;
use service_backup_testkit::{env, port_of, unique};

/// Runs the binary in `dir` with a clean cloud environment plus `vars`.
fn agent(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(common::binary());
    command.args(args).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("AWS_") || name.starts_with("GCE_") || name.starts_with("GOOGLE_") {
            command.env_remove(&name);
        }
    }
    command
        .env("HOME", &home)
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        );
    for (name, value) in vars {
        command.env(name, value);
    }
    Run::from(command.output().unwrap())
}

/// A working folder with a source, a key, and a configuration of one s3 destination
/// reached through `endpoint`, whose other settings are `extra` (YAML lines of `config`).
fn s3_vm(endpoint: &str, bucket: &str, extra: &str) -> tempfile::TempDir {
    let vm = tempfile::tempdir().unwrap();
    sample_tree(&vm.path().join("source"));
    let yaml = format!(
        "destinations:\n\
         - type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    bucket_path: creds\n    \
         endpoint_url: {endpoint}\n    region: us-east-1\n{extra}\
         source_folder: {source}\n\
         cron_schedule: \"@daily\"\n\
         encryption:\n  key_file: backup.key\n",
        source = vm.path().join("source").display()
    );
    std::fs::write(vm.path().join("config.yml"), yaml).unwrap();
    agent(vm.path(), &["keygen", "--output", "backup.key"], &[]).expect(0);
    vm
}

const FROM_ENVIRONMENT: &str = "    credentials_source: env_or_instance_profile\n";

/// The access key ids that signed the S3 requests the relay saw (`Credential=AKID/…`).
fn signing_keys(relay: &Relay) -> Vec<String> {
    let mut keys: Vec<String> = relay
        .request_heads()
        .iter()
        .filter_map(|head| header(head, "authorization"))
        .filter(|auth| auth.contains("/s3/aws4_request"))
        .filter_map(|auth| {
            let after = auth.split("Credential=").nth(1)?;
            Some(after.split('/').next()?.to_string())
        })
        .collect();
    keys.dedup();
    keys
}

/// The value of header `name` in a request head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Backs up and restores on the VM with `vars`; both succeed.
fn backup_and_restore(vm: &Path, vars: &[(&str, &str)]) {
    agent(vm, &["backup", "config.yml"], vars).expect(0);
    agent(vm, &["restore", "config.yml", "--target", "restored"], vars).expect(0);
    assert_eq!(tree(&vm.join("source")), tree(&vm.join("restored")));
}

#[test]
fn s3_credentials_from_environment_variables() {
    let relay = Relay::start(port_of(&env("SB_TEST_S3_ENDPOINT")));
    let vm = s3_vm(&relay.url(""), &unique("creds-env"), FROM_ENVIRONMENT);
    let secret = "env/Secret+Access+Key+of+the+environment";
    common::secret(secret);
    let vars = [
        ("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT1"),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    backup_and_restore(vm.path(), &vars);
    assert_eq!(signing_keys(&relay), ["AKIAFROMENVIRONMENT1"]);
}

#[test]
fn s3_credentials_from_web_identity_through_sts() {
    let relay = Relay::start(port_of(&env("SB_TEST_S3_ENDPOINT")));
    let vm = s3_vm(&relay.url(""), &unique("creds-wif"), FROM_ENVIRONMENT);
    let token = vm.path().join("web-identity-token");
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiYWNrdXAifQ.c2lnbmF0dXJl",
    )
    .unwrap();
    let sts = relay.url("");
    let vars = [
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/service-backup",
        ),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ROLE_SESSION_NAME", "service-backup-test"),
        ("AWS_ENDPOINT_URL_STS", sts.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    agent(vm.path(), &["backup", "config.yml"], &vars).expect(0);
    let heads = relay.request_heads();
    // AssumeRoleWithWebIdentity is not signed: the token is the credential.
    assert!(
        heads.iter().any(|h| h.starts_with("POST / ")
            && header(h, "authorization").is_none()
            && header(h, "content-type")
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))),
        "no AssumeRoleWithWebIdentity went to the STS endpoint: {heads:#?}"
    );
    // moto's STS hands out temporary keys (ASIA…) with a session token.
    let keys = signing_keys(&relay);
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("ASIA")),
        "{keys:?}"
    );
    assert!(
        heads
            .iter()
            .filter(|h| header(h, "authorization").is_some())
            .all(|h| header(h, "x-amz-security-token").is_some()),
        "a signed request without the session token"
    );
}

/// A web identity token file that is not a regular file or is larger than 64 KiB is
/// refused with its variable and path, before anything reads it (the SDK would read it
/// whole: `/dev/zero` grew the agent until it was killed).
#[test]
fn s3_web_identity_token_file_too_large_or_not_a_file_is_refused() {
    let relay = Relay::start(port_of(&env("SB_TEST_S3_ENDPOINT")));
    let bucket = unique("creds-wif-big");
    let vm = s3_vm(&relay.url(""), &bucket, FROM_ENVIRONMENT);
    let big = vm.path().join("big-token");
    std::fs::write(&big, vec![b'a'; 1024 * 1024]).unwrap();
    let linked = vm.path().join("linked-token");
    std::os::unix::fs::symlink("/dev/zero", &linked).unwrap();
    for (file, why) in [
        ("/dev/zero", "not a regular file"),
        (linked.to_str().unwrap(), "not a regular file"),
        (big.to_str().unwrap(), "1048576 bytes, more than the 65536"),
    ] {
        let vars = [
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/service-backup",
            ),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", file),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        let run = agent(vm.path(), &["backup", "config.yml"], &vars);
        run.expect(1);
        assert!(
            run.stderr
                .contains(&format!("AWS_WEB_IDENTITY_TOKEN_FILE {file}: {why}")),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("aaaa"), "{}", run.stderr);
        assert!(signing_keys(&relay).is_empty(), "a request was signed");
        assert!(objects_in(&bucket).is_empty(), "something partial was left");
    }
}

/// A stand-in for the EC2 instance metadata service (`IMDSv2`), serving the documented
/// requests of the instance profile: `PUT /latest/api/token` (with
/// `X-aws-ec2-metadata-token-ttl-seconds`, answered with the token and that header), then
/// `GET /latest/meta-data/iam/security-credentials/` and `.../<role>` with the token in
/// `X-aws-ec2-metadata-token` (401 without it, as `IMDSv2` enforces). moto 5.2 has a
/// responder of its own, but its token answer lacks the TTL header that the SDK requires
/// ("token response did not contain a TTL header"), so the agent cannot use it.
fn imds_stand_in() -> StandIn {
    imds_serving(
        "service-backup-role",
        "ASIAINSTANCEPROFILE1",
        "instance/profile/secret",
        "instance-profile-session-token",
    )
}

/// The `IMDSv2` stand-in answering role name `role` and those credentials (JSON-escaped
/// here, so that a hostile one can carry control characters).
fn imds_serving(
    role: &'static str,
    key: &'static str,
    secret: &'static str,
    session: &'static str,
) -> StandIn {
    let json = |s: &str| serde_json::to_string(s).unwrap();
    let (key, secret, session) = (json(key), json(secret), json(session));
    StandIn::start(move |head| {
        let token = "imdsv2-session-token-of-the-stand-in";
        if head.starts_with("PUT /latest/api/token ") {
            return match header(head, "x-aws-ec2-metadata-token-ttl-seconds") {
                Some(ttl) => (
                    "200 OK",
                    format!("X-aws-ec2-metadata-token-ttl-seconds: {ttl}\r\n"),
                    token.to_string(),
                ),
                None => ("400 Bad Request", String::new(), String::new()),
            };
        }
        if header(head, "x-aws-ec2-metadata-token").as_deref() != Some(token) {
            return ("401 Unauthorized", String::new(), String::new());
        }
        if head.starts_with("GET /latest/meta-data/iam/security-credentials/ ") {
            return ("200 OK", String::new(), role.into());
        }
        if head.starts_with("GET /latest/meta-data/iam/security-credentials/") && !role.is_empty() {
            let expiration =
                (chrono::Utc::now() + chrono::Duration::hours(6)).format("%Y-%m-%dT%H:%M:%SZ");
            return (
                "200 OK",
                String::new(),
                format!(
                    "{{\"Code\":\"Success\",\"LastUpdated\":\"2026-01-01T00:00:00Z\",\"Type\":\"AWS-HMAC\",\
                     \"AccessKeyId\":{key},\"SecretAccessKey\":{secret},\
                     \"Token\":{session},\"Expiration\":\"{expiration}\"}}"
                ),
            );
        }
        ("404 Not Found", String::new(), String::new())
    })
}

#[test]
fn s3_credentials_from_the_instance_profile_through_imdsv2() {
    let relay = Relay::start(port_of(&env("SB_TEST_S3_ENDPOINT")));
    let vm = s3_vm(&relay.url(""), &unique("creds-imds"), FROM_ENVIRONMENT);
    common::secret("instance/profile/secret");
    let imds = imds_stand_in();
    let endpoint = format!("http://127.0.0.1:{}", imds.port);
    let vars = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.as_str())];
    backup_and_restore(vm.path(), &vars);
    let heads = imds.heads.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("PUT /latest/api/token ")),
        "no IMDSv2 session token was asked for: {heads:#?}"
    );
    let reads: Vec<&String> = heads.iter().filter(|h| h.starts_with("GET ")).collect();
    assert!(reads.len() >= 2, "{heads:#?}");
    // IMDSv2: every metadata read carries the session token (v1 would send none).
    for head in reads {
        assert_eq!(
            header(head, "x-aws-ec2-metadata-token").as_deref(),
            Some("imdsv2-session-token-of-the-stand-in"),
            "{head}"
        );
    }
    // The instance profile's keys signed the S3 requests, with its session token.
    assert_eq!(signing_keys(&relay), ["ASIAINSTANCEPROFILE1"]);
    assert!(
        relay
            .request_heads()
            .iter()
            .any(|h| header(h, "x-amz-security-token").as_deref()
                == Some("instance-profile-session-token"))
    );
}

/// The keys of the objects in `bucket` (none when it does not exist).
fn objects_in(bucket: &str) -> Vec<String> {
    let (s3, _) = moto_clients();
    runtime().block_on(async {
        s3.list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .map(|listed| {
                listed
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Credentials of a hostile instance metadata service that no request header can carry
/// (control characters) or that are absurdly long fail the backup cleanly, without
/// printing them; a role name the SDK panics on (a newline) does too. Before, the SDK's
/// signer panicked and the agent exited 101.
#[test]
fn s3_hostile_instance_metadata_credentials_fail_the_backup_cleanly() {
    let long_token: &'static str = "T".repeat(5000).leak();
    let cases: [(&str, &str, &str, &str); 5] = [
        ("role", "AKIA\u{1b}[31mEVIL\nINJECT", "secret", "token"),
        ("role", "ASIAHOSTILE1", "EVIL\nINJECT", "token"),
        ("role", "ASIAHOSTILE1", "secret", "EVIL\nINJECT"),
        ("role", "ASIAHOSTILE1", "secret", long_token),
        ("EVIL\nINJECT", "ASIAHOSTILE1", "secret", "token"),
    ];
    for (role, key, secret, session) in cases {
        let relay = Relay::start(port_of(&env("SB_TEST_S3_ENDPOINT")));
        let bucket = unique("creds-hostile");
        let vm = s3_vm(&relay.url(""), &bucket, FROM_ENVIRONMENT);
        let imds = imds_serving(role, key, secret, session);
        let endpoint = format!("http://127.0.0.1:{}", imds.port);
        let run = agent(
            vm.path(),
            &["backup", "config.yml"],
            &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.as_str())],
        );
        run.expect(1);
        assert!(
            run.stderr
                .contains("the instance metadata service answered credentials that are not valid"),
            "{role:?} {key:?}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("EVIL") && !run.stderr.contains("TTTT"),
            "{}",
            run.stderr
        );
        assert!(signing_keys(&relay).is_empty(), "a request was signed");
        assert!(objects_in(&bucket).is_empty(), "something partial was left");
    }
}

#[test]
fn s3_from_the_environment_without_any_credentials_fails_clearly() {
    let relay = Relay::start(port_of(&env("SB_TEST_S3_ENDPOINT")));
    let vm = s3_vm(&relay.url(""), &unique("creds-none"), FROM_ENVIRONMENT);
    let run = agent(
        vm.path(),
        &["backup", "config.yml"],
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    run.expect(1);
    assert!(
        run.stderr.contains("no credentials")
            && run.stderr.contains("AWS_ACCESS_KEY_ID")
            && run.stderr.contains("instance profile"),
        "{}",
        run.stderr
    );
    assert!(
        signing_keys(&relay).is_empty(),
        "a request went out unsigned"
    );
}

/// Clients of moto's S3 and KMS with its test keys, for what the agent wrote.
fn moto_clients() -> (aws_sdk_s3::Client, aws_sdk_kms::Client) {
    let endpoint = env("SB_TEST_S3_ENDPOINT");
    let credentials =
        aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let s3 = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .http_client(http.clone())
        .credentials_provider(credentials.clone())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .build();
    let kms = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .http_client(http)
        .credentials_provider(credentials)
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .build();
    (
        aws_sdk_s3::Client::from_conf(s3),
        aws_sdk_kms::Client::from_conf(kms),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The server-side encryption and KMS key id of every object in `bucket`, by key.
fn encryption_of_objects(bucket: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let (s3, _) = moto_clients();
    runtime().block_on(async {
        let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        let mut out = Vec::new();
        for object in listed.contents() {
            let key = object.key().unwrap().to_string();
            let head = s3
                .head_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap();
            out.push((
                key,
                head.server_side_encryption()
                    .map(|e| e.as_str().to_string()),
                head.ssekms_key_id().map(str::to_string),
            ));
        }
        out
    })
}

/// Archive and manifest, each with `sse` and `key`; nothing else in the bucket.
fn assert_archive_and_manifest_encrypted(bucket: &str, sse: &str, key: Option<&str>) {
    let objects = encryption_of_objects(bucket);
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(
        objects.iter().any(|(k, _, _)| k.ends_with(".tar.gz.enc")),
        "{objects:?}"
    );
    assert!(
        objects.iter().any(|(k, _, _)| k.ends_with(".json")),
        "{objects:?}"
    );
    for (name, found, found_key) in &objects {
        assert_eq!(found.as_deref(), Some(sse), "{name}");
        if let Some(key) = key {
            assert!(
                found_key.as_deref().is_some_and(|k| k.ends_with(key)),
                "{name}: {found_key:?}"
            );
        }
    }
}

const STATIC_KEYS: &str =
    "    access_key_id: AKIASSETEST000000001\n    secret_access_key: sse-test-secret\n";

#[test]
fn sse_s3_is_asked_for_on_archive_and_manifest() {
    let bucket = unique("sse-s3");
    let vm = s3_vm(
        &env("SB_TEST_S3_ENDPOINT"),
        &bucket,
        &format!("{STATIC_KEYS}    server_side_encryption: AES256\n"),
    );
    agent(vm.path(), &["backup", "config.yml"], &[]).expect(0);
    assert_archive_and_manifest_encrypted(&bucket, "AES256", None);
}

#[test]
fn sse_kms_with_a_key_of_the_store_is_asked_for_on_archive_and_manifest() {
    let (_, kms) = moto_clients();
    let key = runtime().block_on(async {
        kms.create_key()
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id
    });
    let bucket = unique("sse-kms");
    let vm = s3_vm(
        &env("SB_TEST_S3_ENDPOINT"),
        &bucket,
        &format!("{STATIC_KEYS}    server_side_encryption: aws:kms\n    kms_key_id: {key}\n"),
    );
    agent(vm.path(), &["check", "config.yml"], &[]).expect(0);
    agent(vm.path(), &["backup", "config.yml"], &[]).expect(0);
    assert_archive_and_manifest_encrypted(&bucket, "aws:kms", Some(&key));
    agent(
        vm.path(),
        &["restore", "config.yml", "--target", "restored"],
        &[],
    )
    .expect(0);
    assert_eq!(
        tree(&vm.path().join("source")),
        tree(&vm.path().join("restored"))
    );
}

/// An HTTP server in the test that answers each request with what `answer` makes of its
/// head (status, extra header lines, body), and records the heads.
struct StandIn {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

type Answer = (&'static str, String, String);

impl StandIn {
    fn start(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (h, answer) = (heads.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (h, answer) = (h.clone(), answer.clone());
                std::thread::spawn(move || serve(stream, &h, &*answer));
            }
        });
        Self { port, heads }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn serve(stream: std::net::TcpStream, heads: &Mutex<Vec<String>>, answer: &dyn Fn(&str) -> Answer) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        // The requests served here carry no body.
        heads.lock().unwrap().push(head.clone());
        let (status, extra, body) = answer(&head);
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A stand-in for Google's metadata server: no real one runs here. It serves the one
/// documented request the agent makes (`GET /computeMetadata/v1/instance/service-accounts/
/// default/token` with `Metadata-Flavor: Google`, answered with `access_token`,
/// `expires_in` and `token_type`), refuses it without the header (403, as the real one
/// does), and counts the tokens it handed out. Without an account it answers 404, as the
/// real one does on a VM that has no service account attached.
struct MetadataStandIn {
    server: StandIn,
    served: Arc<AtomicUsize>,
}

impl MetadataStandIn {
    fn start(with_account: bool) -> Self {
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        let server = StandIn::start(move |head| {
            let good = head
                .starts_with("GET /computeMetadata/v1/instance/service-accounts/default/token ")
                && header(head, "metadata-flavor").as_deref() == Some("Google");
            if !good {
                return (
                    "403 Forbidden",
                    String::new(),
                    "missing Metadata-Flavor:Google header".into(),
                );
            }
            if !with_account {
                return ("404 Not Found", String::new(), "not found".into());
            }
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            (
                "200 OK",
                "Metadata-Flavor: Google\r\n".into(),
                format!(
                    "{{\"access_token\":\"stand-in-access-token-{n}\",\"expires_in\":3599,\"token_type\":\"Bearer\"}}"
                ),
            )
        });
        Self { server, served }
    }

    fn host(&self) -> String {
        self.server.host()
    }

    /// Requests it refused (wrong path or no `Metadata-Flavor: Google`).
    fn refused(&self) -> usize {
        self.server.heads.lock().unwrap().len() - self.served.load(Ordering::SeqCst)
    }
}

/// A working folder with a source, a key and one gcs destination at `endpoint` whose
/// tokens come from the metadata server, with `extra` settings.
fn gcs_vm(endpoint: &str, extra: &str) -> tempfile::TempDir {
    let vm = tempfile::tempdir().unwrap();
    sample_tree(&vm.path().join("source"));
    let yaml = format!(
        "destinations:\n\
         - type: gcs\n  name: google\n  config:\n    credentials_source: metadata\n    \
         project_id: {project}\n    bucket_name: {bucket}\n    bucket_path: creds\n    \
         endpoint: {endpoint}\n{extra}\
         source_folder: {source}\n\
         cron_schedule: \"@daily\"\n\
         encryption:\n  key_file: backup.key\n",
        project = env("SB_TEST_GCS_PROJECT"),
        bucket = unique("creds-gcs"),
        source = vm.path().join("source").display()
    );
    std::fs::write(vm.path().join("config.yml"), yaml).unwrap();
    agent(vm.path(), &["keygen", "--output", "backup.key"], &[]).expect(0);
    vm
}

#[test]
fn gcs_tokens_from_the_metadata_server() {
    // fake-gcs-server accepts any token: the relay shows which one was sent.
    let relay = Relay::start(port_of(&env("SB_TEST_GCS_ENDPOINT")));
    let metadata = MetadataStandIn::start(true);
    let vm = gcs_vm(&relay.url(""), "");
    let host = metadata.host();
    let vars = [("GCE_METADATA_HOST", host.as_str())];
    agent(vm.path(), &["backup", "config.yml"], &vars).expect(0);
    // One token for the whole backup: it is cached until shortly before it expires.
    assert_eq!(metadata.served.load(Ordering::SeqCst), 1);
    agent(
        vm.path(),
        &["restore", "config.yml", "--target", "restored"],
        &vars,
    )
    .expect(0);
    assert_eq!(
        tree(&vm.path().join("source")),
        tree(&vm.path().join("restored"))
    );
    assert_eq!(metadata.served.load(Ordering::SeqCst), 2);
    assert_eq!(metadata.refused(), 0);
    let heads = relay.request_heads();
    assert!(!heads.is_empty());
    for head in &heads {
        let auth = header(head, "authorization").unwrap_or_default();
        assert!(auth.starts_with("Bearer stand-in-access-token-"), "{head}");
    }
}

#[test]
fn gcs_on_a_vm_without_a_service_account_fails_clearly() {
    let metadata = MetadataStandIn::start(false);
    let vm = gcs_vm(&env("SB_TEST_GCS_ENDPOINT"), "");
    let host = metadata.host();
    let run = agent(
        vm.path(),
        &["check", "config.yml"],
        &[("GCE_METADATA_HOST", host.as_str())],
    );
    run.expect(1);
    assert!(
        run.all().contains(&format!(
            "cannot get an access token from the metadata server http://{host}/computeMetadata/v1/instance/service-accounts/default/token: the server answered 404 Not Found"
        )) && run.all().contains("attach a service account to the VM"),
        "{}",
        run.all()
    );
}

#[test]
fn gcs_behind_a_private_ca_needs_ca_cert() {
    let certs = tempfile::tempdir().unwrap();
    let ca = common::private_ca(certs.path(), "service-backup test GCS CA");
    let server = service_backup_testkit::server::ServerProcess::new(
        "fake-gcs-server (TLS)",
        env("SB_TEST_GCS_BIN"),
    );
    let port = server.port.to_string();
    let endpoint = format!("https://127.0.0.1:{port}");
    let _server = server
        .args(["-scheme", "https", "-host", "127.0.0.1", "-port", &port])
        .args(["-external-url", &endpoint, "-backend", "memory"])
        .args(["-cert-location"])
        .args([certs.path().join("cert.pem")])
        .args(["-private-key-location"])
        .args([certs.path().join("key.pem")])
        .log(certs.path().join("fake-gcs-server.log"))
        .started();
    let metadata = MetadataStandIn::start(true);
    let host = metadata.host();
    let vars = [("GCE_METADATA_HOST", host.as_str())];

    // The system's roots do not hold the private CA: refused, and said so.
    let untrusted = gcs_vm(&endpoint, "");
    let run = agent(
        untrusted.path(),
        &["check", "config.yml", "--timeout", "20"],
        &vars,
    );
    run.expect(1);
    assert!(
        run.all()
            .contains(&format!("the TLS certificate of {endpoint} is not trusted"))
            && run.all().contains("set ca_cert"),
        "{}",
        run.all()
    );

    // A CA installed in the VM's trust store is trusted without ca_cert: the system's roots
    // are read where OpenSSL reads them, SSL_CERT_FILE here.
    let system = certs.path().join("system-roots.pem");
    std::fs::write(&system, &ca).unwrap();
    let installed = [
        ("GCE_METADATA_HOST", host.as_str()),
        ("SSL_CERT_FILE", system.to_str().unwrap()),
    ];
    agent(
        untrusted.path(),
        &["check", "config.yml", "--timeout", "20"],
        &installed,
    )
    .expect(0);

    let indented: String = ca.lines().map(|l| format!("      {l}\n")).collect();
    let trusted = gcs_vm(&endpoint, &format!("    ca_cert: |\n{indented}"));
    agent(
        trusted.path(),
        &["check", "config.yml", "--timeout", "20"],
        &vars,
    )
    .expect(0);
    agent(trusted.path(), &["backup", "config.yml"], &vars).expect(0);
    agent(
        trusted.path(),
        &["restore", "config.yml", "--target", "restored"],
        &vars,
    )
    .expect(0);
    assert_eq!(
        tree(&trusted.path().join("source")),
        tree(&trusted.path().join("restored"))
    );
}

#[test]
fn s3_behind_a_private_ca_installed_in_the_vms_trust_store_needs_no_ca_cert() {
    // moto over TLS with a certificate of a private CA (tests/servers/s3.sh).
    let endpoint = env("SB_TEST_S3_TLS_ENDPOINT");
    let ca = env("SB_TEST_S3_CA_CERT");
    let bucket = unique("roots");
    let vm = s3_vm(&endpoint, &bucket, FROM_ENVIRONMENT);
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIDROOTS"),
        ("AWS_SECRET_ACCESS_KEY", "roots-secret"),
    ];
    let check = ["check", "config.yml", "--timeout", "20"];
    // The web's roots alone do not hold it: refused, and said so.
    let run = agent(vm.path(), &check, &keys);
    run.expect(1);
    assert!(run.all().contains("set ca_cert"), "{}", run.all());
    // Installed where the system's roots are read (SSL_CERT_FILE), it is trusted.
    let vars = [keys[0], keys[1], ("SSL_CERT_FILE", ca.as_str())];
    agent(vm.path(), &["backup", "config.yml"], &vars).expect(0);
    agent(vm.path(), &check, &vars).expect(0);
}

#[test]
fn azure_behind_a_private_ca_installed_in_the_vms_trust_store_needs_no_ca_cert() {
    // Azurite over TLS with a certificate of a private CA.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = common::private_ca(&certs, "service-backup test Azure CA");
    let server = service_backup_testkit::azurite(&dir.path().join("azurite"))
        .args(["--cert"])
        .args([certs.join("cert.pem")])
        .args(["--key"])
        .args([certs.join("key.pem")])
        .started();
    let endpoint =
        service_backup_testkit::azurite_endpoint(&server).replacen("http://", "https://", 1);
    let vm = tempfile::tempdir().unwrap();
    sample_tree(&vm.path().join("source"));
    let yaml = format!(
        "destinations:\n\
         - type: azure\n  name: blobs\n  config:\n    storage_account: {account}\n    \
         storage_access_key: {key}\n    container: {container}\n    path: roots\n    \
         endpoint: {endpoint}\n\
         source_folder: {source}\n\
         cron_schedule: \"@daily\"\n",
        account = env("SB_TEST_AZURE_ACCOUNT"),
        key = env("SB_TEST_AZURE_KEY"),
        container = unique("roots"),
        source = vm.path().join("source").display()
    );
    std::fs::write(vm.path().join("config.yml"), yaml).unwrap();
    let check = ["check", "config.yml", "--timeout", "20"];
    // The web's roots alone do not hold it: refused, and said so.
    let run = agent(vm.path(), &check, &[]);
    run.expect(1);
    assert!(run.all().contains("ca_cert"), "{}", run.all());
    // Installed where the system's roots are read (SSL_CERT_FILE), it is trusted.
    let installed = certs.join("system-roots.pem");
    std::fs::write(&installed, &ca).unwrap();
    let vars = [("SSL_CERT_FILE", installed.to_str().unwrap())];
    agent(vm.path(), &["backup", "config.yml"], &vars).expect(0);
    agent(vm.path(), &check, &vars).expect(0);
}
