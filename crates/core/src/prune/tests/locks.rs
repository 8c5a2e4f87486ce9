//! Locked backups (immutability): kept, reported with their date, never a failure.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::destination::{ObjectStream, Upload};

/// A local destination whose store refuses to delete the keys of `locked`, as S3 Object
/// Lock does, and counts the deletes tried.
#[derive(Debug)]
struct LockingStore {
    inner: LocalDestination,
    locked: HashMap<String, Option<DateTime<Utc>>>,
    tried: Mutex<Vec<String>>,
}

#[async_trait]
impl Destination for LockingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.inner.put_multipart(key).await
    }
    async fn get(&self, key: &str) -> Result<ObjectStream> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.tried.lock().unwrap().push(key.to_string());
        match self.locked.get(key) {
            Some(until) => Err(Error::locked(format!("{key} is locked"), *until)),
            None => self.inner.delete(key).await,
        }
    }
    async fn list_incomplete(&self, prefix: &str) -> Result<Vec<IncompleteUpload>> {
        self.inner.list_incomplete(prefix).await
    }
    async fn discard_incomplete(&self, upload: &IncompleteUpload) -> Result<()> {
        self.inner.discard_incomplete(upload).await
    }
}

fn keep_one() -> Policy {
    Policy {
        keep_last: Some(1),
        ..Policy::default()
    }
}

#[tokio::test]
async fn a_backup_the_store_refuses_to_delete_is_kept_and_the_prune_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let mut seeded = Vec::new();
    for d in 1..=3 {
        seeded.push(seed(&local, &layout, at(d, 3), "a", 10, 10).await);
    }
    // The oldest's manifest is locked (its manifest records no date: an older agent, or a
    // bucket's default retention), the middle one is not.
    let until = at(25, 0);
    let store = LockingStore {
        inner: local,
        locked: HashMap::from([(seeded[0].manifest_key.clone(), Some(until))]),
        tried: Mutex::default(),
    };
    let scope = Scope::Instance("a".into());
    let plan = plan_prune(
        &store,
        &layout,
        &keep_one(),
        &scope,
        at(20, 0),
        &TrustRules::default(),
    )
    .await
    .unwrap();
    assert_eq!(plan.deletions().count(), 2);
    let outcome = execute_prune(&store, &plan).await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(
        outcome.kept_locked,
        [KeptLocked {
            name: seeded[0].manifest.name.clone(),
            key: seeded[0].manifest_key.clone(),
            until: Some(until),
        }]
    );
    assert_eq!(outcome.locked(&seeded[0].manifest.name), Some(Some(until)));
    assert_eq!(outcome.deleted.len(), 1, "the unlocked one is deleted");
    assert_eq!(
        outcome.deleted[0].entry.manifest.name,
        seeded[1].manifest.name
    );
    let left = keys(&store.inner).await;
    assert!(left.contains(&seeded[0].manifest_key) && left.contains(&seeded[0].archive_key));
    assert!(!left.contains(&seeded[1].manifest_key) && !left.contains(&seeded[1].archive_key));
}

#[tokio::test]
async fn a_backup_whose_manifest_records_a_lock_is_kept_without_a_delete_tried() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let mut seeded = Vec::new();
    for d in 1..=3 {
        seeded.push(seed(&local, &layout, at(d, 3), "a", 10, 10).await);
    }
    let now = at(20, 0);
    // The oldest locked until after `now`, the middle one until before it.
    for (entry, until) in seeded.iter_mut().zip([at(21, 0), at(19, 0)]) {
        entry.manifest.locked_until = Some(until);
        local
            .put(&entry.manifest_key, Bytes::from(entry.manifest.to_json()))
            .await
            .unwrap();
    }
    let store = LockingStore {
        inner: local,
        locked: HashMap::new(),
        tried: Mutex::default(),
    };
    let scope = Scope::Instance("a".into());
    let plan = plan_prune(
        &store,
        &layout,
        &keep_one(),
        &scope,
        now,
        &TrustRules::default(),
    )
    .await
    .unwrap();
    let oldest = plan
        .backups
        .iter()
        .find(|p| p.entry.manifest.name == seeded[0].manifest.name)
        .unwrap();
    assert_eq!(oldest.decision.kept_by, [Rule::Locked]);
    assert_eq!(oldest.decision.reasons(), "locked");
    assert_eq!(oldest.locked_until, Some(at(21, 0)));
    let middle = plan
        .backups
        .iter()
        .find(|p| p.entry.manifest.name == seeded[1].manifest.name)
        .unwrap();
    assert!(!middle.decision.keep(), "its lock has ended");
    assert_eq!(middle.locked_until, None);

    let outcome = execute_prune(&store, &plan).await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(outcome.deleted.len(), 1);
    let tried = store.tried.lock().unwrap().clone();
    assert!(
        !tried.contains(&seeded[0].manifest_key) && !tried.contains(&seeded[0].archive_key),
        "no delete of a backup still locked is tried: {tried:?}"
    );
}

#[tokio::test]
async fn a_locked_archive_without_manifest_is_kept_too() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalDestination::new(dir.path());
    let layout = Layout::new("p", None);
    let entry = seed(&local, &layout, at(1, 3), "a", 10, 10).await;
    local.delete(&entry.manifest_key).await.unwrap();
    let store = LockingStore {
        inner: local,
        locked: HashMap::from([(entry.archive_key.clone(), None)]),
        tried: Mutex::default(),
    };
    let scope = Scope::Instance("a".into());
    let plan = plan_prune(
        &store,
        &layout,
        &keep_one(),
        &scope,
        at(20, 0),
        &TrustRules::default(),
    )
    .await
    .unwrap();
    assert_eq!(plan.orphans.len(), 1);
    let outcome = execute_prune(&store, &plan).await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert!(outcome.orphans_removed.is_empty());
    assert_eq!(outcome.kept_locked[0].key, entry.archive_key);
    assert_eq!(outcome.kept_locked[0].until, None);
}
