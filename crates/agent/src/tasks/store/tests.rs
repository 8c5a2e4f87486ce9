//! The task store's tests: the state machine, deletions, restores and discovered backups,
//! interrupted runs, a corrupt database.

use super::*;

#[test]
fn tasks_follow_the_state_machine_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = store.create(TaskKind::Backup, "manual").unwrap();
    assert_eq!(store.get(id).unwrap().unwrap().state, TaskState::Queued);
    store.start(id, "guid-1").unwrap();
    store.finish(id, Some("b1"), 10, 4, 1.5).unwrap();
    let err = store.start(id, "again").unwrap_err();
    assert!(
        err.to_string().contains("cannot go from done to running"),
        "{err}"
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(
        (task.state, task.backup_name.as_deref(), task.stored_bytes),
        (TaskState::Done, Some("b1"), Some(4))
    );
}

#[test]
fn a_pruned_backup_becomes_deleted_with_the_time_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = store.create(TaskKind::Backup, "schedule").unwrap();
    store.start(id, "g").unwrap();
    store.finish(id, Some("b1"), 10, 4, 1.0).unwrap();
    assert!(
        store
            .mark_deleted("b1", "retention {keep_last: 1}")
            .unwrap()
    );
    assert!(
        !store.mark_deleted("b1", "again").unwrap(),
        "only done tasks"
    );
    assert!(!store.mark_deleted("other", "x").unwrap());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(task.state, TaskState::Deleted);
    assert_eq!(task.reason.as_deref(), Some("retention {keep_last: 1}"));
    assert!(task.deleted_at.is_some());
}

#[test]
fn restores_and_discovered_backups_are_tasks_with_stable_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let made = store.create(TaskKind::Backup, "schedule").unwrap();
    store.start(made, "g").unwrap();
    store.finish(made, Some("b-made"), 1, 1, 0.1).unwrap();
    let t = Utc::now();
    let found = |name: &str| Discovered {
        name: name.to_string(),
        started_at: t,
        finished_at: t,
        size_in_bytes: 7,
        stored_bytes: 9,
    };
    assert_eq!(store.backup_id_for(&found("b-made")).unwrap(), made);
    // A backup whose manifest is found while its task still runs is that task's.
    let running = store.create(TaskKind::Backup, "api").unwrap();
    store.start(running, "g2").unwrap();
    store.name_backup(running, "b-running").unwrap();
    assert_eq!(store.backup_id_for(&found("b-running")).unwrap(), running);
    assert_eq!(
        store.get(running).unwrap().unwrap().state,
        TaskState::Running
    );
    let old = store.backup_id_for(&found("b-old")).unwrap();
    assert_ne!(old, made);
    assert_eq!(
        store.backup_id_for(&found("b-old")).unwrap(),
        old,
        "ids are stable"
    );
    let task = store.get(old).unwrap().unwrap();
    assert_eq!(
        (task.state, task.trigger.as_str()),
        (TaskState::Done, "discovered")
    );
    let r = store
        .create_restore("api", Some(old), "b-old", "/restore")
        .unwrap();
    let restore = store.get(r).unwrap().unwrap();
    assert_eq!(restore.kind, TaskKind::Restore);
    assert_eq!(restore.backup_task_id, Some(old));
    assert_eq!(restore.target.as_deref(), Some("/restore"));
    assert_eq!(store.list(TaskKind::Restore).unwrap().len(), 1);
}

#[test]
fn running_tasks_become_interrupted_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = store.create(TaskKind::Backup, "schedule").unwrap();
    store.start(id, "g").unwrap();
    let live = store.create(TaskKind::Backup, "api").unwrap();
    // The first two as if a process that died had left them.
    store
        .conn
        .execute(
            "UPDATE tasks SET owner = 'gone 1 1' WHERE id <> ?1",
            params![live],
        )
        .unwrap();
    let queued = store.create(TaskKind::Backup, "api").unwrap();
    store
        .conn
        .execute(
            "UPDATE tasks SET owner = NULL WHERE id = ?1",
            params![queued],
        )
        .unwrap();
    // Another process (`service-backup tasks`) opens the database meanwhile.
    let other = Store::open(dir.path()).unwrap();
    for (id, state) in [
        (id, TaskState::Failed),
        (queued, TaskState::Failed),
        (live, TaskState::Queued),
    ] {
        let task = other.get(id).unwrap().unwrap();
        assert_eq!(task.state, state, "task {id}");
    }
    assert_eq!(
        other.get(id).unwrap().unwrap().reason.as_deref(),
        Some("interrupted")
    );
}

#[test]
fn a_corrupt_database_is_an_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let junk = vec![0x5au8; 8192];
    std::fs::write(dir.path().join(DB_FILE), &junk).unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("a corrupt file is refused");
    assert!(err.to_string().contains("cannot be used"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join(DB_FILE)).unwrap(),
        junk,
        "the file was changed"
    );
}

#[test]
fn a_database_of_version_4_takes_drills_and_keeps_its_tasks_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);",
        )
        .unwrap();
        for (i, sql) in MIGRATIONS[..4].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![i64::try_from(i + 1).unwrap(), now()],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO tasks (id, kind, state, trigger, backup_name, created_at, updated_at, target)
             VALUES (7, 'restore', 'done', 'api', 'b7', ?1, ?1, '/restore')",
            params![now()],
        )
        .unwrap();
        let refused = conn.execute(
            "INSERT INTO tasks (kind, state, trigger, created_at, updated_at) VALUES ('drill', 'queued', 'schedule', ?1, ?1)",
            params![now()],
        );
        assert!(refused.is_err(), "version 4 knows no drills");
    }
    let store = Store::open(dir.path()).unwrap();
    let old = store.get(7).unwrap().unwrap();
    assert_eq!(
        (old.kind, old.backup_name.as_deref(), old.target.as_deref()),
        (TaskKind::Restore, Some("b7"), Some("/restore"))
    );
    let id = store.create(TaskKind::Drill, "schedule").unwrap();
    assert_eq!(id, 8, "ids go on from the highest");
    store.start(id, "guid").unwrap();
    store
        .fail(id, None, "destination disk: damaged", 1.0)
        .unwrap();
    let drills = store.list(TaskKind::Drill).unwrap();
    assert_eq!(drills.len(), 1);
    assert_eq!(
        drills[0].reason.as_deref(),
        Some("destination disk: damaged")
    );
}

#[test]
fn the_destinations_of_a_backup_are_recorded_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = store.create(TaskKind::Backup, "schedule").unwrap();
    store.start(id, "g").unwrap();
    store.fail(id, Some("b1"), "one failed", 1.0).unwrap();
    let before = store.get(id).unwrap().unwrap();
    assert_eq!(
        (before.stored_destinations, before.failed_destinations),
        (None, None)
    );
    assert!(before.finished_at.is_some());
    store
        .record_destinations(id, &["a".into()], &["b".into(), "c".into()])
        .unwrap();
    drop(store);
    let task = Store::open(dir.path()).unwrap().get(id).unwrap().unwrap();
    assert_eq!(task.stored_destinations, Some(vec!["a".to_string()]));
    assert_eq!(
        task.failed_destinations,
        Some(vec!["b".to_string(), "c".to_string()])
    );
}

#[test]
fn openers_of_a_new_database_at_once_migrate_it_once() {
    // The daemon and a command (or two commands) opening a fresh state_dir together: each
    // must wait for the other's migrations rather than run them again and fail.
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Store::open(&path).map(|_| ()))
            })
            .collect();
        for opener in openers {
            opener.join().unwrap().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let versions: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(versions, i64::try_from(MIGRATIONS.len()).unwrap());
    }
}

/// A backup of `instance` started on 2 January 2026 at `hour`, as a catalog holds it:
/// finished 5 minutes later, of 100 + `hour` bytes.
fn planted_entry(instance: &str, hour: u32) -> service_backup_core::catalog::BackupEntry {
    use chrono::TimeZone as _;
    let at = Utc.with_ymd_and_hms(2026, 1, 2, hour, 0, 0).unwrap();
    let mut manifest = service_backup_core::manifest::planted::manifest(instance, at);
    manifest.finished_at = at + chrono::Duration::minutes(5);
    manifest.plain_bytes = 100 + u64::from(hour);
    let name = manifest.name.clone();
    service_backup_core::catalog::BackupEntry {
        manifest,
        manifest_key: format!("2026/01/02/{name}.json"),
        archive_key: format!("2026/01/02/{name}.tar.gz"),
        archive_size: 3,
    }
}

#[test]
fn backups_in_the_catalog_become_discovered_tasks_once_oldest_first() {
    use chrono::TimeZone as _;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = planted_entry;
    // One backup made here, others found in two destinations (one in both), and another
    // instance's, which is not this one's to list.
    let made = entry("me", 4);
    let id = store.create(TaskKind::Backup, "manual").unwrap();
    store.start(id, "guid").unwrap();
    store
        .finish(id, Some(&made.manifest.name), 1, 3, 1.0)
        .unwrap();
    for e in [
        entry("me", 5),
        made.clone(),
        entry("me", 3),
        entry("other", 1),
    ] {
        store.catalog_add("a", &e).unwrap();
    }
    store.catalog_add("b", &entry("me", 3)).unwrap();
    store.catalog_add("b", &entry("me", 2)).unwrap();
    let keys = ["a".to_string(), "b".to_string()];

    // Never refreshed: no time to show.
    assert_eq!(store.catalog_discover(&keys, "me").unwrap(), None);
    let tasks = store.list(TaskKind::Backup).unwrap();
    let names: Vec<(&str, &str)> = tasks
        .iter()
        .map(|t| (t.trigger.as_str(), t.backup_name.as_deref().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("manual", made.manifest.name.as_str()),
            ("discovered", entry("me", 2).manifest.name.as_str()),
            ("discovered", entry("me", 3).manifest.name.as_str()),
            ("discovered", entry("me", 5).manifest.name.as_str()),
        ]
    );
    let found = &tasks[3];
    assert_eq!(found.state, TaskState::Done);
    assert_eq!(found.size_in_bytes, Some(105));
    assert_eq!(found.stored_bytes, Some(3));
    assert_eq!(found.started_at, Some(entry("me", 5).manifest.started_at));
    assert_eq!(found.finished_at, Some(entry("me", 5).manifest.finished_at));
    assert_eq!(found.created_at, entry("me", 5).manifest.started_at);

    // Again: nothing new is recorded, and the ids stay.
    store.catalog_discover(&keys, "me").unwrap();
    assert_eq!(store.list(TaskKind::Backup).unwrap(), tasks);
    // Once both catalogs were refreshed, the older time is the answer.
    let at = |h| Utc.with_ymd_and_hms(2026, 1, 3, h, 0, 0).unwrap();
    store.catalog_finish("a", None, 1, at(5)).unwrap();
    assert_eq!(store.catalog_discover(&keys, "me").unwrap(), None);
    store.catalog_finish("b", None, 2, at(4)).unwrap();
    assert_eq!(store.catalog_discover(&keys, "me").unwrap(), Some(at(4)));
}

#[test]
fn the_catalogs_of_several_destinations_are_read_row_by_row_newest_first_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = planted_entry;
    for (dest, instance, hour) in [
        ("b", "me", 3),
        ("a", "me", 5),
        ("a", "me", 3),
        ("a", "other", 4),
        ("b", "me", 1),
        ("c", "me", 9),
    ] {
        store.catalog_add(dest, &entry(instance, hour)).unwrap();
    }
    let rows = |instance: Option<&str>| {
        let mut seen = Vec::new();
        // The order asked for is the order of a backup held by several (b before a).
        store
            .catalog_each(&["b".to_string(), "a".to_string()], instance, |i, e| {
                seen.push((
                    i,
                    e.manifest.started_at.format("%H").to_string(),
                    e.manifest.instance_id,
                ));
                true
            })
            .unwrap();
        seen
    };
    let own = |i: usize, h: &str| (i, h.to_string(), "me".to_string());
    assert_eq!(
        rows(Some("me")),
        [own(1, "05"), own(0, "03"), own(1, "03"), own(0, "01")]
    );
    assert_eq!(
        rows(None),
        [
            own(1, "05"),
            (1, "04".to_string(), "other".to_string()),
            own(0, "03"),
            own(1, "03"),
            own(0, "01")
        ]
    );
    store
        .catalog_each(&[], None, |_, _| panic!("no destination, no row"))
        .unwrap();
    let mut n = 0;
    store
        .catalog_each(&["a".to_string()], None, |_, _| {
            n += 1;
            false
        })
        .unwrap();
    assert_eq!(n, 1, "the rows stop when asked");
}
