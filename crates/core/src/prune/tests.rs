//! Pruning a local destination: the plan, the order of deletions, leftovers and scope.

use crate::compression::Algorithm;
use bytes::Bytes;
use chrono::TimeZone as _;

use super::*;
use crate::destination::LocalDestination;
use crate::manifest::planted;

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
    let mut manifest = planted::manifest(instance, time);
    manifest.stored_bytes = recorded;
    let day = time.date_naive();
    let archive_key = layout.archive_key(day, &name, Algorithm::Gzip, false);
    let manifest_key = layout.manifest_key(day, &name);
    // A gzip magic: a prune reads an archive's first bytes to judge it.
    let mut bytes = vec![7u8; size];
    bytes[..2.min(size)].copy_from_slice(&[0x1f, 0x8b][..2.min(size)]);
    dest.put(&archive_key, Bytes::from(bytes)).await.unwrap();
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
    let plan = plan_prune(&dest, &layout, &policy, &scope, now, &TrustRules::default())
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
    let all = plan_prune(
        &dest,
        &layout,
        &policy,
        &Scope::AllInstances,
        now,
        &TrustRules::default(),
    )
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
    let plan = plan_prune(
        &dest,
        &layout,
        &policy,
        &scope,
        later,
        &TrustRules::default(),
    )
    .await
    .unwrap();
    assert_eq!(plan.deletions().count(), 0);
    let orphans: Vec<&str> = plan.orphans.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(orphans, [old.archive_key.as_str(), fresh_key.as_str()]);
    let now_plan = plan_prune(
        &dest,
        &layout,
        &policy,
        &scope,
        at(20, 12),
        &TrustRules::default(),
    )
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
        &plan_prune(
            &dest,
            &layout,
            &policy,
            &scope,
            later,
            &TrustRules::default(),
        )
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
        &TrustRules::default(),
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

/// An encrypted backup of `instance` at `time` whose header binds `bound` (or nothing),
/// with a manifest that matches its archive's size.
async fn seed_encrypted(
    dest: &LocalDestination,
    layout: &Layout,
    time: DateTime<Utc>,
    instance: &str,
    key: &crate::format::Key,
    bound: Option<&crate::format::BackupContext>,
) -> BackupEntry {
    use std::io::Write as _;
    let mut w = crate::format::EncryptingWriter::bound(Vec::new(), key, bound).unwrap();
    w.write_all(b"payload").unwrap();
    let archive = w.finish().unwrap();
    let entry = seed(dest, layout, time, instance, 1, archive.len() as u64).await;
    dest.put(&entry.archive_key, Bytes::from(archive))
        .await
        .unwrap();
    entry
}

fn context_of_entry(e: &BackupEntry) -> crate::format::BackupContext {
    e.manifest.context()
}

/// Finding 6 of issue 20 at the core: backups planted beside the real ones (dated in the
/// future, holding another backup's archive, a plain or unbound archive after bound ones,
/// junk) are neither counted nor deleted; the real ones are judged alone.
#[tokio::test]
async fn planted_backups_are_ignored_and_never_counted() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let key = crate::format::Key::generate().unwrap();
    // An archive of the format before contexts, then two bound ones: all real.
    let legacy = seed_encrypted(&dest, &layout, at(1, 3), "a", &key, None).await;
    let mut real = vec![legacy.manifest.name.clone()];
    for d in [2, 3] {
        let name = format!("{}-a-0000abcd", at(d, 3).format("%Y%m%dT%H%M%SZ"));
        let probe = seed(&dest, &layout, at(d, 3), "a", 1, 1).await;
        assert_eq!(probe.manifest.name, name);
        seed_encrypted(
            &dest,
            &layout,
            at(d, 3),
            "a",
            &key,
            Some(&context_of_entry(&probe)),
        )
        .await;
        real.push(name);
    }
    // The plants.
    let future = Utc.with_ymd_and_hms(2099, 12, 31, 0, 0, 1).unwrap();
    let first_bound = crate::format::BackupContext {
        name: real[1].clone(),
        instance_id: "a".into(),
        started_at: at(2, 3),
    };
    seed(&dest, &layout, future, "a", 10, 10).await; // plain, from 2099
    seed_encrypted(&dest, &layout, at(4, 3), "a", &key, Some(&first_bound)).await; // swapped
    seed(&dest, &layout, at(5, 3), "a", 10, 10).await; // plain after bound ones
    seed_encrypted(&dest, &layout, at(6, 3), "a", &key, None).await; // unbound after bound
    let junk = seed(&dest, &layout, at(7, 3), "a", 10, 10).await;
    dest.put(&junk.archive_key, Bytes::from(vec![0u8; 10]))
        .await
        .unwrap();
    let wrong = crate::format::Key::generate().unwrap();
    seed_encrypted(&dest, &layout, at(8, 3), "a", &wrong, None).await; // another key

    let policy = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    let trust = TrustRules {
        keyring: Some(crate::format::Keyring::new(key)),
        newest_recorded: None,
    };
    let scope = Scope::Instance("a".into());
    let plan = plan_prune(&dest, &layout, &policy, &scope, at(20, 0), &trust)
        .await
        .unwrap();
    let counted: Vec<(&str, String)> = plan
        .backups
        .iter()
        .map(|p| (p.entry.manifest.name.as_str(), p.decision.reasons()))
        .collect();
    assert_eq!(
        counted,
        [
            (real[2].as_str(), "newest, keep_last".to_string()),
            (real[1].as_str(), "keep_last".to_string()),
            (real[0].as_str(), String::new()),
        ],
        "only the real backups are judged; the legacy one before the bound ones counts"
    );
    let why: Vec<String> = plan.ignored.iter().map(|i| i.why.clone()).collect();
    assert_eq!(why.len(), 6, "{why:#?}");
    let expect = [
        "it is dated 2099-12-31T00:00:01+00:00, more than 1 hour(s) after this machine's clock",
        "the archive was encrypted for key id",
        "its archive cannot be trusted: the input is neither a service-backup encrypted archive",
        "it is an archive whose header binds no backup, yet dated after backups of its instance whose archives are bound to them (since 2026-03-02T03:00:00+00:00)",
        "it is a plain archive, yet dated after backups",
        &format!(
            "its archive cannot be trusted: the archive belongs to backup {} (instance a, started 2026-03-02T03:00:00Z), but its manifest names backup 20260304T030000Z-a-0000abcd",
            real[1]
        ),
    ];
    for part in expect {
        assert!(
            why.iter().any(|w| w.contains(part)),
            "no reason says {part:?}: {why:#?}"
        );
    }
    let outcome = execute_prune(&dest, &plan).await;
    let deleted: Vec<&str> = outcome
        .deleted
        .iter()
        .map(|p| p.entry.manifest.name.as_str())
        .collect();
    assert_eq!(
        deleted,
        [real[0].as_str()],
        "only the real backup the policy drops"
    );
}

/// The newest backup that the agent recorded as complete is kept whatever else the
/// destination holds.
#[tokio::test]
async fn the_newest_recorded_backup_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let mut names = Vec::new();
    for d in 1..=4 {
        names.push(
            seed(&dest, &layout, at(d, 3), "a", 10, 10)
                .await
                .manifest
                .name,
        );
    }
    let policy = Policy {
        keep_last: Some(1),
        ..Policy::default()
    };
    let trust = TrustRules {
        keyring: None,
        newest_recorded: Some(names[1].clone()),
    };
    let scope = Scope::Instance("a".into());
    let plan = plan_prune(&dest, &layout, &policy, &scope, at(20, 0), &trust)
        .await
        .unwrap();
    let kept: Vec<(String, String)> = plan
        .backups
        .iter()
        .filter(|p| p.decision.keep())
        .map(|p| (p.entry.manifest.name.clone(), p.decision.reasons()))
        .collect();
    assert_eq!(
        kept,
        [
            (names[3].clone(), "newest, keep_last".to_string()),
            (names[1].clone(), "newest-recorded".to_string()),
        ]
    );
}

/// Only the header of an archive is fetched to judge it, however its store cuts it.
#[tokio::test]
async fn judging_a_backup_reads_only_its_header() {
    use futures::StreamExt as _;
    let key = crate::format::Key::generate().unwrap();
    let context = crate::format::BackupContext {
        name: "20260301T030000Z-a-0000abcd".into(),
        instance_id: "a".into(),
        started_at: at(1, 3),
    };
    let mut w = crate::format::EncryptingWriter::bound(Vec::new(), &key, Some(&context)).unwrap();
    std::io::Write::write_all(&mut w, &vec![5u8; 200_000]).unwrap();
    let archive = w.finish().unwrap();
    let header = crate::format::header_len(&archive).unwrap().unwrap();
    assert_eq!(header, 138 + 16 + context.name.len() + 1);
    // One byte at a time: the reading stops at the header's end.
    let bytes: Vec<crate::Result<Bytes>> =
        archive.iter().map(|b| Ok(Bytes::from(vec![*b]))).collect();
    let mut chunks = futures::stream::iter(bytes).boxed();
    let read = crate::catalog::read_head(&mut chunks).await.unwrap();
    assert_eq!(read.len(), header);
    assert_eq!(chunks.count().await, archive.len() - header);
    let head: Vec<u8> = read.iter().flat_map(|c| c.to_vec()).collect();
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new("p", None);
    let entry = seed(
        &LocalDestination::new(dir.path()),
        &layout,
        at(1, 3),
        "a",
        1,
        1,
    )
    .await;
    let ring = crate::format::Keyring::new(key);
    assert_eq!(
        crate::catalog::judge(&head, Some(&ring), &entry).unwrap(),
        crate::catalog::Authenticity::Bound
    );
    // A header cut short is corrupt, not trusted.
    let e = crate::catalog::judge(&head[..head.len() - 1], Some(&ring), &entry).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
}

/// A real backup's objects copied under another day's folder count once: the copy cannot
/// push out an older backup.
#[tokio::test]
async fn a_backup_copied_to_another_folder_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let mut entries = Vec::new();
    for d in 1..=2 {
        entries.push(seed(&dest, &layout, at(d, 3), "a", 10, 10).await);
    }
    let newest = &entries[1];
    let other_day = at(9, 3).date_naive();
    let copy_manifest = layout.manifest_key(other_day, &newest.manifest.name);
    let copy_archive = Layout::sibling(&copy_manifest, &newest.manifest.archive);
    for (from, to) in [
        (&newest.manifest_key, &copy_manifest),
        (&newest.archive_key, &copy_archive),
    ] {
        let bytes = crate::destination::get_small(&dest, from, 1 << 20)
            .await
            .unwrap();
        dest.put(to, Bytes::from(bytes)).await.unwrap();
    }
    let policy = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    let scope = Scope::Instance("a".into());
    let plan = plan_prune(
        &dest,
        &layout,
        &policy,
        &scope,
        at(20, 0),
        &TrustRules::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        plan.deletions().count(),
        0,
        "the copy pushed out the older backup"
    );
    assert_eq!(plan.backups.len(), 2);
    assert_eq!(plan.ignored.len(), 1);
    assert!(
        plan.ignored[0].why.contains("has the same backup name"),
        "{}",
        plan.ignored[0].why
    );
}

/// An agent with recipients only cannot authenticate a header: it trusts an archive that
/// is encrypted for one of its recipients and names the manifest's backup, and no other.
#[tokio::test]
async fn a_keyring_of_recipients_only_judges_by_recipient_and_context() {
    use crate::catalog::{Authenticity, judge};
    use crate::format::{EncryptingWriter, Identity, Keyring};
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new("p", None);
    let dest = LocalDestination::new(dir.path());
    let entry = seed(&dest, &layout, at(1, 3), "a", 1, 1).await;
    let ours = Identity::generate().unwrap().recipient();
    let theirs = Identity::generate().unwrap().recipient();
    let sealed = |recipient, context: &crate::format::BackupContext| {
        let w = EncryptingWriter::sealed(Vec::new(), None, &[recipient], Some(context)).unwrap();
        w.finish().unwrap()
    };
    let mut ring = Keyring::default();
    ring.add_recipient(ours);
    let good = sealed(ours, &entry.manifest.context());
    assert_eq!(
        judge(&good, Some(&ring), &entry).unwrap(),
        Authenticity::Addressed
    );
    let e = judge(
        &sealed(theirs, &entry.manifest.context()),
        Some(&ring),
        &entry,
    )
    .unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::WrongKey, "{e}");
    assert!(
        e.message().contains("none of the configured recipients"),
        "{e}"
    );
    let mut other = entry.manifest.context();
    other.name = "20260301T040000Z-a-0000ffff".into();
    let e = judge(&sealed(ours, &other), Some(&ring), &entry).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
}

mod locks;
