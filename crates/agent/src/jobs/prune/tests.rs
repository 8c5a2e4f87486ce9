//! Prune on the catalog: a store shared with other instances, whose manifests a prune
//! neither reads nor fails on; leftovers looked for on the slow schedule.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{Days, NaiveDate};
use service_backup_core::compression::Algorithm;
use service_backup_core::destination::counting::Counting;
use service_backup_core::destination::{Destination as _, LocalDestination};
use service_backup_core::layout::Layout;
use service_backup_core::manifest::planted;

use super::*;

/// The day `days` before today, and a time on it.
fn days_ago(days: u64, hour: u32) -> (NaiveDate, DateTime<Utc>) {
    let day = Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days))
        .unwrap();
    (day, day.and_hms_opt(hour, 0, 0).unwrap().and_utc())
}

/// Writes a backup of `instance` started `days` ago (a plain archive of three bytes);
/// returns its manifest key.
async fn seed(dest: &LocalDestination, instance: &str, days: u64, hour: u32) -> String {
    let (day, time) = days_ago(days, hour);
    let manifest = planted::manifest(instance, time);
    planted::put(dest, &Layout::new("", None), day, &manifest).await
}

fn manifests(keys: &[String]) -> Vec<&String> {
    keys.iter().filter(|k| k.ends_with(".json")).collect()
}

#[tokio::test]
async fn prune_reads_only_new_manifests_of_its_instance_and_looks_for_leftovers_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let local = LocalDestination::new(&root);
    let mut mine = Vec::new();
    for d in (1..=5).rev() {
        mine.push(seed(&local, "me", d * 3, 4).await);
    }
    let mut others = Vec::new();
    for i in 0..20 {
        others.push(seed(&local, &format!("other{i:02}"), 1 + i % 10, 5).await);
    }
    // Another instance's manifest that cannot be read: a prune of "me" never touches it.
    let (day, time) = days_ago(2, 6);
    let bad = Layout::new("", None).manifest_key(
        day,
        &format!("{}-other99-0000abcd", time.format("%Y%m%dT%H%M%SZ")),
    );
    local
        .put(&bad, Bytes::from_static(b"{ not a manifest"))
        .await
        .unwrap();

    let store = Arc::new(Counting::new(Arc::new(LocalDestination::new(&root))));
    let target = Target {
        name: "disk".into(),
        destination: store.clone(),
        layout: Layout::new("", None),
    };
    let tasks = Tasks::open(&dir.path().join("state")).await.unwrap();
    let policy = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    let scope = Scope::Instance("me".into());
    let trust = TrustRules::default();
    let every = crate::catalog::FULL_REFRESH_EVERY;
    let run = |dry_run: bool, every: Duration| {
        let (target, tasks, scope, trust) = (&target, &tasks, &scope, &trust);
        async move {
            prune(
                target,
                &policy,
                scope,
                dry_run,
                Some(tasks),
                trust,
                "me",
                every,
            )
            .await
            .unwrap()
        }
    };

    // The first prune lists the store whole (an empty catalog) and reads this instance's
    // five manifests, no other's.
    let (plan, outcome) = run(false, every).await;
    let read = store.take_reads();
    let mut want: Vec<&String> = mine.iter().collect();
    want.sort();
    let mut got = manifests(&read);
    got.sort();
    assert_eq!(got, want, "{read:?}");
    assert!(
        read.iter().all(|k| !k.contains("-other")),
        "another instance's object was read: {read:?}"
    );
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    assert!(plan.ignored.is_empty(), "{:?}", plan.ignored);
    let outcome = outcome.unwrap();
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(outcome.deleted.len(), 3);
    // The deleted backups left the catalog.
    let key = crate::catalog::key_of(&target);
    let entries = {
        let key = key.clone();
        tasks
            .catalog(move |s| s.catalog_entries(&key, Some("me")))
            .await
            .unwrap()
    };
    let kept: Vec<&str> = entries.iter().map(|e| e.manifest_key.as_str()).collect();
    assert_eq!(kept, [mine[4].as_str(), mine[3].as_str()]);

    // A new backup of this instance, more of others', and an archive left without its
    // manifest in an old day folder (stale).
    let new = seed(&local, "me", 0, 0).await;
    for i in 0..10 {
        seed(&local, &format!("late{i:02}"), 0, 0).await;
    }
    let (oday, otime) = days_ago(20, 3);
    let orphan_key = Layout::new("", None).archive_key(
        oday,
        &format!("{}-me-0000beef", otime.format("%Y%m%dT%H%M%SZ")),
        Algorithm::Gzip,
        false,
    );
    local
        .put(&orphan_key, Bytes::from_static(&[0x1f, 0x8b, 0]))
        .await
        .unwrap();

    // The next prune reads the one new manifest; the leftovers were looked at a moment ago,
    // so the old day folder is not listed and the orphan stays.
    let (plan, outcome) = run(false, every).await;
    let read = store.take_reads();
    assert_eq!(manifests(&read), [&new], "{read:?}");
    assert!(
        read.iter()
            .all(|k| !k.contains("-other") && !k.contains("-late")),
        "{read:?}"
    );
    assert!(plan.orphans.is_empty(), "{:?}", plan.orphans);
    assert_eq!(outcome.unwrap().deleted.len(), 1);
    assert!(root.join(&orphan_key).exists());

    // On the slow schedule (here at once), a prune lists the store whole: the orphan goes,
    // this instance's manifests are read again (taken as they are now), and still no other
    // instance's.
    let (dry, _) = run(true, Duration::ZERO).await;
    assert_eq!(dry.orphans.len(), 1, "{:?}", dry.orphans);
    assert!(root.join(&orphan_key).exists(), "a dry run deleted");
    let (plan, outcome) = run(false, Duration::ZERO).await;
    let read = store.take_reads();
    assert!(!manifests(&read).is_empty(), "{read:?}");
    assert!(
        manifests(&read).iter().all(|k| k.contains("-me-")),
        "{read:?}"
    );
    assert_eq!(plan.orphans.len(), 1);
    assert_eq!(
        outcome.unwrap().orphans_removed,
        std::slice::from_ref(&orphan_key)
    );
    assert!(!root.join(&orphan_key).exists());
    assert!(root.join(&bad).exists());
}
