//! Refreshing a catalog of a local destination: incremental listings, repair by a full
//! one, damaged manifests, and instances writing one prefix interleaved.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{NaiveDate, TimeZone as _};

use super::*;
use crate::compression::Algorithm;
use crate::destination::LocalDestination;
use crate::manifest::planted;

/// Writes a backup of `instance` started at `time`, in the day folder `day` (the writing
/// agent's local date), and returns its manifest key.
async fn seed(
    dest: &LocalDestination,
    layout: &Layout,
    time: DateTime<Utc>,
    day: NaiveDate,
    instance: &str,
) -> String {
    planted::put(dest, layout, day, &planted::manifest(instance, time)).await
}

fn at(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

const ALL: Reading<'static> = Reading {
    instance_id: "a",
    others: true,
    concurrency: 4,
};

/// A catalog as a test keeps it: the manifest keys read, and which are sound.
#[derive(Default)]
struct Catalog {
    read: HashSet<String>,
    sound: HashSet<String>,
    damaged: HashSet<String>,
}

impl Catalog {
    fn apply(&mut self, r: Refreshed) {
        let after = r.listed_after.clone().unwrap_or_default();
        let kept = |k: &String| k.as_str() <= after.as_str() || r.present.contains(k);
        self.read.retain(kept);
        self.sound.retain(kept);
        self.damaged.retain(kept);
        for k in r.lost_archive {
            self.sound.remove(&k);
            self.damaged.insert(k);
        }
        for l in r.changed {
            match l.found {
                Found::Sound(_) => {
                    self.read.insert(l.manifest_key.clone());
                    self.sound.insert(l.manifest_key);
                }
                Found::Damaged { .. } => {
                    self.read.insert(l.manifest_key.clone());
                    self.damaged.insert(l.manifest_key);
                }
                Found::Unread => {}
            }
        }
    }
}

#[tokio::test]
async fn an_incremental_refresh_reads_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let old = seed(&dest, &layout, at(1, 3), day(1), "a").await;
    let mut catalog = Catalog::default();
    let first = refresh(&dest, &layout, &Scope::Full, &catalog.read, ALL)
        .await
        .unwrap();
    assert_eq!(first.changed.len(), 1);
    catalog.apply(first);

    let new = seed(&dest, &layout, at(20, 3), day(20), "a").await;
    let scope = Scope::since(&layout, at(20, 1));
    assert_eq!(scope, Scope::After("p/2026/03/18/".into()));
    let second = refresh(&dest, &layout, &scope, &catalog.read, ALL)
        .await
        .unwrap();
    // The old day folder is not listed, and the new manifest is the only one read.
    assert_eq!(second.objects_listed, 2, "{second:?}");
    let read: Vec<&str> = second
        .changed
        .iter()
        .map(|l| l.manifest_key.as_str())
        .collect();
    assert_eq!(read, vec![new.as_str()]);
    assert_eq!(second.listed_after.as_deref(), Some("p/2026/03/18/"));
    catalog.apply(second);
    assert_eq!(catalog.sound, HashSet::from([old, new.clone()]));

    // Nothing new: nothing read again.
    let third = refresh(&dest, &layout, &scope, &catalog.read, ALL)
        .await
        .unwrap();
    assert!(third.changed.is_empty(), "{third:?}");
}

#[tokio::test]
async fn a_full_refresh_repairs_deleted_and_damaged_backups() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("", None);
    let gone = seed(&dest, &layout, at(1, 3), day(1), "a").await;
    let lost = seed(&dest, &layout, at(2, 3), day(2), "a").await;
    let kept = seed(&dest, &layout, at(3, 3), day(3), "a").await;
    let mut catalog = Catalog::default();
    catalog.apply(
        refresh(&dest, &layout, &Scope::Full, &catalog.read, ALL)
            .await
            .unwrap(),
    );
    assert_eq!(catalog.sound.len(), 3);

    // A backup deleted whole, another whose archive went, and a new damaged manifest.
    dest.delete(&gone).await.unwrap();
    dest.delete(&gone.replace(".json", ".tar.gz"))
        .await
        .unwrap();
    dest.delete(&lost.replace(".json", ".tar.gz"))
        .await
        .unwrap();
    let broken = layout.manifest_key(day(4), "20260304T030000Z-a-0000abcd");
    dest.put(&broken, Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let mismatched = layout.manifest_key(day(5), "20260305T030000Z-a-0000abcd");
    let other = std::fs::read(dir.path().join(&kept)).unwrap();
    dest.put(&mismatched, Bytes::from(other)).await.unwrap();

    let repaired = refresh(&dest, &layout, &Scope::Full, &catalog.read, ALL)
        .await
        .unwrap();
    let problems: Vec<(String, String)> = repaired
        .changed
        .iter()
        .filter_map(|l| match &l.found {
            Found::Damaged { problem } => Some((l.manifest_key.clone(), problem.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].1.starts_with("the manifest cannot be read"),
        "{problems:?}"
    );
    assert_eq!(problems[1].1, "the manifest's name does not match its key");
    assert_eq!(repaired.lost_archive, vec![lost.clone()]);
    catalog.apply(repaired);
    assert_eq!(catalog.sound, HashSet::from([kept]));
    assert_eq!(catalog.damaged, HashSet::from([lost, broken, mismatched]));
    assert!(!catalog.read.contains(&gone));
}

#[tokio::test]
async fn interleaved_instances_and_late_manifests_are_all_found_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("shared", Some("deploy"));
    let mut catalog = Catalog::default();
    let mut expected = HashSet::new();
    // Day 1: two instances write, interleaved in time.
    for (h, who) in [(1, "a"), (2, "b"), (3, "a"), (4, "b")] {
        expected.insert(seed(&dest, &layout, at(1, h), day(1), who).await);
    }
    catalog.apply(
        refresh(&dest, &layout, &Scope::Full, &catalog.read, ALL)
            .await
            .unwrap(),
    );
    let last_refresh = at(1, 5);
    // After that refresh: `b` writes a backup that started before it and ended after it
    // (its key sorts before keys already seen), `a` one in the next day folder, and `c`,
    // whose local date is a day behind, one in the previous day folder.
    expected.insert(seed(&dest, &layout, at(1, 0), day(1), "b").await);
    expected.insert(seed(&dest, &layout, at(2, 6), day(2), "a").await);
    expected.insert(seed(&dest, &layout, at(2, 1), day(1), "c").await);
    let greatest_seen = catalog.read.iter().max().unwrap().clone();
    let scope = Scope::since(&layout, last_refresh);
    let Scope::After(start) = &scope else {
        unreachable!()
    };
    assert!(*start < greatest_seen, "the cursor looks back: {start}");
    catalog.apply(
        refresh(&dest, &layout, &scope, &catalog.read, ALL)
            .await
            .unwrap(),
    );
    assert_eq!(catalog.sound, expected);
}

#[tokio::test]
async fn this_instance_is_read_first_and_others_can_wait() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let mine = seed(&dest, &layout, at(2, 3), day(2), "a").await;
    let theirs = seed(&dest, &layout, at(1, 3), day(1), "b").await;
    let only_mine = Reading {
        others: false,
        ..ALL
    };
    let r = refresh(&dest, &layout, &Scope::Full, &HashSet::new(), only_mine)
        .await
        .unwrap();
    assert_eq!(r.changed.len(), 2);
    assert_eq!(r.changed[0].manifest_key, mine);
    assert!(matches!(r.changed[0].found, Found::Sound(_)));
    assert_eq!(r.changed[1].manifest_key, theirs);
    assert_eq!(r.changed[1].found, Found::Unread);
    let all = refresh(&dest, &layout, &Scope::Full, &HashSet::new(), ALL)
        .await
        .unwrap();
    assert_eq!(all.changed[0].manifest_key, mine);
    assert!(matches!(all.changed[1].found, Found::Sound(_)));
}

#[tokio::test]
async fn an_incremental_refresh_drops_what_went_after_its_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let old = seed(&dest, &layout, at(1, 3), day(1), "a").await;
    let recent = seed(&dest, &layout, at(20, 3), day(20), "a").await;
    let kept = seed(&dest, &layout, at(20, 4), day(20), "a").await;
    let mut catalog = Catalog::default();
    catalog.apply(
        refresh(&dest, &layout, &Scope::Full, &catalog.read, ALL)
            .await
            .unwrap(),
    );
    for key in [&old, &recent] {
        dest.delete(key).await.unwrap();
        dest.delete(&key.replace(".json", ".tar.gz")).await.unwrap();
    }
    dest.delete(&kept.replace(".json", ".tar.gz"))
        .await
        .unwrap();
    let scope = Scope::since(&layout, at(20, 5));
    let r = refresh(&dest, &layout, &scope, &catalog.read, ALL)
        .await
        .unwrap();
    assert_eq!(r.lost_archive, vec![kept.clone()]);
    catalog.apply(r);
    // The old one is outside the listing: only a full refresh can tell it is gone.
    assert_eq!(catalog.sound, HashSet::from([old.clone()]));
    assert_eq!(catalog.damaged, HashSet::from([kept]));
    catalog.apply(
        refresh(&dest, &layout, &Scope::Full, &catalog.read, ALL)
            .await
            .unwrap(),
    );
    assert!(catalog.sound.is_empty());
}

/// A sink that keeps every batch apart, and what it was asked.
#[derive(Default)]
struct Batches {
    batches: Vec<Refreshed>,
}

impl Sink for Batches {
    fn known(&mut self, _: String, _: String) -> BoxFuture<'_, Result<HashSet<String>>> {
        Box::pin(async { Ok(HashSet::new()) })
    }
    fn write(&mut self, found: Refreshed) -> BoxFuture<'_, Result<()>> {
        self.batches.push(found);
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn a_paged_refresh_finds_what_a_whole_listing_finds_holding_a_few_folders() {
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    for d in 1..=6 {
        for (h, who) in [(1, "a"), (2, "b"), (3, "c")] {
            seed(&dest, &layout, at(d, h), day(d), who).await;
        }
    }
    // An archive without its manifest, and a manifest without its archive.
    let orphan = layout.archive_key(
        day(3),
        "20260303T090000Z-a-0000beef",
        Algorithm::Gzip,
        false,
    );
    dest.put(&orphan, Bytes::from_static(&[0x1f, 0x8b, 0]))
        .await
        .unwrap();
    let lonely = seed(&dest, &layout, at(4, 9), day(4), "b").await;
    dest.delete(&lonely.replace(".json", ".tar.gz"))
        .await
        .unwrap();

    // Pages end inside day folders: the local store stops early.
    let mut keys = Vec::new();
    let mut after = String::new();
    loop {
        let (page, more) = dest.list_page("p/", &after, 4).await.unwrap();
        assert!(page.len() <= 4);
        keys.extend(page.iter().map(|o| o.key.clone()));
        match page.last() {
            Some(last) if more => after.clone_from(&last.key),
            _ => break,
        }
    }
    let whole: Vec<String> = dest
        .list("p/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, whole);

    let at_once = refresh(&dest, &layout, &Scope::Full, &HashSet::new(), ALL)
        .await
        .unwrap();
    let mut sink = Batches::default();
    let summary = refresh_paged(&dest, &layout, &Scope::Full, &mut sink, ALL, 4, 7)
        .await
        .unwrap();
    assert_eq!(summary.objects_listed, at_once.objects_listed);
    assert_eq!(summary.orphans, at_once.orphans);
    assert_eq!(
        summary
            .orphans
            .as_ref()
            .map(|o| o.iter().map(|o| o.key.as_str()).collect::<Vec<_>>()),
        Some(vec![orphan.as_str()])
    );
    assert!(sink.batches.len() >= 3, "{} batches", sink.batches.len());
    // Each batch holds whole folders, and about `batch` objects (a folder is 6 of them).
    let mut folders_seen = HashSet::new();
    for b in &sink.batches {
        assert!(b.objects_listed <= 7 + 6 + 4, "{}", b.objects_listed);
        let folders: HashSet<&str> = b.present.iter().map(|k| folder_of(k)).collect();
        for f in folders {
            assert!(folders_seen.insert(f.to_string()), "{f} in two batches");
        }
    }
    let mut paged: Vec<Listed> = sink
        .batches
        .iter()
        .flat_map(|b| b.changed.clone())
        .collect();
    let mut whole = at_once.changed.clone();
    paged.sort_by(|a, b| a.manifest_key.cmp(&b.manifest_key));
    whole.sort_by(|a, b| a.manifest_key.cmp(&b.manifest_key));
    assert_eq!(paged, whole);
    let damaged: Vec<&Listed> = paged
        .iter()
        .filter(|l| matches!(l.found, Found::Damaged { .. }))
        .collect();
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].manifest_key, lonely);
}

#[tokio::test]
async fn planted_manifests_are_judged_and_read_ones_handed_over_a_few_hundred_at_a_time() {
    /// Records the largest hand-over and what was found.
    #[derive(Default)]
    struct Largest {
        most: usize,
        found: Vec<Listed>,
    }
    impl Sink for Largest {
        fn known(&mut self, _: String, _: String) -> BoxFuture<'_, Result<HashSet<String>>> {
            Box::pin(async { Ok(HashSet::new()) })
        }
        fn write(&mut self, found: Refreshed) -> BoxFuture<'_, Result<()>> {
            self.most = self.most.max(found.changed.len());
            self.found.extend(found.changed);
            Box::pin(async { Ok(()) })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(dir.path());
    let layout = Layout::new("", None);
    for i in 0..600 {
        seed(
            &dest,
            &layout,
            at(1, 0) + chrono::Duration::seconds(i),
            day(1),
            "a",
        )
        .await;
    }
    // Attacker's review: manifests near the old 1 MiB bound held hundreds of MiB at once;
    // one naming another backup's archive, or another instance than its name, was taken.
    let mut huge = planted::manifest("a", at(2, 1));
    huge.source_folder = "x".repeat(MAX_MANIFEST_BYTES);
    let huge_key = planted::put(&dest, &layout, day(2), &huge).await;
    let real = planted::manifest("a", at(2, 2));
    planted::put(&dest, &layout, day(2), &real).await;
    let mut redirect = planted::manifest("b", at(2, 3));
    redirect.archive.clone_from(&real.archive);
    let redirect_key = planted::put(&dest, &layout, day(2), &redirect).await;
    let mut spoof = planted::manifest("b", at(2, 4));
    spoof.instance_id = "a".into();
    let spoof_key = planted::put(&dest, &layout, day(2), &spoof).await;

    let mut sink = Largest::default();
    refresh_into(&dest, &layout, &Scope::Full, &mut sink, ALL)
        .await
        .unwrap();
    assert!(sink.most <= WRITE_EVERY, "{} at once", sink.most);
    assert_eq!(sink.found.len(), 604);
    let problem = |key: &str| {
        sink.found
            .iter()
            .find(|l| l.manifest_key == key)
            .and_then(|l| match &l.found {
                Found::Damaged { problem } => Some(problem.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{key} is not damaged"))
    };
    assert!(
        problem(&huge_key).contains("larger than 65536 bytes"),
        "{}",
        problem(&huge_key)
    );
    assert_eq!(
        problem(&redirect_key),
        "the manifest's archive is not the archive of its backup"
    );
    assert_eq!(
        problem(&spoof_key),
        "the manifest's instance_id is not the instance its name gives"
    );
    let sound = sink
        .found
        .iter()
        .filter(|l| matches!(l.found, Found::Sound(_)))
        .count();
    assert_eq!(sound, 601);
}
