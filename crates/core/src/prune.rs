//! Pruning one destination: the retention policy applied to the backups of one instance
//! (or of every instance), and the leftovers of interrupted work removed.
//!
//! A backup is deleted manifest first, archive second: once its manifest is gone it is
//! invisible, and an archive left without a manifest (a prune cut short) is removed by
//! the next prune, as is any archive without a manifest whose backup started more than
//! [`STALE_AFTER`] ago, and any incomplete upload started more than that ago.
//!
//! Only backups a prune can trust are counted or deleted (see [`TrustRules`]): someone who
//! can only add objects under the prefix must not be able to push the real backups out
//! with planted manifests. The others are listed as ignored, and left alone.

use chrono::{DateTime, Duration, Utc};

use crate::catalog::{
    Authenticity, BackupEntry, archives_without_manifest, authenticate, read_entries,
};
use crate::destination::{Destination, IncompleteUpload, ObjectMeta};
use crate::error::{Error, Result};
use crate::format::Keyring;
use crate::layout::{ARCHIVE_EXTS, Layout, MANIFEST_EXT, is_backup_name, name_is_of_instance};
use crate::retention::{Candidate, Decision, Policy, Rule, plan, time_of_name};

/// How old leftovers (archives without a manifest, incomplete uploads) must be before a
/// prune removes them: older than any backup still being written.
pub const STALE_AFTER: Duration = Duration::days(1);

/// How far in the future a backup may be dated before a prune distrusts it: clocks of
/// machines that share a destination differ by less.
pub const MAX_CLOCK_SKEW: Duration = Duration::hours(1);

/// What a prune trusts a backup by. A backup is trusted when it is dated no later than
/// `now` + [`MAX_CLOCK_SKEW`], and its archive's header, authenticated by a key of
/// `keyring`, binds it to the backup its manifest names. A plain archive, or one of the
/// format before context stanzas, has no binding: it is trusted by its date alone, unless
/// it is dated after a bound backup of the same instance (every backup since is bound, so
/// an unbound one after them was planted).
#[derive(Debug, Clone, Default)]
pub struct TrustRules {
    /// The keys that open archive headers; `None`: only plain archives can be trusted.
    pub keyring: Option<Keyring>,
    /// The name of the newest backup this agent itself recorded as complete: it is never
    /// deleted, whatever the destination holds beside it.
    pub newest_recorded: Option<String>,
}

/// A backup a prune does not trust: neither counted by the policy nor deleted.
#[derive(Debug, Clone)]
pub struct Ignored {
    /// The backup.
    pub entry: BackupEntry,
    /// Why it is not trusted.
    pub why: String,
}

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
    /// Until when its manifest says the store keeps it locked, if still in the future:
    /// then it is kept ([`Rule::Locked`]) without a delete being tried.
    pub locked_until: Option<DateTime<Utc>>,
}

/// An object a prune meant to delete and the store kept because it is locked: reported as
/// kept, never as a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptLocked {
    /// The backup's name, or the key of an archive without manifest.
    pub name: String,
    /// The object the store refused to delete.
    pub key: String,
    /// When the lock ends, if the store said.
    pub until: Option<DateTime<Utc>>,
}

/// What a prune of one destination would do.
#[derive(Debug, Default)]
pub struct PrunePlan {
    /// Every trusted backup in scope, newest first, kept or not.
    pub backups: Vec<Planned>,
    /// Backups in scope that are not trusted, newest first: left alone.
    pub ignored: Vec<Ignored>,
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
    /// What the store refused to delete because it is locked; the prune goes on.
    pub kept_locked: Vec<KeptLocked>,
    /// What failed; the prune stops at the first failed deletion.
    pub problems: Vec<Error>,
}

impl PruneOutcome {
    /// Whether the store kept backup `name` because it is locked, and until when if known.
    pub fn locked(&self, name: &str) -> Option<Option<DateTime<Utc>>> {
        self.kept_locked
            .iter()
            .find(|k| k.name == name)
            .map(|k| k.until)
    }
}

/// Works out what pruning `layout` in `dest` under `policy` would do; changes nothing.
/// `now` dates leftovers and bounds how far in the future a backup may be dated; backups
/// are otherwise judged by the times in their names. Only backups `trust` trusts are
/// counted or deleted; the header of each archive in scope is read (not the archive).
/// This lists the prefix whole and reads every manifest under it; an agent with a catalog
/// plans with [`plan_prune_of`] instead.
pub async fn plan_prune(
    dest: &dyn Destination,
    layout: &Layout,
    policy: &Policy,
    scope: &Scope,
    now: DateTime<Utc>,
    trust: &TrustRules,
) -> Result<PrunePlan> {
    let objects = dest.list(&layout.prefix()).await?;
    let entries = read_entries(dest, layout, &objects).await?;
    let leftovers = archives_without_manifest(layout, &objects);
    drop(objects);
    plan_prune_of(
        dest,
        layout,
        policy,
        scope,
        now,
        trust,
        entries,
        Some(leftovers),
    )
    .await
}

/// Works out what pruning would do from `entries`, the backups known under `layout` (newest
/// first, such as a catalog's), without listing the store; changes nothing. `leftovers` is
/// what a listing of the whole prefix found of archives without a manifest
/// ([`archives_without_manifest`]): with it, the stale ones in scope are removed and
/// incomplete uploads are looked for; without it (no listing was made), neither is.
#[allow(clippy::too_many_arguments)]
pub async fn plan_prune_of(
    dest: &dyn Destination,
    layout: &Layout,
    policy: &Policy,
    scope: &Scope,
    now: DateTime<Utc>,
    trust: &TrustRules,
    entries: Vec<BackupEntry>,
    leftovers: Option<Vec<ObjectMeta>>,
) -> Result<PrunePlan> {
    let prefix = layout.prefix();
    let in_scope: Vec<BackupEntry> = entries
        .into_iter()
        .filter(|e| scope.owns_manifest(e))
        .collect();
    let (entries, ignored) = sort_trusted(dest, in_scope, now, trust).await;
    // Each instance's backups are judged on their own, even with every instance in scope:
    // one agent's newest backup never pushes out another's.
    let mut by_instance = std::collections::BTreeMap::<&str, Vec<Candidate>>::new();
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
        .filter_map(|mut decision| {
            let entry = entries.iter().find(|e| e.manifest.name == decision.name)?;
            if trust.newest_recorded.as_ref() == Some(&decision.name) {
                decision.kept_by.push(Rule::Recorded);
                decision.kept_by.sort();
            }
            let locked_until = entry.manifest.locked_until.filter(|until| *until > now);
            if locked_until.is_some() && !decision.keep() {
                decision.kept_by.push(Rule::Locked);
            }
            Some(Planned {
                decision,
                entry: entry.clone(),
                locked_until,
            })
        })
        .collect();
    backups.sort_by(|a, b| {
        (b.decision.time, &b.decision.name).cmp(&(a.decision.time, &a.decision.name))
    });

    let Some(leftovers) = leftovers else {
        return Ok(PrunePlan {
            backups,
            ignored,
            ..PrunePlan::default()
        });
    };
    let stale_before = now - STALE_AFTER;
    let orphans = leftovers
        .into_iter()
        .filter(|o| {
            let Some(name) = layout.parse_archive_key(&o.key) else {
                return false;
            };
            let started = time_of_name(&name).or(o.last_modified);
            scope.owns_name(&name) && started.is_some_and(|t| t < stale_before)
        })
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
        ignored,
        orphans,
        incomplete,
        problems,
    })
}

/// Splits `entries` (newest first) into the backups `trust` trusts and the others, with
/// why; both stay newest first.
async fn sort_trusted(
    dest: &dyn Destination,
    entries: Vec<BackupEntry>,
    now: DateTime<Utc>,
    trust: &TrustRules,
) -> (Vec<BackupEntry>, Vec<Ignored>) {
    let latest = now + MAX_CLOCK_SKEW;
    let mut judged = Vec::with_capacity(entries.len());
    for entry in entries {
        let m = &entry.manifest;
        let dated = time_of_name(&m.name).map_or(m.started_at, |t| t.max(m.started_at));
        let verdict = if dated > latest {
            Err(format!(
                "it is dated {}, more than {} hour(s) after this machine's clock ({})",
                dated.to_rfc3339(),
                MAX_CLOCK_SKEW.num_hours(),
                now.to_rfc3339()
            ))
        } else {
            authenticate(dest, &entry, trust.keyring.as_ref())
                .await
                .map_err(|e| format!("its archive cannot be trusted: {e}"))
        };
        judged.push((entry, verdict));
    }
    // Oldest bound backup of each instance: this version binds every backup it writes, so
    // an unbound one dated after it did not come from it.
    let mut first_bound = std::collections::HashMap::<String, DateTime<Utc>>::new();
    for (entry, verdict) in &judged {
        if matches!(verdict, Ok(Authenticity::Bound | Authenticity::Addressed)) {
            let m = &entry.manifest;
            let at = first_bound
                .entry(m.instance_id.clone())
                .or_insert(m.started_at);
            *at = (*at).min(m.started_at);
        }
    }
    let mut trusted = Vec::new();
    let mut ignored = Vec::new();
    for (entry, verdict) in judged {
        let bound_since = first_bound.get(&entry.manifest.instance_id).copied();
        let why = match verdict {
            Ok(Authenticity::Bound | Authenticity::Addressed) => None,
            Ok(kind @ (Authenticity::Unbound | Authenticity::Plain)) => bound_since
                .filter(|since| entry.manifest.started_at > *since)
                .map(|since| {
                    let what = if kind == Authenticity::Plain {
                        "a plain archive"
                    } else {
                        "an archive whose header binds no backup"
                    };
                    format!(
                        "it is {what}, yet dated after backups of its instance whose archives are bound to them (since {})",
                        since.to_rfc3339()
                    )
                }),
            Err(why) => Some(why),
        };
        // A copy of a real backup's objects under another day's folder is bound to the
        // same backup and passes every check: counted twice, it would push out another.
        let twin = trusted
            .iter()
            .find(|t: &&BackupEntry| t.manifest.name == entry.manifest.name)
            .map(|t| t.manifest_key.clone());
        let why = why.or_else(|| {
            twin.map(|key| format!("another manifest, {key}, has the same backup name"))
        });
        match why {
            None => trusted.push(entry),
            Some(why) => ignored.push(Ignored { entry, why }),
        }
    }
    (trusted, ignored)
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
/// Stops deleting backups at the first failure, which it reports; an object the store
/// keeps because it is locked is no failure: it is reported in `kept_locked`, and the
/// prune goes on.
pub async fn execute_prune(dest: &dyn Destination, plan: &PrunePlan) -> PruneOutcome {
    let mut out = PruneOutcome::default();
    for planned in plan.deletions() {
        let entry = &planned.entry;
        let name = &entry.manifest.name;
        match dest.delete(&entry.manifest_key).await {
            Ok(()) => {}
            Err(e) => {
                if let Some(until) = e.locked_until() {
                    out.kept_locked.push(KeptLocked {
                        name: name.clone(),
                        key: entry.manifest_key.clone(),
                        until,
                    });
                    continue;
                }
                out.problems
                    .push(e.context(format!("cannot delete backup {name}")));
                return out;
            }
        }
        // From here the backup is gone for every reader; an archive left behind is an
        // orphan that the next prune removes.
        out.deleted.push(planned.clone());
        if let Err(e) = dest.delete(&entry.archive_key).await {
            if let Some(until) = e.locked_until() {
                // Its lock ends before the manifest's as a rule (written first); an
                // archive still locked is an orphan for a later prune.
                out.kept_locked.push(KeptLocked {
                    name: entry.archive_key.clone(),
                    key: entry.archive_key.clone(),
                    until,
                });
                continue;
            }
            out.problems.push(e.context(format!(
                "backup {name}: its manifest is deleted, its archive not (the next prune removes it)"
            )));
            return out;
        }
    }
    for orphan in &plan.orphans {
        match dest.delete(&orphan.key).await {
            Ok(()) => out.orphans_removed.push(orphan.key.clone()),
            Err(e) if e.locked_until().is_some() => out.kept_locked.push(KeptLocked {
                name: orphan.key.clone(),
                key: orphan.key.clone(),
                until: e.locked_until().flatten(),
            }),
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
