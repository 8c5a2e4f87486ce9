//! Pruning the configured destinations: after a successful backup, and by hand with
//! `service-backup prune`. Logs each deletion; marks the tasks of deleted backups.
//! Backups a prune does not trust (planted manifests) are logged as errors and left alone.

use std::time::Duration;

use chrono::{DateTime, Utc};
use service_backup_core::format::Keyring;
use service_backup_core::prune::{
    PruneOutcome, PrunePlan, Scope, TrustRules, execute_prune, plan_prune, plan_prune_of,
};
use service_backup_core::retention::Policy;
use service_backup_core::task::TaskState;
use service_backup_core::{Error, Result};

use crate::catalog::Mode;
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
/// for a dry run. With a task database (`tasks`), the backups come from its catalog,
/// refreshed first (incrementally as a rule: only new manifests are read), and leftovers
/// (archives without a manifest, incomplete uploads) are looked for every `full_every`
/// since a prune last found none, with a full listing of the destination; deleted backups
/// leave the catalog and their tasks become `deleted`. Without one (a dry run on a new
/// machine), the destination is listed and every manifest read.
#[allow(clippy::too_many_arguments)]
pub async fn prune(
    dest: &Target,
    policy: &Policy,
    scope: &Scope,
    dry_run: bool,
    tasks: Option<&Tasks>,
    trust: &TrustRules,
    instance_id: &str,
    full_every: Duration,
) -> Result<(PrunePlan, Option<PruneOutcome>)> {
    let now = Utc::now();
    let planned = match tasks {
        Some(tasks) => {
            plan_on_catalog(
                dest,
                policy,
                scope,
                tasks,
                trust,
                instance_id,
                full_every,
                now,
            )
            .await
        }
        None => plan_prune(&*dest.destination, &dest.layout, policy, scope, now, trust)
            .await
            .map(|plan| (plan, false)),
    };
    let (plan, leftovers_checked) =
        planned.map_err(|e| e.context(format!("prune of destination {}", dest.name)))?;
    for ignored in &plan.ignored {
        tracing::error!(
            destination_name = %dest.name,
            backup_name = %ignored.entry.manifest.name,
            manifest = %ignored.entry.manifest_key,
            reason = %ignored.why,
            "Backup ignored by retention: it is neither counted nor deleted; if nobody made it, someone else can write to this destination"
        );
    }
    let clean = |plan: &PrunePlan| {
        plan.problems.is_empty() && plan.orphans.is_empty() && plan.incomplete.is_empty()
    };
    if dry_run {
        // A dry run that found leftovers records nothing: the prune after it finds them too.
        if leftovers_checked && clean(&plan) {
            leftovers_done(tasks, dest, now).await;
        }
        return Ok((plan, None));
    }
    let outcome = execute_prune(&*dest.destination, &plan).await;
    if leftovers_checked && plan.problems.is_empty() && outcome.problems.is_empty() {
        leftovers_done(tasks, dest, now).await;
    }
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

/// Plans the prune of `dest` from the catalog in `tasks`; says whether leftovers were
/// looked for.
#[allow(clippy::too_many_arguments)]
async fn plan_on_catalog(
    dest: &Target,
    policy: &Policy,
    scope: &Scope,
    tasks: &Tasks,
    trust: &TrustRules,
    instance_id: &str,
    full_every: Duration,
    now: DateTime<Utc>,
) -> Result<(PrunePlan, bool)> {
    let key = crate::catalog::key_of(dest);
    let owned = key.clone();
    let leftovers_at = tasks
        .catalog(move |s| s.catalog_leftovers_at(&owned))
        .await?;
    let mode = if crate::catalog::due(leftovers_at, now, full_every) {
        Mode::Full
    } else {
        Mode::Auto
    };
    let (instance, others) = match scope {
        Scope::Instance(id) => (id.clone(), false),
        Scope::AllInstances => (instance_id.to_string(), true),
    };
    let refreshed =
        crate::catalog::refresh_one(tasks, dest, &instance, mode, others, full_every).await?;
    let only = (!others).then_some(instance);
    let entries = tasks
        .catalog(move |s| s.catalog_entries(&key, only.as_deref()))
        .await?;
    let checked = refreshed.orphans.is_some();
    let plan = plan_prune_of(
        &*dest.destination,
        &dest.layout,
        policy,
        scope,
        now,
        trust,
        entries,
        refreshed.orphans,
    )
    .await?;
    Ok((plan, checked))
}

/// Records that a prune of `dest` left no leftovers it could remove.
async fn leftovers_done(tasks: Option<&Tasks>, dest: &Target, at: DateTime<Utc>) {
    let Some(tasks) = tasks else { return };
    let key = crate::catalog::key_of(dest);
    if let Err(e) = tasks
        .catalog(move |s| s.catalog_leftovers_checked(&key, at))
        .await
    {
        tracing::warn!(error = %e, "the prune's look at leftovers could not be recorded");
    }
}

/// Prunes `dest` after a successful backup, logging the outcome; never fails the backup.
pub async fn after_backup(
    dest: &Target,
    policy: &Policy,
    instance: &str,
    tasks: &Tasks,
    keyring: Option<Keyring>,
    full_every: Duration,
) {
    tracing::info!(destination_name = %dest.name, retention = %policy, "Prune started");
    let scope = Scope::Instance(instance.to_string());
    let trust = trust_rules(keyring, Some(tasks)).await;
    let problems: Vec<Error> = match prune(
        dest,
        policy,
        &scope,
        false,
        Some(tasks),
        &trust,
        instance,
        full_every,
    )
    .await
    {
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

#[cfg(test)]
mod tests;
