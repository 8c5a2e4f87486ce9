//! The daemon's background refresh of the catalogs.

use std::sync::RwLock;

use service_backup_core::destination::LocalDestination;
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
async fn the_background_refresh_brings_new_backups_in_until_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    std::fs::create_dir_all(&root).unwrap();
    let yaml = format!(
        "instance_id: me\nsource_folder: {0}/source\ncron_schedule: '0 3 * * *'\n\
         state_dir: {0}/state\ndestinations:\n- type: local\n  name: disk\n  config:\n    path: {1}\n",
        dir.path().display(),
        root.display()
    );
    let config = crate::config::parse(&yaml).unwrap();
    let tasks = Tasks::open(&dir.path().join("state")).await.unwrap();
    let first = seed(&root, Utc::now() - chrono::Duration::hours(2)).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let job = tokio::spawn(refresh_on_schedule(
        Arc::new(RwLock::new(config.clone())),
        tasks.clone(),
        "me".into(),
        Duration::from_millis(100),
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
    // The first refresh runs at once, the next ones on the interval, without a request.
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
