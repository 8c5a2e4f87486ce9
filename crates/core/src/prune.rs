//! Pruning one destination: the retention policy applied to the backups of one instance
//! (or of every instance), and the leftovers of interrupted work removed.
//!
//! A backup is deleted manifest first, archive second: once its manifest is gone it is
//! invisible, and an archive left without a manifest (a prune cut short) is removed by
//! the next prune, as is any archive without a manifest whose backup started more than
//! [`STALE_AFTER`] ago, and any incomplete upload started more than that ago.

use chrono::{DateTime, Duration, Utc};

use crate::catalog::{BackupEntry, read_entries};
use crate::destination::{Destination, IncompleteUpload, ObjectMeta};
use crate::error::{Error, Result};
use crate::layout::{ARCHIVE_EXTS, Layout, MANIFEST_EXT, is_backup_name, name_is_of_instance};
use crate::retention::{Candidate, Decision, Policy, plan, time_of_name};

/// How old leftovers (archives without a manifest, incomplete uploads) must be before a
/// prune removes them: older than any backup still being written.
pub const STALE_AFTER: Duration = Duration::days(1);

/// Whose backups a prune considers; the policy applies to each instance's backups apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Only those this instance made.
    Instance(String),
    /// Every instance's under the prefix.
    AllInstances,
}

impl Scope {
    fn owns_manifest(&self, entry: &BackupEntry) -> bool {
        match self {
            Self::Instance(id) => &entry.manifest.instance_id == id,
            Self::AllInstances => true,
        }
    }

    fn owns_name(&self, name: &str) -> bool {
        match self {
            Self::Instance(id) => name_is_of_instance(name, id),
            Self::AllInstances => true,
        }
    }
}

/// A backup and what the policy decided for it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The decision, with the rules that keep it.
    pub decision: Decision,
    /// The backup.
    pub entry: BackupEntry,
}

/// What a prune of one destination would do.
#[derive(Debug, Default)]
pub struct PrunePlan {
    /// Every backup in scope, newest first, kept or not.
    pub backups: Vec<Planned>,
    /// Archives without a manifest, to remove.
    pub orphans: Vec<ObjectMeta>,
    /// Incomplete uploads, to discard.
    pub incomplete: Vec<IncompleteUpload>,
    /// What could not be looked at (such as incomplete uploads without the right to list
    /// them); the rest of the plan stands.
    pub problems: Vec<Error>,
}

impl PrunePlan {
    /// The backups to delete, newest first.
    pub fn deletions(&self) -> impl Iterator<Item = &Planned> {
        self.backups.iter().filter(|p| !p.decision.keep())
    }
}

/// What a prune did.
#[derive(Debug, Default)]
pub struct PruneOutcome {
    /// The backups deleted (their manifests at least: they are gone for every reader).
    pub deleted: Vec<Planned>,
    /// Keys of the archives without manifest removed.
    pub orphans_removed: Vec<String>,
    /// Keys of the incomplete uploads discarded.
    pub incomplete_discarded: Vec<String>,
    /// What failed; the prune stops at the first failed deletion.
    pub problems: Vec<Error>,
}

/// Works out what pruning `layout` in `dest` under `policy` would do; changes nothing.
/// `now` dates leftovers only: backups are judged by the times in their names.
pub async fn plan_prune(
    dest: &dyn Destination,
    layout: &Layout,
    policy: &Policy,
    scope: &Scope,
    now: DateTime<Utc>,
) -> Result<PrunePlan> {
    let prefix = layout.prefix();
    let objects = dest.list(&prefix).await?;
    let entries: Vec<BackupEntry> = read_entries(dest, layout, &objects)
        .await?
        .into_iter()
        .filter(|e| scope.owns_manifest(e))
        .collect();
    // Each instance's backups are judged on their own, even with every instance in scope:
    // one agent's newest backup never pushes out another's.
    let mut by_instance: std::collections::BTreeMap<&str, Vec<Candidate>> = Default::default();
    for e in &entries {
        by_instance
            .entry(e.manifest.instance_id.as_str())
            .or_default()
            .push(Candidate {
                name: e.manifest.name.clone(),
                sound: e.is_sound(),
            });
    }
    let mut backups: Vec<Planned> = by_instance
        .values()
        .flat_map(|candidates| plan(policy, candidates))
        .filter_map(|decision| {
            let entry = entries.iter().find(|e| e.manifest.name == decision.name)?;
            Some(Planned {
                decision,
                entry: entry.clone(),
            })
        })
        .collect();
    backups.sort_by(|a, b| {
        (b.decision.time, &b.decision.name).cmp(&(a.decision.time, &a.decision.name))
    });

    let stale_before = now - STALE_AFTER;
    let keys: std::collections::HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let orphans = objects
        .iter()
        .filter(|o| {
            let Some(name) = layout.parse_archive_key(&o.key) else {
                return false;
            };
            let manifest = Layout::sibling(&o.key, &format!("{name}{MANIFEST_EXT}"));
            let started = time_of_name(&name).or(o.last_modified);
            !keys.contains(manifest.as_str())
                && scope.owns_name(&name)
                && started.is_some_and(|t| t < stale_before)
        })
        .cloned()
        .collect();

    let mut problems = Vec::new();
    let incomplete = match dest.list_incomplete(&prefix).await {
        Ok(found) => found
            .into_iter()
            .filter(|u| {
                // Stale by the store's clock and by the backup name's own time: a store that
                // misreports the start (moto's is a fixed date in 2010) must not make a
                // prune abort an upload still running beside it.
                backup_name_of(&u.key).is_some_and(|n| {
                    scope.owns_name(&n) && time_of_name(&n).is_none_or(|t| t < stale_before)
                }) && u.started.is_some_and(|t| t < stale_before)
            })
            .collect(),
        Err(e) => {
            problems.push(e.context("incomplete uploads were not cleaned"));
            Vec::new()
        }
    };
    Ok(PrunePlan {
        backups,
        orphans,
        incomplete,
        problems,
    })
}

/// The backup name of an archive or manifest key, whatever its directory.
fn backup_name_of(key: &str) -> Option<String> {
    let file = key.rsplit('/').next()?;
    let name = ARCHIVE_EXTS
        .iter()
        .chain([&MANIFEST_EXT])
        .find_map(|e| file.strip_suffix(e))?;
    is_backup_name(name).then(|| name.to_string())
}

/// Carries out `plan`: deletes each backup (manifest, then archive), then the leftovers.
/// Stops deleting backups at the first failure, which it reports.
pub async fn execute_prune(dest: &dyn Destination, plan: &PrunePlan) -> PruneOutcome {
    let mut out = PruneOutcome::default();
    for planned in plan.deletions() {
        let entry = &planned.entry;
        if let Err(e) = dest.delete(&entry.manifest_key).await {
            out.problems
                .push(e.context(format!("cannot delete backup {}", entry.manifest.name)));
            return out;
        }
        // From here the backup is gone for every reader; an archive left behind is an
        // orphan that the next prune removes.
        out.deleted.push(planned.clone());
        if let Err(e) = dest.delete(&entry.archive_key).await {
            out.problems.push(e.context(format!(
                "backup {}: its manifest is deleted, its archive not (the next prune removes it)",
                entry.manifest.name
            )));
            return out;
        }
    }
    for orphan in &plan.orphans {
        match dest.delete(&orphan.key).await {
            Ok(()) => out.orphans_removed.push(orphan.key.clone()),
            Err(e) => {
                out.problems
                    .push(e.context(format!("cannot remove {} (no manifest)", orphan.key)));
                return out;
            }
        }
    }
    for upload in &plan.incomplete {
        match dest.discard_incomplete(upload).await {
            Ok(()) => out.incomplete_discarded.push(upload.key.clone()),
            Err(e) => {
                out.problems.push(e.context(format!(
                    "cannot discard the incomplete upload of {}",
                    upload.key
                )));
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
