//! Pruning the configured destinations: after a successful backup, and by hand with
//! `service-backup prune`. Logs each deletion; marks the tasks of deleted backups.
//! Backups a prune does not trust (planted manifests) are logged as errors and left alone.

use chrono::Utc;
use service_backup_core::format::Keyring;
use service_backup_core::prune::{
    PruneOutcome, PrunePlan, Scope, TrustRules, execute_prune, plan_prune,
};
use service_backup_core::retention::Policy;
use service_backup_core::task::TaskState;
use service_backup_core::{Error, Result};

use crate::destinations::Target;
use crate::tasks::Tasks;
use crate::tasks::store::TaskKind;

/// What a prune trusts: the configured keys, and the newest backup that this agent's own
/// task database records as made and complete (not one merely found in a destination).
pub async fn trust_rules(keyring: Option<Keyring>, tasks: Option<&Tasks>) -> TrustRules {
    let newest_recorded = match tasks {
        Some(tasks) => match tasks.list(TaskKind::Backup).await {
            Ok(list) => list
                .into_iter()
                .rev()
                .filter(|t| t.state == TaskState::Done && t.trigger != "discovered")
                .find_map(|t| t.backup_name),
            Err(e) => {
                tracing::error!(error = %e, "The task database cannot be read; the prune does not know the newest backup this agent made");
                None
            }
        },
        None => None,
    };
    TrustRules {
        keyring,
        newest_recorded,
    }
}

/// Plans the prune of `dest` and, unless `dry_run`, carries it out; the outcome is `None`
/// for a dry run. Deleted backups' tasks in `tasks` become `deleted`.
pub async fn prune(
    dest: &Target,
    policy: &Policy,
    scope: &Scope,
    dry_run: bool,
    tasks: Option<&Tasks>,
    trust: &TrustRules,
) -> Result<(PrunePlan, Option<PruneOutcome>)> {
    let plan = plan_prune(
        &*dest.destination,
        &dest.layout,
        policy,
        scope,
        Utc::now(),
        trust,
    )
    .await
    .map_err(|e| e.context(format!("prune of destination {}", dest.name)))?;
    for ignored in &plan.ignored {
        tracing::error!(
            destination_name = %dest.name,
            backup_name = %ignored.entry.manifest.name,
            manifest = %ignored.entry.manifest_key,
            reason = %ignored.why,
            "Backup ignored by retention: it is neither counted nor deleted; if nobody made it, someone else can write to this destination"
        );
    }
    if dry_run {
        return Ok((plan, None));
    }
    let outcome = execute_prune(&*dest.destination, &plan).await;
    for planned in &outcome.deleted {
        let name = &planned.entry.manifest.name;
        let reason = format!(
            "deleted from destination {} by retention {policy}",
            dest.name
        );
        tracing::info!(destination_name = %dest.name, backup_name = %name, retention = %policy, "Backup deleted");
        if let Some(tasks) = tasks {
            if let Err(e) = tasks.mark_deleted(name.clone(), reason).await {
                tracing::error!(backup_name = %name, error = %e, "The task of a deleted backup could not be updated");
            }
            crate::catalog::forget(tasks, dest, &planned.entry.manifest_key).await;
        }
    }
    for kept in &outcome.kept_locked {
        let until = kept.until.map(|t| t.to_rfc3339());
        tracing::info!(destination_name = %dest.name, backup_name = %kept.name, key = %kept.key, locked_until = ?until, "Backup kept: the store keeps it locked");
    }
    for key in &outcome.orphans_removed {
        tracing::info!(destination_name = %dest.name, key = %key, "Archive without manifest removed");
    }
    for key in &outcome.incomplete_discarded {
        tracing::info!(destination_name = %dest.name, key = %key, "Incomplete upload discarded");
    }
    Ok((plan, Some(outcome)))
}

/// Prunes `dest` after a successful backup, logging the outcome; never fails the backup.
pub async fn after_backup(
    dest: &Target,
    policy: &Policy,
    instance: &str,
    tasks: &Tasks,
    keyring: Option<Keyring>,
) {
    tracing::info!(destination_name = %dest.name, retention = %policy, "Prune started");
    let scope = Scope::Instance(instance.to_string());
    let trust = trust_rules(keyring, Some(tasks)).await;
    let problems: Vec<Error> = match prune(dest, policy, &scope, false, Some(tasks), &trust).await {
        Ok((mut plan, outcome)) => {
            let outcome = outcome.unwrap_or_default();
            let mut problems = std::mem::take(&mut plan.problems);
            problems.extend(outcome.problems);
            if problems.is_empty() {
                tracing::info!(
                    destination_name = %dest.name,
                    deleted = outcome.deleted.len(),
                    kept = plan.backups.len() - outcome.deleted.len(),
                    "Prune completed successfully"
                );
            }
            problems
        }
        Err(e) => vec![e],
    };
    for e in problems {
        tracing::error!(destination_name = %dest.name, error = %e, "Prune completed with error");
    }
}
