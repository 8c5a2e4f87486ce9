//! Pruning a local destination: the plan, the order of deletions, leftovers and scope.

use crate::compression::Algorithm;
use bytes::Bytes;
use chrono::TimeZone as _;

use super::*;
use crate::destination::LocalDestination;
use crate::manifest::{Compression, MANIFEST_VERSION, Manifest};

/// Writes a backup named for `time` by `instance`, with an archive of `size` bytes and a
/// manifest that records `recorded` bytes.
async fn seed(
    dest: &LocalDestination,
    layout: &Layout,
    time: DateTime<Utc>,
    instance: &str,
    size: usize,
    recorded: u64,
) -> BackupEntry {
    let name = format!("{}-{instance}-0000abcd", time.format("%Y%m%dT%H%M%SZ"));
    let archive = format!("{name}.tar.gz");
    let manifest = Manifest {
        format_version: MANIFEST_VERSION,
        name: name.clone(),
        instance_id: instance.into(),
        deployment: None,
        started_at: time,
        finished_at: time,
        source_folder: "/s".into(),
        file_count: 1,
        plain_bytes: 1,
        stored_bytes: recorded,
        sha256: "00".repeat(32),
        archive: archive.clone(),
        compression: Compression {
            algorithm: "gzip".into(),
            level: 6,
        },
        encryption: None,
        agent_version: "test".into(),
    };
    let day = time.date_naive();
    let archive_key = layout.archive_key(day, &name, Algorithm::Gzip, false);
    let manifest_key = layout.manifest_key(day, &name);
    dest.put(&archive_key, Bytes::from(vec![7u8; size]))
        .await
        .unwrap();
    dest.put(&manifest_key, Bytes::from(manifest.to_json()))
        .await
        .unwrap();
    BackupEntry {
        manifest,
        manifest_key,
        archive_key,
        archive_size: size as u64,
    }
}

fn at(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
}

async fn keys(dest: &LocalDestination) -> Vec<String> {
    let mut k: Vec<String> = dest
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn a_prune_deletes_what_the_policy_drops_and_only_this_instances() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let mut mine = Vec::new();
    for d in 1..=5 {
        mine.push(seed(&dest, &layout, at(d, 3), "a", 10, 10).await);
        seed(&dest, &layout, at(d, 4), "b", 10, 10).await;
    }
    let policy = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    let scope = Scope::Instance("a".into());
    let now = at(20, 0);
    let plan = plan_prune(&dest, &layout, &policy, &scope, now)
        .await
        .unwrap();
    assert_eq!(plan.backups.len(), 5, "only instance a's backups");
    let doomed: Vec<&str> = plan
        .deletions()
        .map(|p| p.entry.manifest.name.as_str())
        .collect();
    assert_eq!(doomed.len(), 3);
    assert!(plan.orphans.is_empty() && plan.incomplete.is_empty());

    let outcome = execute_prune(&dest, &plan).await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(outcome.deleted.len(), 3);
    let left = keys(&dest).await;
    for gone in &mine[..3] {
        assert!(!left.contains(&gone.manifest_key) && !left.contains(&gone.archive_key));
    }
    assert_eq!(
        left.len(),
        2 * 2 + 5 * 2,
        "b's five backups untouched: {left:?}"
    );

    // Every instance, each judged apart: b's three oldest go too, a's two stay.
    let all = plan_prune(&dest, &layout, &policy, &Scope::AllInstances, now)
        .await
        .unwrap();
    let doomed: Vec<&str> = all
        .deletions()
        .map(|p| p.entry.manifest.instance_id.as_str())
        .collect();
    assert_eq!(doomed, ["b", "b", "b"]);
}

#[tokio::test]
async fn a_prune_cut_between_manifest_and_archive_is_finished_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("", None);
    let old = seed(&dest, &layout, at(1, 3), "a", 10, 10).await;
    seed(&dest, &layout, at(2, 3), "a", 10, 10).await;
    // As a prune that stopped after the manifest: the archive stays, invisible.
    dest.delete(&old.manifest_key).await.unwrap();
    assert_eq!(
        crate::catalog::list_backups(&dest, &layout)
            .await
            .unwrap()
            .len(),
        1
    );
    // A fresh archive without a manifest (a backup just being finished) is left alone.
    let fresh = format!("{}-a-0000beef", at(20, 3).format("%Y%m%dT%H%M%SZ"));
    let fresh_key = layout.archive_key(at(20, 3).date_naive(), &fresh, Algorithm::Gzip, false);
    dest.put(&fresh_key, Bytes::from_static(b"x"))
        .await
        .unwrap();
    // A temporary file of an upload cut short by a crash, and a recent one.
    std::fs::write(dir.path().join("2026/03/02/.gone.tar.gz.tmp-1234"), b"t").unwrap();
    std::fs::create_dir_all(dir.path().join("2026/03/20")).unwrap();
    let stale_name = format!(".{}.tar.gz.tmp-99", old.manifest.name);
    std::fs::write(dir.path().join("2026/03/01").join(&stale_name), b"t").unwrap();

    let policy = Policy {
        keep_last: Some(5),
        ..Policy::default()
    };
    let scope = Scope::Instance("a".into());
    // Leftovers are dated by the name's time; temporary files by their modification time.
    let later = Utc::now() + Duration::days(2);
    let plan = plan_prune(&dest, &layout, &policy, &scope, later)
        .await
        .unwrap();
    assert_eq!(plan.deletions().count(), 0);
    let orphans: Vec<&str> = plan.orphans.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(orphans, [old.archive_key.as_str(), fresh_key.as_str()]);
    let now_plan = plan_prune(&dest, &layout, &policy, &scope, at(20, 12))
        .await
        .unwrap();
    let orphans: Vec<&str> = now_plan.orphans.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        orphans,
        [old.archive_key.as_str()],
        "the fresh one is too young"
    );
    assert!(
        now_plan.incomplete.is_empty(),
        "temporary files just written are young"
    );
    let incomplete: Vec<&str> = plan.incomplete.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(incomplete, [old.archive_key.as_str()], "only a's, by name");

    let outcome = execute_prune(&dest, &now_plan).await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert!(!keys(&dest).await.contains(&old.archive_key));
    let outcome = execute_prune(
        &dest,
        &plan_prune(&dest, &layout, &policy, &scope, later)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        outcome.incomplete_discarded,
        std::slice::from_ref(&old.archive_key)
    );
    assert!(!dir.path().join("2026/03/01").join(&stale_name).exists());
    assert!(dir.path().join("2026/03/02/.gone.tar.gz.tmp-1234").exists());
}

#[tokio::test]
async fn a_backup_with_a_short_archive_shields_nothing_older_than_the_last_sound_one() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("", None);
    for d in 1..=3 {
        seed(&dest, &layout, at(d, 3), "a", 10, 10).await;
    }
    // The two newest have archives shorter than their manifests say.
    seed(&dest, &layout, at(4, 3), "a", 5, 10).await;
    seed(&dest, &layout, at(5, 3), "a", 5, 10).await;
    let policy = Policy {
        keep_last: Some(1),
        ..Policy::default()
    };
    let plan = plan_prune(
        &dest,
        &layout,
        &policy,
        &Scope::Instance("a".into()),
        at(9, 0),
    )
    .await
    .unwrap();
    let kept: Vec<String> = plan
        .backups
        .iter()
        .filter(|p| p.decision.keep())
        .map(|p| format!("{} {}", &p.decision.name[..8], p.decision.reasons()))
        .collect();
    assert_eq!(
        kept,
        [
            "20260305 newest, keep_last",
            "20260304 newest-sound",
            "20260303 newest-sound"
        ]
    );
}
