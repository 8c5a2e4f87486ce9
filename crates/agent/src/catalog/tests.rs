//! The daemon's background refresh of the catalogs.

use std::sync::RwLock;

use service_backup_core::destination::LocalDestination;
use service_backup_core::destination::counting::Counting;
use service_backup_core::layout::Layout;
use service_backup_core::manifest::planted;

use super::*;

/// Writes a backup of instance `me` started at `time` into `root`, in that day's folder.
async fn seed(root: &std::path::Path, time: DateTime<Utc>) -> String {
    let manifest = planted::manifest("me", time);
    let dest = LocalDestination::new(root);
    planted::put(&dest, &Layout::new("", None), time.date_naive(), &manifest).await;
    manifest.name
}

/// A configuration of instance `me` with one `local` destination, `disk`, at `root`.
fn config_for(dir: &std::path::Path, root: &std::path::Path) -> Config {
    let yaml = format!(
        "instance_id: me\nsource_folder: {0}/source\ncron_schedule: '0 3 * * *'\n\
         state_dir: {0}/state\ndestinations:\n- type: local\n  name: disk\n  config:\n    path: {1}\n",
        dir.display(),
        root.display()
    );
    crate::config::parse(&yaml).unwrap()
}

/// A test's folder, the `local` destination's root in it, and its task database.
async fn fixture() -> (tempfile::TempDir, std::path::PathBuf, Tasks) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    std::fs::create_dir_all(&root).unwrap();
    let tasks = Tasks::open(&dir.path().join("state")).await.unwrap();
    (dir, root, tasks)
}

/// The `local` destination `disk` at `root`, counting what it is asked.
fn counted(root: &std::path::Path) -> (Arc<Counting>, Target) {
    let store = Arc::new(Counting::new(Arc::new(LocalDestination::new(root))));
    let target = Target {
        name: "disk".into(),
        destination: store.clone(),
        layout: Layout::new("", None),
    };
    (store, target)
}

/// The names of instance `me`'s backups the catalog holds, newest first.
async fn names(config: &Config, tasks: &Tasks) -> Vec<String> {
    let (listed, _) = cached(config, tasks, "me").await.unwrap();
    listed
        .into_iter()
        .flat_map(|(_, entries)| entries)
        .map(|e| e.manifest.name)
        .collect()
}

#[tokio::test]
async fn the_background_refresh_brings_new_backups_in_while_in_use_until_cancelled() {
    let (dir, root, tasks) = fixture().await;
    let config = config_for(dir.path(), &root);
    let first = seed(&root, Utc::now() - chrono::Duration::hours(2)).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    // A request read the catalog: it is kept fresh for the next minute.
    tasks.note_catalog_read();
    let pace = Pace {
        every: Duration::from_millis(100),
        in_use_for: Duration::from_mins(1),
    };
    let job = tokio::spawn(refresh_on_schedule(
        Arc::new(RwLock::new(config.clone())),
        tasks.clone(),
        "me".into(),
        pace,
        cancel.clone(),
    ));
    let wait_for = |want: Vec<String>| {
        let (config, tasks) = (&config, &tasks);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let got = names(config, tasks).await;
                if got == want {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the catalog holds {got:?}, not {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The first refresh runs at once, the next ones on the interval, without another
    // request.
    wait_for(vec![first.clone()]).await;
    let second = seed(&root, Utc::now() - chrono::Duration::hours(1)).await;
    wait_for(vec![second.clone(), first.clone()]).await;
    let (_, refreshed_at) = cached(&config, &tasks, "me").await.unwrap();
    assert!(refreshed_at.is_some());

    // Cancelled, it stops, and a backup written since stays out of the catalog.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), job)
        .await
        .expect("the refresh stops when cancelled")
        .unwrap();
    seed(&root, Utc::now() - chrono::Duration::minutes(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(names(&config, &tasks).await, [second, first]);
}

/// Waits until `check` holds, for 20 s at most.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_idle_daemon_lists_nothing_until_a_request_and_stops_after_the_quiet_period() {
    let (dir, root, tasks) = fixture().await;
    let config = config_for(dir.path(), &root);
    let first = seed(&root, Utc::now() - chrono::Duration::hours(2)).await;
    let store = Arc::new(Counting::new(Arc::new(LocalDestination::new(&root))));
    let target = Arc::new(Target {
        name: "disk".into(),
        destination: store.clone(),
        layout: Layout::new("", None),
    });
    // What each refresh was asked to do, in order.
    let modes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let refresh = {
        let (tasks, modes) = (tasks.clone(), modes.clone());
        move |mode: Mode| {
            modes.lock().unwrap().push(mode);
            let (tasks, target) = (tasks.clone(), target.clone());
            Box::pin(async move {
                refresh_one(&tasks, &target, "me", mode, false, FULL_REFRESH_EVERY)
                    .await
                    .unwrap();
            }) as BoxFuture<'static, ()>
        }
    };
    let every = Duration::from_millis(20);
    let pace = Pace {
        every,
        in_use_for: Duration::from_millis(400),
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let job = tokio::spawn({
        let (tasks, cancel) = (tasks.clone(), cancel.clone());
        async move { keep_fresh(&tasks, pace, &cancel, refresh).await }
    });
    let checks = |modes: &std::sync::Mutex<Vec<Mode>>| modes.lock().unwrap().len();

    // Idle, the first check lists the destination whole (it never was), then nothing over
    // 25 checks more: no request read the catalog.
    eventually("the first full refresh", || store.lists() > 0).await;
    eventually("the first check ends", || tasks.try_refresh().is_some()).await;
    let full = store.lists();
    let before = checks(&modes);
    eventually("25 checks", || checks(&modes) >= before + 25).await;
    assert_eq!(store.lists(), full, "an idle daemon listed the store");
    assert!(
        modes.lock().unwrap().iter().all(|m| *m == Mode::FullIfDue),
        "{modes:?}"
    );
    assert_eq!(names(&config, &tasks).await, std::slice::from_ref(&first));

    // A backup written by another agent stays out until a request reads the catalog; then
    // the next check refreshes it incrementally, and the ones after go on.
    let second = seed(&root, Utc::now() - chrono::Duration::hours(1)).await;
    let before = checks(&modes);
    eventually("5 checks", || checks(&modes) >= before + 5).await;
    assert_eq!(store.lists(), full);
    tasks.note_catalog_read();
    let read_at = std::time::Instant::now();
    eventually("a refresh after the request", || store.lists() > full).await;
    eventually("a second refresh after the request", || {
        modes
            .lock()
            .unwrap()
            .iter()
            .filter(|m| **m == Mode::Auto)
            .count()
            >= 2
    })
    .await;
    assert_eq!(names(&config, &tasks).await, [second, first]);

    // Past the quiet period (and any refresh begun before it), nothing is listed again.
    eventually("the quiet period ends", || {
        read_at.elapsed() > pace.in_use_for + every
    })
    .await;
    eventually("the last refresh ends", || tasks.try_refresh().is_some()).await;
    let listed = store.lists();
    let before = checks(&modes);
    eventually("25 checks", || checks(&modes) >= before + 25).await;
    assert_eq!(
        store.lists(),
        listed,
        "the refresh went on after the quiet period"
    );
    assert!(
        modes.lock().unwrap()[before..]
            .iter()
            .all(|m| *m == Mode::FullIfDue)
    );

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), job)
        .await
        .expect("the loop stops when cancelled")
        .unwrap();
}

#[tokio::test]
async fn a_full_refresh_if_due_lists_only_when_the_last_full_one_is_old() {
    let (_dir, root, tasks) = fixture().await;
    seed(&root, Utc::now() - chrono::Duration::hours(2)).await;
    let (store, target) = counted(&root);
    let hour = Duration::from_hours(1);
    // Never refreshed: whole.
    refresh_one(&tasks, &target, "me", Mode::FullIfDue, false, hour)
        .await
        .unwrap();
    let full = store.lists();
    assert!(full > 0);
    // Refreshed whole a moment ago: nothing, whatever the other refreshes did.
    refresh_one(&tasks, &target, "me", Mode::Auto, false, hour)
        .await
        .unwrap();
    let after_auto = store.lists();
    assert!(after_auto > full);
    refresh_one(&tasks, &target, "me", Mode::FullIfDue, false, hour)
        .await
        .unwrap();
    assert_eq!(store.lists(), after_auto);
    // Due (a zero period): whole again, recorded as full.
    refresh_one(
        &tasks,
        &target,
        "me",
        Mode::FullIfDue,
        false,
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert!(store.lists() > after_auto);
    let key = key_of(&target);
    let last = tasks
        .catalog(move |s| s.catalog_refreshes(&key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.full_at, Some(last.refreshed_at));
}

#[tokio::test]
async fn another_instances_backup_named_is_found_by_reading_its_manifest_alone() {
    let (_dir, root, tasks) = fixture().await;
    let local = LocalDestination::new(&root);
    let layout = Layout::new("", None);
    let start = Utc::now() - chrono::Duration::days(3);
    let mut wanted = None;
    for i in 0..40 {
        let time = start + chrono::Duration::minutes(i);
        let manifest = planted::manifest(&format!("other-{i:02}"), time);
        let key = planted::put(&local, &layout, time.date_naive(), &manifest).await;
        if i == 17 {
            wanted = Some((manifest.name, key));
        }
    }
    seed(&root, start).await;
    let (name, manifest_key) = wanted.unwrap();
    let (store, target) = counted(&root);
    refresh_one(&tasks, &target, "me", Mode::Auto, false, FULL_REFRESH_EVERY)
        .await
        .unwrap();
    assert_eq!(store.take_reads().len(), 1, "only this instance's manifest");

    let entry = named(&tasks, &target, &name).await.unwrap().expect("found");
    assert_eq!(entry.manifest.instance_id, "other-17");
    assert_eq!(entry.manifest_key, manifest_key);
    assert_eq!(entry.archive_size, 3);
    assert_eq!(
        store.take_reads(),
        [manifest_key],
        "its manifest alone is read"
    );
    // Recorded as read: found among the catalog's copies of that backup.
    let (key, wanted) = (key_of(&target), name.clone());
    let held = tasks
        .catalog(move |s| s.catalog_entry(&key, &wanted))
        .await
        .unwrap();
    assert_eq!(held, Some(entry));

    assert_eq!(
        named(&tasks, &target, "20990101T000000Z-nobody-0000abcd")
            .await
            .unwrap(),
        None
    );
    assert!(
        store.take_reads().is_empty(),
        "nothing read for a name not listed"
    );
}

#[tokio::test(start_paused = true)]
async fn the_daemons_pace_over_its_real_minutes_in_virtual_time() {
    // The daemon's own pace (20 s, 10 minutes in use), on tokio's paused clock: what each
    // check asks for, and when, over 25 minutes with one request at minute 5.
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::open(&dir.path().join("state")).await.unwrap();
    let start = tokio::time::Instant::now();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let refresh = {
        let asked = asked.clone();
        move |mode: Mode| {
            asked
                .lock()
                .unwrap()
                .push((start.elapsed().as_secs(), mode));
            Box::pin(async {}) as BoxFuture<'static, ()>
        }
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let job = tokio::spawn({
        let (tasks, cancel) = (tasks.clone(), cancel.clone());
        async move { keep_fresh(&tasks, Pace::DAEMON, &cancel, refresh).await }
    });
    tokio::time::sleep(Duration::from_mins(5) + Duration::from_secs(5)).await;
    tasks.note_catalog_read();
    tokio::time::sleep(Duration::from_mins(20) + Duration::from_secs(5)).await;
    cancel.cancel();
    job.await.unwrap();

    let asked = asked.lock().unwrap().clone();
    // A check every 20 s from the start: 0, 20, …, 1500.
    let times: Vec<u64> = asked.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, (0..=1500).step_by(20).collect::<Vec<_>>());
    // Incremental while a request read the catalog within 10 minutes (from 305 s to
    // 905 s: the checks at 320 … 900), otherwise only a full refresh if due.
    for (t, mode) in &asked {
        let want = if (320..=900).contains(t) {
            Mode::Auto
        } else {
            Mode::FullIfDue
        };
        assert_eq!(*mode, want, "at {t} s");
    }
}

#[tokio::test]
async fn a_manifest_naming_another_backups_archive_or_instance_is_never_that_backup() {
    // Attacker's review: a planted manifest whose `archive` is this instance's newest
    // archive made `restore NAME` restore that archive and the next prune delete it; one
    // whose `instance_id` is this instance's, under another instance's name, became this
    // instance's once `list --all-instances` read it.
    let (dir, root, tasks) = fixture().await;
    let local = LocalDestination::new(&root);
    let layout = Layout::new("", None);
    let time = Utc::now() - chrono::Duration::hours(3);
    let real = planted::manifest("me", time);
    planted::put(&local, &layout, time.date_naive(), &real).await;
    let mut redirect = planted::manifest("evil", time - chrono::Duration::hours(1));
    redirect.archive.clone_from(&real.archive);
    planted::put(&local, &layout, time.date_naive(), &redirect).await;
    let mut spoof = planted::manifest("evil", time + chrono::Duration::hours(1));
    spoof.instance_id = "me".into();
    planted::put(&local, &layout, time.date_naive(), &spoof).await;
    let (store, target) = counted(&root);

    // Read by name: neither is the backup its name says.
    refresh_one(&tasks, &target, "me", Mode::Auto, false, FULL_REFRESH_EVERY)
        .await
        .unwrap();
    for planted in [&redirect, &spoof] {
        assert_eq!(named(&tasks, &target, &planted.name).await.unwrap(), None);
        let (key, name) = (key_of(&target), planted.name.clone());
        let held = tasks
            .catalog(move |s| s.catalog_entry(&key, &name))
            .await
            .unwrap();
        assert_eq!(held, None, "{} recorded", planted.name);
    }
    // Read with every instance's: both damaged, and this instance's backups are its own.
    refresh_one(&tasks, &target, "me", Mode::Full, true, FULL_REFRESH_EVERY)
        .await
        .unwrap();
    assert_eq!(
        names(&config_for(dir.path(), &root), &tasks).await,
        std::slice::from_ref(&real.name)
    );
    let key = key_of(&target);
    let counts = tasks
        .catalog(move |s| s.catalog_counts(&key))
        .await
        .unwrap();
    assert_eq!((counts.sound, counts.damaged), (1, 2), "{counts:?}");
    drop(store);
}

#[tokio::test]
async fn a_manifest_the_store_failed_to_hand_over_is_read_again_by_the_next_refresh() {
    // Attacker's review: one failed read marked the backup damaged for good, so that
    // `restore` (latest) took the day before's without a word.
    let (dir, root, tasks) = fixture().await;
    let config = config_for(dir.path(), &root);
    let older = seed(&root, Utc::now() - chrono::Duration::days(1)).await;
    let (store, target) = counted(&root);
    refresh_one(&tasks, &target, "me", Mode::Auto, false, FULL_REFRESH_EVERY)
        .await
        .unwrap();
    let newest = seed(&root, Utc::now() - chrono::Duration::hours(1)).await;
    store.cut_reads_at(0);
    refresh_one(&tasks, &target, "me", Mode::Auto, false, FULL_REFRESH_EVERY)
        .await
        .unwrap();
    assert_eq!(names(&config, &tasks).await, std::slice::from_ref(&older));
    let key = key_of(&target);
    let counts = tasks
        .catalog(move |s| s.catalog_counts(&key))
        .await
        .unwrap();
    assert_eq!((counts.damaged, counts.unread), (0, 1), "{counts:?}");
    // The store answers again: the next refresh reads it.
    store.cut_reads_at(u64::MAX);
    refresh_one(&tasks, &target, "me", Mode::Auto, false, FULL_REFRESH_EVERY)
        .await
        .unwrap();
    assert_eq!(
        names(&config, &tasks).await,
        [newest.clone(), older.clone()]
    );
    // A full refresh reads them again; failing, it keeps what it read before.
    store.cut_reads_at(0);
    refresh_one(&tasks, &target, "me", Mode::Full, false, FULL_REFRESH_EVERY)
        .await
        .unwrap();
    assert_eq!(names(&config, &tasks).await, [newest, older]);
}

#[tokio::test]
async fn a_full_refresh_reads_damaged_manifests_and_this_instances_again() {
    // Attacker's review: a manifest read once was never read again, even by a full
    // refresh: repaired, it stayed damaged; rewritten, the catalog kept the old one.
    let (dir, root, tasks) = fixture().await;
    let config = config_for(dir.path(), &root);
    let local = LocalDestination::new(&root);
    let layout = Layout::new("", None);
    let time = Utc::now() - chrono::Duration::hours(2);
    let mut manifest = planted::manifest("me", time);
    let key = planted::put(&local, &layout, time.date_naive(), &manifest).await;
    std::fs::write(root.join(&key), b"{ not a manifest").unwrap();
    let (_store, target) = counted(&root);
    let refresh = |mode| refresh_one(&tasks, &target, "me", mode, false, FULL_REFRESH_EVERY);
    refresh(Mode::Full).await.unwrap();
    assert!(names(&config, &tasks).await.is_empty(), "damaged");
    // Repaired in the store: an incremental refresh leaves it damaged, a full one reads it.
    std::fs::write(root.join(&key), manifest.to_json()).unwrap();
    refresh(Mode::Auto).await.unwrap();
    assert!(names(&config, &tasks).await.is_empty());
    refresh(Mode::Full).await.unwrap();
    assert_eq!(
        names(&config, &tasks).await,
        std::slice::from_ref(&manifest.name)
    );
    // Rewritten (a lock set since): the next full refresh takes it as it is now.
    let until = Utc::now() + chrono::Duration::days(30);
    manifest.locked_until = Some(until);
    std::fs::write(root.join(&key), manifest.to_json()).unwrap();
    refresh(Mode::Full).await.unwrap();
    let (held, _) = cached(&config, &tasks, "me").await.unwrap();
    let locked: Vec<_> = held
        .iter()
        .flat_map(|(_, entries)| entries.iter().map(|e| e.manifest.locked_until))
        .collect();
    assert_eq!(locked, [Some(until)]);

    // Another instance's, rewritten: read again when a full refresh of every instance's is
    // asked for (`list --all-instances --refresh`).
    let mut other = planted::manifest("other", time);
    let other_key = planted::put(&local, &layout, time.date_naive(), &other).await;
    let everyone = || refresh_one(&tasks, &target, "me", Mode::Full, true, FULL_REFRESH_EVERY);
    everyone().await.unwrap();
    other.locked_until = Some(until);
    std::fs::write(root.join(&other_key), other.to_json()).unwrap();
    everyone().await.unwrap();
    let (key, name) = (key_of(&target), other.name.clone());
    let held = tasks
        .catalog(move |s| s.catalog_entry(&key, &name))
        .await
        .unwrap()
        .expect("held");
    assert_eq!(held.manifest.locked_until, Some(until));
}
