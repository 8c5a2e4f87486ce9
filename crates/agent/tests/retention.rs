//! Retention on every destination type against the real servers (local, moto S3, Azurite,
//! sshd, fake-gcs-server), through the real binary. Backups with chosen times are written through the
//! Destination API (an archive and its manifest, named for the time), so that the policy
//! can be checked across days, weeks and months; real backups made by the binary check the
//! `deleted` task state and `restore --from-instance`.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeZone as _, Utc};
use common::{run, sample_tree, server_env, tree, unique};
use service_backup_core::compression::Algorithm;
use service_backup_core::destination::{Destination, LocalDestination};
use service_backup_core::layout::Layout;
use service_backup_core::manifest::{Manifest, planted};
use service_backup_core::secret::Secret;

/// A destination: its YAML list item (without `retention`), the store as the tests reach
/// it, where the configuration puts backups in it, and the secrets of its settings.
struct Site {
    item: String,
    dest: Arc<dyn Destination>,
    layout: Layout,
    secrets: Vec<String>,
}

const POLICY: &str = "{keep_last: 2, keep_daily: 3, keep_weekly: 2, keep_monthly: 3}";

/// Alpha's backups, and whether the policy keeps each: the table of what each rule keeps.
/// `keep_last`: 15 Mar 03h, 14 Mar 15h; `keep_daily`: those and 13 Mar; `keep_weekly` (ISO,
/// weeks end on Sunday): 15 Mar, 8 Mar; `keep_monthly`: 15 Mar, 28 Feb, 31 Jan.
fn table() -> Vec<(DateTime<Utc>, bool)> {
    let t = |m, d, h| Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap();
    vec![
        (t(1, 5, 3), false),
        (t(1, 20, 3), false),
        (t(1, 31, 3), true),
        (t(2, 10, 3), false),
        (t(2, 28, 3), true),
        (t(3, 2, 3), false),
        (t(3, 8, 3), true),
        (t(3, 9, 3), false),
        (t(3, 13, 3), true),
        (t(3, 14, 3), false),
        (t(3, 14, 15), true),
        (t(3, 15, 3), true),
    ]
}

fn name_for(time: DateTime<Utc>, instance: &str) -> String {
    format!("{}-{instance}-0000abcd", time.format("%Y%m%dT%H%M%SZ"))
}

/// Writes a backup of `instance` started at `time`: an archive of a few bytes and its
/// manifest. Returns (manifest key, archive key).
fn seed(
    rt: &tokio::runtime::Runtime,
    site: &Site,
    time: DateTime<Utc>,
    instance: &str,
) -> (String, String) {
    let name = name_for(time, instance);
    // The gzip magic: a prune reads the first bytes of an archive to judge it.
    let mut body = b"\x1f\x8b".to_vec();
    body.extend_from_slice(format!("not a real archive: {name}").as_bytes());
    let mut manifest = planted::manifest(instance, time);
    manifest.stored_bytes = body.len() as u64;
    let day = time.date_naive();
    let archive_key = site.layout.archive_key(day, &name, Algorithm::Gzip, false);
    let manifest_key = site.layout.manifest_key(day, &name);
    rt.block_on(async {
        site.dest
            .put(&archive_key, Bytes::from(body))
            .await
            .unwrap();
        site.dest
            .put(&manifest_key, Bytes::from(manifest.to_json()))
            .await
            .unwrap();
    });
    (manifest_key, archive_key)
}

fn keys(rt: &tokio::runtime::Runtime, site: &Site) -> Vec<String> {
    let mut k: Vec<String> = rt
        .block_on(site.dest.list(&site.layout.prefix()))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    k.sort();
    k
}

/// The backup names present, per instance, oldest first.
fn names_of(keys: &[String], instance: &str) -> Vec<String> {
    let mut out: Vec<String> = keys
        .iter()
        .filter_map(|k| k.rsplit('/').next()?.strip_suffix(".json"))
        .filter(|n| n.contains(&format!("-{instance}-")))
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

fn write_config(dir: &Path, file: &str, site: &Site, instance: &str, retention: &str) {
    let yaml = format!(
        "destinations:\n{item}\nsource_folder: {d}/source\ncron_schedule: \"0 3 * * *\"\n\
         instance_id: {instance}\nstate_dir: {d}/state-{instance}\nretention: {retention}\n",
        item = site.item,
        d = dir.display(),
    );
    std::fs::write(dir.join(file), yaml).unwrap();
}

fn assert_no_secret(site: &Site, output: &str) {
    for s in &site.secrets {
        assert!(
            !output.contains(s.as_str()),
            "a secret was printed:\n{output}"
        );
    }
}

fn json_names(stdout: &str) -> Vec<String> {
    let items: Vec<serde_json::Value> = serde_json::from_str(stdout).unwrap();
    let mut names: Vec<String> = items
        .iter()
        .filter(|i| i["state"] == "complete")
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The whole drill on one destination.
fn drill(site: &Site) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vm = tempfile::tempdir().unwrap();
    let dir = vm.path();
    sample_tree(&dir.join("source"));
    write_config(dir, "alpha.yml", site, "alpha", POLICY);
    write_config(dir, "beta.yml", site, "beta", "{keep_last: 1}");

    let mut seeded = Vec::new();
    for (time, _) in table() {
        seeded.push(seed(&rt, site, time, "alpha"));
    }
    for d in 1..=3 {
        seed(
            &rt,
            site,
            Utc.with_ymd_and_hms(2026, 1, d, 3, 0, 0).unwrap(),
            "beta",
        );
    }
    // A prune cut short after deleting the manifest of the oldest (a backup the policy
    // drops): its archive stays, invisible.
    rt.block_on(site.dest.delete(&seeded[0].0)).unwrap();
    let before = keys(&rt, site);
    assert_eq!(before.len(), 12 * 2 + 3 * 2 - 1, "{before:?}");

    // Dry run: says what it would do, changes nothing.
    let dry = run(dir, &["prune", "alpha.yml", "--dry-run"]);
    dry.expect(0);
    assert_no_secret(site, &dry.all());
    assert_eq!(keys(&rt, site), before, "a dry run changed the destination");
    for (time, keep) in table().into_iter().skip(1) {
        let name = name_for(time, "alpha");
        let line = dry
            .stdout
            .lines()
            .find(|l| l.contains(&name))
            .unwrap_or_else(|| panic!("{name} not shown:\n{}", dry.stdout));
        let word = if keep { "keep" } else { "would delete" };
        assert!(line.trim_start().starts_with(word), "{line}");
    }
    assert!(
        dry.stdout.contains(&format!(
            "keep          {}  (newest, keep_last, keep_daily, keep_weekly, keep_monthly)",
            name_for(table()[11].0, "alpha")
        )),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("(archive without manifest)"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("dry run: nothing was deleted"),
        "{}",
        dry.stdout
    );
    assert!(
        !dry.stdout.contains("-beta-"),
        "beta's backups are not alpha's:\n{}",
        dry.stdout
    );

    // The prune: alpha's table, and the archive the cut prune left, and nothing of beta's.
    let pruned = run(dir, &["prune", "alpha.yml"]);
    pruned.expect(0);
    assert_no_secret(site, &pruned.all());
    let after = keys(&rt, site);
    let want: Vec<String> = table()
        .into_iter()
        .filter(|(_, keep)| *keep)
        .map(|(t, _)| name_for(t, "alpha"))
        .collect();
    assert_eq!(names_of(&after, "alpha"), want);
    assert_eq!(
        names_of(&after, "beta").len(),
        3,
        "alpha deleted beta's backups"
    );
    assert!(
        !after.contains(&seeded[0].1),
        "the half-deleted backup's archive is still there"
    );
    assert_eq!(after.len(), 6 * 2 + 3 * 2, "{after:?}");
    // Nothing left to do: a second prune deletes nothing.
    run(dir, &["prune", "alpha.yml"]).expect(0);
    assert_eq!(keys(&rt, site), after);

    // The catalog: this instance's, or every instance's.
    let mine = run(dir, &["list", "alpha.yml", "--json"]);
    mine.expect(0);
    assert_eq!(json_names(&mine.stdout), want);
    let all = run(dir, &["list", "alpha.yml", "--json", "--all-instances"]);
    all.expect(0);
    assert_eq!(json_names(&all.stdout).len(), 9);

    // Beta prunes its own (keep_last 1) and leaves alpha's alone; with --all-instances it
    // applies its policy to alpha's too, each instance apart.
    run(dir, &["prune", "beta.yml"]).expect(0);
    let after_beta = keys(&rt, site);
    assert_eq!(names_of(&after_beta, "beta").len(), 1);
    assert_eq!(names_of(&after_beta, "alpha"), want);
    let everyone = run(dir, &["prune", "beta.yml", "--all-instances"]);
    everyone.expect(0);
    let left = keys(&rt, site);
    assert_eq!(names_of(&left, "alpha"), [name_for(table()[11].0, "alpha")]);
    assert_eq!(names_of(&left, "beta").len(), 1);

    // Real backups by beta: each prunes after it (keep_last 1), so the first becomes a
    // `deleted` task; another instance restores beta's latest.
    let first = run(dir, &["backup", "beta.yml"]);
    first.expect(0);
    assert!(
        first.stdout.contains("Prune completed successfully"),
        "{}",
        first.stdout
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(dir, &["backup", "beta.yml"]).expect(0);
    let beta_now = names_of(&keys(&rt, site), "beta");
    assert_eq!(beta_now.len(), 1, "{beta_now:?}");
    let listed = run(dir, &["list", "beta.yml", "--all", "--json"]);
    listed.expect(0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    let deleted: Vec<&serde_json::Value> =
        items.iter().filter(|i| i["state"] == "deleted").collect();
    assert_eq!(deleted.len(), 1, "{}", listed.stdout);
    assert!(
        deleted[0]["reason"]
            .as_str()
            .unwrap()
            .contains("keep_last: 1"),
        "{}",
        listed.stdout
    );
    assert!(deleted[0]["deleted_at"].is_string());
    let table_view = run(dir, &["list", "beta.yml", "--all"]);
    assert!(
        table_view.stdout.contains("deleted backups"),
        "{}",
        table_view.stdout
    );

    // A fresh VM with alpha's configuration restores beta's latest.
    let fresh = tempfile::tempdir().unwrap();
    write_config(fresh.path(), "alpha.yml", site, "alpha", POLICY);
    let target = fresh.path().join("restored");
    let restored = run(
        fresh.path(),
        &[
            "restore",
            "alpha.yml",
            "--from-instance",
            "beta",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    restored.expect(0);
    assert!(
        restored.stderr.contains(&beta_now[0]),
        "{}",
        restored.stderr
    );
    assert_eq!(tree(&target), tree(&dir.join("source")));
    let nobody = run(
        fresh.path(),
        &[
            "restore",
            "alpha.yml",
            "--from-instance",
            "gamma",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    nobody.expect(1);
    assert!(
        nobody
            .stderr
            .contains("instance gamma: there is no complete backup"),
        "{}",
        nobody.stderr
    );
    assert!(
        nobody.stderr.contains("--all-instances"),
        "{}",
        nobody.stderr
    );
}

/// The local destination in `root`.
fn local_site(root: &std::path::Path) -> Site {
    Site {
        item: format!(
            "- type: local\n  name: disk\n  config:\n    path: {}",
            root.display()
        ),
        dest: Arc::new(LocalDestination::new(root)),
        layout: Layout::new("", None),
        secrets: vec![],
    }
}

/// A new bucket on the S3 test server, named after `name`, under the prefix `redis/prod`.
fn s3_site(name: &str) -> Site {
    let endpoint = server_env("SB_TEST_S3_ENDPOINT");
    let bucket = unique(name).to_lowercase();
    let secret = format!("{name}/SECRET+key/never-printed");
    let mut settings = service_backup_s3::S3Settings::new(
        &bucket,
        "AKIARETENTION0000001",
        Secret::new(secret.as_str()),
    );
    settings.endpoint_url = Some(endpoint.clone());
    settings.region = Some("us-east-1".into());
    Site {
        item: format!(
            "- type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    bucket_path: redis/prod\n    \
             access_key_id: AKIARETENTION0000001\n    secret_access_key: {secret}\n    endpoint_url: {endpoint}\n    region: us-east-1"
        ),
        dest: Arc::new(service_backup_s3::S3Destination::new(&settings).unwrap()),
        layout: Layout::new("redis/prod", None),
        secrets: vec![secret],
    }
}

#[test]
fn retention_on_a_local_destination() {
    let root = tempfile::tempdir().unwrap();
    drill(&local_site(root.path()));
}

#[test]
fn retention_on_s3() {
    drill(&s3_site("retention"));
}

#[test]
fn retention_on_azure() {
    let endpoint = server_env("SB_TEST_AZURE_ENDPOINT");
    let account = server_env("SB_TEST_AZURE_ACCOUNT");
    let key = server_env("SB_TEST_AZURE_KEY");
    let container = unique("retention").to_lowercase();
    let settings = service_backup_azure::AzureSettings::with_access_key(
        &account,
        Secret::new(key.clone()),
        &container,
        &endpoint,
        service_backup_core::destination::RetryPolicy::default(),
    );
    let item = format!(
        "- type: azure\n  name: blobs\n  config:\n    storage_account: {account}\n    \
         storage_access_key: {key}\n    container: {container}\n    path: redis/prod\n    endpoint: {endpoint}"
    );
    drill(&Site {
        item,
        dest: Arc::new(service_backup_azure::AzureDestination::new(settings).unwrap()),
        layout: Layout::new("redis/prod", None),
        secrets: vec![key],
    });
}

#[test]
fn retention_on_scp() {
    let port = server_env("SB_TEST_SCP_PORT");
    let user = server_env("SB_TEST_SCP_USER");
    let key = std::fs::read_to_string(server_env("SB_TEST_SCP_KEY")).unwrap();
    let remote = format!("{}/{}", server_env("SB_TEST_SCP_DIR"), unique("retention"));
    let mut settings =
        service_backup_scp::ScpSettings::new("127.0.0.1", &user, &remote, Secret::new(key.clone()));
    settings.port = port.parse().unwrap();
    let indented: String = key.lines().map(|l| format!("      {l}\n")).collect();
    let item = format!(
        "- type: scp\n  name: ssh\n  config:\n    server: 127.0.0.1\n    port: {port}\n    \
         user: {user}\n    destination: {remote}\n    key: |\n{}",
        indented.trim_end()
    );
    drill(&Site {
        item,
        dest: Arc::new(service_backup_scp::ScpDestination::new(settings).unwrap()),
        layout: Layout::new("", None),
        secrets: key
            .lines()
            .filter(|l| l.len() >= 16)
            .map(str::to_string)
            .collect(),
    });
}

#[test]
fn retention_on_gcs() {
    let endpoint = server_env("SB_TEST_GCS_ENDPOINT");
    let project = server_env("SB_TEST_GCS_PROJECT");
    let json = std::fs::read_to_string(server_env("SB_TEST_GCS_KEY_FILE")).unwrap();
    let bucket = unique("retention").to_lowercase();
    let settings = service_backup_gcs::GcsSettings::new(
        Secret::new(json.clone()),
        &project,
        &bucket,
        Some(endpoint.clone()),
    );
    let item = format!(
        "- type: gcs\n  name: google\n  config:\n    service_account_json: |\n      {}\n    \
         project_id: {project}\n    bucket_name: {bucket}\n    bucket_path: redis/prod\n    endpoint: {endpoint}",
        json.trim()
    );
    let private_key: serde_json::Value = serde_json::from_str(&json).unwrap();
    drill(&Site {
        item,
        dest: Arc::new(service_backup_gcs::GcsDestination::new(settings).unwrap()),
        layout: Layout::new("redis/prod", None),
        secrets: private_key["private_key"]
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            .map(str::to_string)
            .collect(),
    });
}

/// A prune refused by the store (here: no right to delete in an old backup's directory)
/// is logged as an error and does not fail the backup before it.
#[test]
fn a_refused_prune_does_not_fail_the_backup() {
    use std::os::unix::fs::PermissionsExt as _;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vm = tempfile::tempdir().unwrap();
    let dir = vm.path();
    let open =
        |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    open(dir);
    sample_tree(&dir.join("source"));
    let root = dir.join("backups");
    let site = Site {
        item: format!(
            "- type: local\n  name: disk\n  config:\n    path: {}",
            root.display()
        ),
        dest: Arc::new(LocalDestination::new(&root)),
        layout: Layout::new("", None),
        secrets: vec![],
    };
    let old = Utc.with_ymd_and_hms(2026, 1, 5, 3, 0, 0).unwrap();
    let (manifest_key, _) = seed(&rt, &site, old, "alpha");
    write_config(dir, "alpha.yml", &site, "alpha", "{keep_last: 1}");
    // Writable for the agent, except the old backup's directory (created by this test);
    // its files readable (they were written mode 0600).
    for p in [root.clone(), root.join("2026")] {
        open(&p);
    }
    for f in std::fs::read_dir(root.join("2026/01/05")).unwrap() {
        std::fs::set_permissions(f.unwrap().path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    // The state_dir is the agent's alone (a state_dir others may write is refused).
    let state = dir.join("state-alpha");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    if common::is_root() {
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    }
    let bin = common::binary();
    let mut cmd = if common::is_root() {
        // Root may delete anything: run as nobody, to whom the directory is not writable.
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        std::fs::set_permissions(
            root.join("2026/01/05"),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        std::process::Command::new(&bin)
    };
    let out = common::Run::from(
        cmd.args(["backup", "alpha.yml"])
            .current_dir(dir)
            .output()
            .unwrap(),
    );
    out.expect(0);
    let refused = out
        .stdout
        .lines()
        .find(|l| l.contains("Prune completed with error"))
        .unwrap_or_else(|| panic!("no prune error logged:\n{}", out.stdout));
    let line: serde_json::Value = serde_json::from_str(refused).unwrap();
    assert_eq!(line["log_level"], 2, "{refused}");
    let error = line["data"]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("cannot delete backup {}", name_for(old, "alpha")))
            && error.contains("Permission denied"),
        "{error}"
    );
    assert!(
        out.stdout.contains("Upload backup completed successfully"),
        "{}",
        out.stdout
    );
    // Nothing half-done: the old backup is whole, the new one is there too.
    let now = keys(&rt, &site);
    assert!(now.contains(&manifest_key), "{now:?}");
    assert_eq!(names_of(&now, "alpha").len(), 2, "{now:?}");
    // As the agent's user: the state_dir is refused to any other.
    let tasks = if common::is_root() {
        common::Run::from(
            std::process::Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin)
                .args(["tasks", "alpha.yml", "--json"])
                .current_dir(dir)
                .output()
                .unwrap(),
        )
    } else {
        run(dir, &["tasks", "alpha.yml", "--json"])
    };
    let items: Vec<serde_json::Value> = serde_json::from_str(&tasks.stdout).unwrap();
    assert_eq!(items.last().unwrap()["status"], "done", "{}", tasks.stdout);
}

/// Starts an upload of one of `instance`'s archives and leaves it as a crash would: never
/// completed, never aborted. Returns its key.
fn crashed_upload(rt: &tokio::runtime::Runtime, site: &Site, instance: &str) -> String {
    let time = Utc.with_ymd_and_hms(2026, 2, 3, 3, 0, 0).unwrap();
    let key = site.layout.archive_key(
        time.date_naive(),
        &name_for(time, instance),
        Algorithm::Gzip,
        false,
    );
    rt.block_on(async {
        let mut upload = site.dest.put_multipart(&key).await.unwrap();
        // More than one part's worth, so that the store holds something.
        upload
            .write(Bytes::from(vec![1u8; 9 * 1024 * 1024]))
            .await
            .unwrap();
        std::mem::forget(upload);
    });
    key
}

/// Incomplete uploads older than a day are discarded, this instance's only; younger ones
/// are left to finish. The store dates them, so the prune is planned a few days ahead.
/// `dated`: whether the store reports when an upload started (moto reports a fixed time
/// in 2010 for every multipart upload, so there every upload looks old).
fn crashed_uploads_are_discarded(site: &Site, dated: bool) {
    use service_backup_core::prune::{Scope, TrustRules, execute_prune, plan_prune};
    use service_backup_core::retention::Policy;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mine = crashed_upload(&rt, site, "alpha");
    let theirs = crashed_upload(&rt, site, "beta");
    let policy = Policy {
        keep_last: Some(1),
        ..Policy::default()
    };
    let scope = Scope::Instance("alpha".into());
    let incomplete = |now| {
        let plan = rt
            .block_on(plan_prune(
                &*site.dest,
                &site.layout,
                &policy,
                &scope,
                now,
                &TrustRules::default(),
            ))
            .unwrap();
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        plan
    };
    if dated {
        assert!(
            incomplete(Utc::now()).incomplete.is_empty(),
            "a fresh upload is left alone"
        );
    }
    let later = Utc::now() + chrono::Duration::days(3);
    let plan = incomplete(later);
    let keys: Vec<&str> = plan.incomplete.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(keys, [mine.as_str()], "only alpha's");
    let outcome = rt.block_on(execute_prune(&*site.dest, &plan));
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(outcome.incomplete_discarded, [mine]);
    let left = rt
        .block_on(site.dest.list_incomplete(&site.layout.prefix()))
        .unwrap();
    let left: Vec<&str> = left.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(left, [theirs.as_str()], "beta's is not alpha's to discard");
    assert!(keys_now_empty(&rt, site), "nothing became visible");
}

fn keys_now_empty(rt: &tokio::runtime::Runtime, site: &Site) -> bool {
    keys(rt, site).is_empty()
}

#[test]
fn crashed_uploads_are_discarded_on_s3() {
    let endpoint = server_env("SB_TEST_S3_ENDPOINT");
    let bucket = unique("crashed").to_lowercase();
    let mut settings =
        service_backup_s3::S3Settings::new(&bucket, "AKIARETENTION0000001", Secret::new("s"));
    settings.endpoint_url = Some(endpoint);
    settings.region = Some("us-east-1".into());
    crashed_uploads_are_discarded(
        &Site {
            item: String::new(),
            dest: Arc::new(service_backup_s3::S3Destination::new(&settings).unwrap()),
            layout: Layout::new("redis/prod", None),
            secrets: vec![],
        },
        false,
    );
}

#[test]
fn crashed_uploads_are_discarded_on_scp() {
    let port = server_env("SB_TEST_SCP_PORT");
    let user = server_env("SB_TEST_SCP_USER");
    let key = std::fs::read_to_string(server_env("SB_TEST_SCP_KEY")).unwrap();
    let remote = format!("{}/{}", server_env("SB_TEST_SCP_DIR"), unique("crashed"));
    let mut settings =
        service_backup_scp::ScpSettings::new("127.0.0.1", &user, &remote, Secret::new(key));
    settings.port = port.parse().unwrap();
    crashed_uploads_are_discarded(
        &Site {
            item: String::new(),
            dest: Arc::new(service_backup_scp::ScpDestination::new(settings).unwrap()),
            layout: Layout::new("", None),
            secrets: vec![],
        },
        true,
    );
}

/// Bad retention values and a bad destination name: exit 2, the problem named, nothing
/// deleted.
#[test]
fn bad_retention_input_is_refused_and_deletes_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vm = tempfile::tempdir().unwrap();
    let dir = vm.path();
    sample_tree(&dir.join("source"));
    let root = dir.join("backups");
    let site = Site {
        item: format!(
            "- type: local\n  name: disk\n  config:\n    path: {}",
            root.display()
        ),
        dest: Arc::new(LocalDestination::new(&root)),
        layout: Layout::new("", None),
        secrets: vec![],
    };
    for d in 1..=3 {
        seed(
            &rt,
            &site,
            Utc.with_ymd_and_hms(2026, 1, d, 3, 0, 0).unwrap(),
            "alpha",
        );
    }
    let before = keys(&rt, &site);
    let msg = "Provide these missing fields in your manifest.";
    let cases = [
        (
            "{keep_last: -1}",
            "retention.keep_last must be a whole number, 0 or more, not -1",
        ),
        (
            "{keep_daily: many}",
            "retention.keep_daily must be a whole number, 0 or more, not \"many\"",
        ),
        ("{keep_hourly: 3}", "unknown key retention.keep_hourly"),
    ];
    for (retention, problem) in cases {
        write_config(dir, "alpha.yml", &site, "alpha", retention);
        for args in [
            &["prune", "alpha.yml"][..],
            &["backup", "alpha.yml"][..],
            &["validate", "alpha.yml"][..],
        ] {
            let out = run(dir, args);
            out.expect(2);
            // Not a missing value: missing_properties_message does not follow.
            assert!(
                out.stderr.contains(&format!("Invalid config - {problem}"))
                    && !out.stderr.contains(msg),
                "{args:?} {retention}:\n{}",
                out.stderr
            );
            assert_eq!(keys(&rt, &site), before, "{args:?} changed the destination");
        }
    }
    write_config(dir, "alpha.yml", &site, "alpha", "{keep_last: 1}");
    let out = run(dir, &["prune", "alpha.yml", "--destination", "nosuch"]);
    out.expect(2);
    assert!(
        out.stderr.contains("there is no destination named nosuch"),
        "{}",
        out.stderr
    );
    assert_eq!(keys(&rt, &site), before);
}

/// The manifests of `instance`'s backups in `site`, newest first, with their keys.
fn manifests(rt: &tokio::runtime::Runtime, site: &Site, instance: &str) -> Vec<(String, Manifest)> {
    let mut out: Vec<(String, Manifest)> = keys(rt, site)
        .into_iter()
        .filter(|k| k.ends_with(".json") && k.contains(&format!("-{instance}-")))
        .map(|k| {
            let bytes = rt.block_on(service_backup_core::destination::get_small(
                &*site.dest,
                &k,
                1 << 20,
            ));
            (k, Manifest::from_json(&bytes.unwrap()).unwrap())
        })
        .collect();
    out.sort_by(|a, b| b.1.name.cmp(&a.1.name));
    out
}

/// Plants a backup named `name` beside `real`: a manifest copied from `real`'s with the
/// name, archive, SHA-256 and size fixed, and `archive` as its archive. This is what
/// someone who can only add objects under the prefix can do.
fn plant(
    rt: &tokio::runtime::Runtime,
    site: &Site,
    real: &(String, Manifest),
    name: &str,
    archive: Vec<u8>,
) {
    use sha2::Digest as _;
    let mut m = real.1.clone();
    let ext = m.archive.strip_prefix(m.name.as_str()).unwrap().to_string();
    m.name = name.to_string();
    m.archive = format!("{name}{ext}");
    m.sha256 = sha2::Sha256::digest(&archive)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    m.stored_bytes = archive.len() as u64;
    let dir = real.0.rsplit_once('/').map_or("", |(d, _)| d);
    let at = |file: &str| {
        if dir.is_empty() {
            file.to_string()
        } else {
            format!("{dir}/{file}")
        }
    };
    rt.block_on(async {
        site.dest
            .put(&at(&m.archive), Bytes::from(archive))
            .await
            .unwrap();
        site.dest
            .put(&at(&format!("{name}.json")), Bytes::from(m.to_json()))
            .await
            .unwrap();
    });
}

/// Finding 6 of issue 20: manifests planted under the prefix, dated 2099 and holding a copy
/// of a real archive or junk, and one dated now holding a copy of the oldest real archive.
/// `prune --dry-run` and `prune` with `keep_last: 2` keep both real backups, delete
/// nothing, and report every plant as ignored.
fn planted_manifests_are_ignored(site: &Site) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vm = tempfile::tempdir().unwrap();
    let dir = vm.path();
    sample_tree(&dir.join("source"));
    run(dir, &["keygen", "--output", "backup.key"]).expect(0);
    let config = |retention: &str| {
        let yaml = format!(
            "destinations:\n{item}\nsource_folder: {d}/source\ncron_schedule: \"0 3 * * *\"\n\
             instance_id: alpha\nstate_dir: {d}/state\nencryption:\n  key_file: {d}/backup.key\n{retention}",
            item = site.item,
            d = dir.display(),
        );
        std::fs::write(dir.join("alpha.yml"), yaml).unwrap();
    };
    config("");
    run(dir, &["backup", "alpha.yml"]).expect(0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(dir, &["backup", "alpha.yml"]).expect(0);
    let real = manifests(&rt, site, "alpha");
    assert_eq!(real.len(), 2);
    let archive_of = |m: &(String, Manifest)| {
        let key = format!(
            "{}/{}",
            m.0.rsplit_once('/').map_or("", |(d, _)| d),
            m.1.archive
        );
        let key = key.trim_start_matches('/').to_string();
        rt.block_on(service_backup_core::destination::get_small(
            &*site.dest,
            &key,
            1 << 30,
        ))
        .unwrap()
    };
    let oldest = archive_of(&real[1]);
    let now = Utc::now().format("%Y%m%dT%H%M%SZ");
    let plants = [
        (
            "20991231T000001Z-alpha-aaaaaaaa".to_string(),
            oldest.clone(),
        ),
        (
            "20991231T000002Z-alpha-bbbbbbbb".to_string(),
            b"\x1f\x8bjunk".to_vec(),
        ),
        (format!("{now}-alpha-cccccccc"), oldest),
    ];
    for (name, archive) in &plants {
        plant(&rt, site, &real[0], name, archive.clone());
    }
    config("retention: {keep_last: 2}\n");
    let before = keys(&rt, site);

    for args in [
        &["prune", "alpha.yml", "--dry-run"][..],
        &["prune", "alpha.yml"][..],
    ] {
        let out = run(dir, args);
        out.expect(0);
        for (_, m) in &real {
            assert!(
                out.stdout.contains(&format!("keep          {}", m.name)),
                "{args:?}: {} is not kept:\n{}",
                m.name,
                out.stdout
            );
        }
        assert!(
            !out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with("delete ") || l.contains("would delete")),
            "{args:?} deletes:\n{}",
            out.stdout
        );
        for (name, _) in &plants {
            assert!(
                out.stdout.contains(&format!("ignored       {name}: ")),
                "{args:?}: {name} not reported as ignored:\n{}",
                out.stdout
            );
        }
        assert!(
            out.stdout.contains("ignored       20991231T000001Z-alpha-aaaaaaaa: it is dated 2099-12-31T00:00:01+00:00, more than 1 hour(s) after this machine's clock"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&format!(
                "ignored       {}: its archive cannot be trusted: the archive belongs to backup {}",
                plants[2].0, real[1].1.name
            )),
            "{}",
            out.stdout
        );
        assert!(
            out.stderr.contains("warning: destination ")
                && out.stderr.contains("3 backup(s) ignored by retention"),
            "{}",
            out.stderr
        );
        let logged = out
            .all()
            .lines()
            .filter(|l| l.contains("Backup ignored by retention"))
            .filter(|l| l.contains("ERROR") || l.contains("\"log_level\":2"))
            .count();
        assert_eq!(
            logged,
            3,
            "the plants are not logged as errors:\n{}",
            out.all()
        );
        assert_eq!(keys(&rt, site), before, "{args:?} changed the destination");
    }
    let pruned = run(dir, &["prune", "alpha.yml"]);
    assert!(
        pruned.stdout.contains("deleted 0 backup(s)"),
        "{}",
        pruned.stdout
    );
    // The real backups are still whole: both restore.
    for (_, m) in &real {
        let target = dir.join(format!("restored-{}", m.name));
        run(
            dir,
            &[
                "restore",
                "alpha.yml",
                "--backup",
                &m.name,
                "--target",
                target.to_str().unwrap(),
            ],
        )
        .expect(0);
        assert_eq!(tree(&target), tree(&dir.join("source")));
    }
}

#[test]
fn planted_manifests_are_ignored_on_a_local_destination() {
    let root = tempfile::tempdir().unwrap();
    planted_manifests_are_ignored(&local_site(root.path()));
}

#[test]
fn planted_manifests_are_ignored_on_s3() {
    planted_manifests_are_ignored(&s3_site("planted"));
}
