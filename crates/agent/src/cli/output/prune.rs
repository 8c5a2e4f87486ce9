//! One destination of `prune --json`: what it keeps and why, and what it deletes.

use serde::Serialize;
use service_backup_core::prune::{PruneOutcome, PrunePlan};

use super::{reasons, utc};

/// One destination of `prune --json`.
#[derive(Debug, Default, Serialize)]
pub struct PruneDestination {
    /// The destination's name.
    pub name: String,
    /// The retention policy in force (`null`: none, nothing is deleted).
    pub retention: Option<String>,
    /// Each backup counted by the policy, newest first.
    pub backups: Vec<PrunedBackup>,
    /// Backups the policy neither counts nor deletes, and why.
    pub ignored: Vec<IgnoredBackup>,
    /// Archives without a manifest and leftovers of interrupted uploads.
    pub leftovers: Vec<PrunedLeftover>,
    /// How many backups were deleted (0 on a dry run).
    pub deleted: usize,
    /// What failed here, one entry per problem.
    pub problems: Vec<String>,
}

/// One backup of [`PruneDestination`].
#[derive(Debug, Serialize)]
pub struct PrunedBackup {
    /// The backup's name.
    pub name: String,
    /// The instance that made it.
    pub instance_id: String,
    /// `keep`, `delete` (done, or would be on a dry run), or `locked` (the store refused
    /// the delete).
    pub action: &'static str,
    /// Why it is kept: the retention rules (`keep_last`…) or `locked until T`.
    pub reasons: Vec<String>,
}

/// One leftover object of [`PruneDestination`].
#[derive(Debug, Serialize)]
pub struct PrunedLeftover {
    /// The object's key.
    pub key: String,
    /// `archive_without_manifest` or `incomplete_upload`.
    pub kind: &'static str,
    /// `delete` or `locked`.
    pub action: &'static str,
}

/// One ignored backup of [`PruneDestination`].
#[derive(Debug, Serialize)]
pub struct IgnoredBackup {
    /// The backup's name.
    pub name: String,
    /// Why the policy does not count it.
    pub why: String,
}

impl PruneDestination {
    /// The destination `name` pruned by `plan`, with `outcome` unless it was a dry run.
    pub fn new(
        name: &str,
        retention: Option<String>,
        plan: &PrunePlan,
        outcome: Option<&PruneOutcome>,
    ) -> Self {
        let locked_by_store = |key: &str| outcome.and_then(|o| o.locked(key));
        let backups = plan
            .backups
            .iter()
            .map(|p| {
                let m = &p.entry.manifest;
                let (action, reasons) = if p.decision.keep() {
                    ("keep", reasons(&p.decision.kept_by, p.locked_until))
                } else if let Some(until) = locked_by_store(&m.name) {
                    let why = until.map_or_else(
                        || "locked".to_string(),
                        |t| format!("locked until {}", utc(t)),
                    );
                    ("locked", vec![why])
                } else {
                    ("delete", Vec::new())
                };
                PrunedBackup {
                    name: m.name.clone(),
                    instance_id: m.instance_id.clone(),
                    action,
                    reasons,
                }
            })
            .collect();
        let ignored = plan
            .ignored
            .iter()
            .map(|i| IgnoredBackup {
                name: i.entry.manifest.name.clone(),
                why: i.why.clone(),
            })
            .collect();
        let orphans = plan.orphans.iter().map(|o| PrunedLeftover {
            key: o.key.clone(),
            kind: "archive_without_manifest",
            action: if locked_by_store(&o.key).is_some() {
                "locked"
            } else {
                "delete"
            },
        });
        let incomplete = plan.incomplete.iter().map(|u| PrunedLeftover {
            key: u.key.clone(),
            kind: "incomplete_upload",
            action: "delete",
        });
        let mut problems: Vec<String> = plan.problems.iter().map(ToString::to_string).collect();
        if let Some(o) = outcome {
            problems.extend(o.problems.iter().map(ToString::to_string));
        }
        Self {
            name: name.to_string(),
            retention,
            backups,
            ignored,
            leftovers: orphans.chain(incomplete).collect(),
            deleted: outcome.map_or(0, |o| o.deleted.len()),
            problems,
        }
    }
}
