//! `service-backup prune CONFIG [--dry-run] [--destination NAME] [--all-instances]`.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use service_backup_core::prune::{PruneOutcome, PrunePlan, Scope};
use service_backup_core::retention::Rule;

use super::output::{self, PruneResult};
use crate::command::{CliResult, Outcome, load_config, runtime};
use crate::context::{self, RunContext};
use crate::destinations;
use crate::escape::escape_controls;
use crate::identity;
use crate::jobs::prune;
use crate::tasks::store::DB_FILE;

/// Applies the retention policy to every (or one) destination, printing what it keeps and
/// why, and what it deletes; with `dry_run`, changes nothing.
pub fn run(path: &Path, only: Option<&str>, dry_run: bool, all_instances: bool) -> CliResult {
    let config = load_config(path)?;
    let chosen = destinations::select(&config, only)?;
    let rt = runtime()?;
    let (scope, tasks, me) = rt.block_on(async {
        // Every instance's manifests are read with --all-instances: which is this one's
        // only orders the reads, so the service identifier is not run for it.
        let me = if all_instances {
            String::new()
        } else {
            identity::this_instance(&config).await
        };
        let scope = if all_instances {
            Scope::AllInstances
        } else {
            Scope::Instance(me.clone())
        };
        // A dry run reads the task database only if there is one: it creates nothing.
        let tasks = if dry_run && !context::state_dir(&config).join(DB_FILE).exists() {
            None
        } else {
            Some(RunContext::open(&config).await?.tasks)
        };
        Ok::<_, service_backup_core::Error>((scope, tasks, me))
    })?;
    let trust = rt.block_on(prune::trust_rules(config.keyring.clone(), tasks.as_ref()));
    let json = output::json();
    let mut result = PruneResult {
        dry_run,
        instance_id: match &scope {
            Scope::Instance(id) => Some(id.clone()),
            Scope::AllInstances => None,
        },
        ..PruneResult::default()
    };
    match &scope {
        _ if json => {}
        Scope::Instance(id) => println!("instance {id}"),
        Scope::AllInstances => println!("every instance"),
    }
    let mut failed = false;
    for (dest, settings) in chosen.into_iter().zip(
        config
            .destinations
            .iter()
            .filter(|d| only.is_none_or(|n| d.display_name() == n)),
    ) {
        let retention = settings.retention_or(config.retention);
        let dest = match dest {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {}", escape_controls(&e.to_string()));
                result.add_failed(
                    &settings.display_name(),
                    retention.map(|p| p.to_string()),
                    e.to_string(),
                );
                failed = true;
                continue;
            }
        };
        let Some(policy) = retention else {
            if json {
                result.add(&dest.name, None, &PrunePlan::default(), None);
                continue;
            }
            println!(
                "destination {}: no retention is configured; nothing is deleted",
                dest.name
            );
            continue;
        };
        if !json {
            println!("destination {}: retention {policy}", dest.name);
        }
        let pruned = rt.block_on(prune::prune(
            &dest,
            &policy,
            &scope,
            dry_run,
            tasks.as_ref(),
            &trust,
            &me,
            crate::catalog::full_every(&config),
        ));
        // A retry note shown while listing gives way to the plan.
        crate::progress::clear();
        let (plan, outcome) = match pruned {
            Ok(done) => done,
            Err(e) => {
                eprintln!("error: {}", escape_controls(&e.to_string()));
                result.add_failed(&dest.name, Some(policy.to_string()), e.to_string());
                failed = true;
                continue;
            }
        };
        if json {
            result.add(
                &dest.name,
                Some(policy.to_string()),
                &plan,
                outcome.as_ref(),
            );
            let here = result
                .destinations
                .last()
                .map_or(&[][..], |d| &d.problems[..]);
            for p in here {
                eprintln!(
                    "error: {}",
                    escape_controls(&format!("destination {}: {p}", dest.name))
                );
            }
            failed |= !here.is_empty();
            continue;
        }
        print_plan(
            &plan,
            outcome.as_ref(),
            dry_run,
            scope == Scope::AllInstances,
        );
        if !plan.ignored.is_empty() {
            eprintln!(
                "warning: destination {}: {} backup(s) ignored by retention, neither counted nor deleted; if this agent did not make them, someone else can write to the destination",
                dest.name,
                plan.ignored.len()
            );
        }
        let mut problems: Vec<String> = plan.problems.iter().map(ToString::to_string).collect();
        if let Some(outcome) = &outcome {
            problems.extend(outcome.problems.iter().map(ToString::to_string));
            println!(
                "  deleted {} backup(s), removed {} archive(s) without manifest, discarded {} incomplete upload(s)",
                outcome.deleted.len(),
                outcome.orphans_removed.len(),
                outcome.incomplete_discarded.len()
            );
            if !outcome.kept_locked.is_empty() {
                println!(
                    "  kept {} object(s) that the store keeps locked; a later prune deletes them once their lock ends",
                    outcome.kept_locked.len()
                );
            }
        }
        for p in problems {
            eprintln!(
                "error: {}",
                escape_controls(&format!("destination {}: {p}", dest.name))
            );
            failed = true;
        }
    }
    if json {
        result.ok = !failed;
        output::print_json(&result);
    } else if dry_run {
        println!("dry run: nothing was deleted");
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// `locked until <date>`, or `locked` when the store did not say until when.
fn locked_text(until: Option<DateTime<Utc>>) -> String {
    match until {
        Some(t) => format!(
            "locked until {}",
            t.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        None => "locked".to_string(),
    }
}

fn print_plan(
    plan: &PrunePlan,
    outcome: Option<&PruneOutcome>,
    dry_run: bool,
    with_instance: bool,
) {
    let delete_word = if dry_run { "would delete" } else { "delete" };
    let locked_by_store = |name: &str| outcome.and_then(|o| o.locked(name));
    for p in &plan.backups {
        let m = &p.entry.manifest;
        let name = escape_controls(&m.name);
        let instance = if with_instance {
            format!("  [{}]", escape_controls(&m.instance_id))
        } else {
            String::new()
        };
        if p.decision.keep() {
            // A lock is shown with its date rather than as the rule's bare name.
            let reasons = p
                .decision
                .kept_by
                .iter()
                .map(|r| match r {
                    Rule::Locked => locked_text(p.locked_until),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            println!("  keep          {name}{instance}  ({reasons})");
        } else if let Some(until) = locked_by_store(&m.name) {
            println!(
                "  keep          {name}{instance}  ({}: the store refused the delete)",
                locked_text(until)
            );
        } else {
            println!("  {delete_word:<13} {name}{instance}");
        }
    }
    for i in &plan.ignored {
        let m = &i.entry.manifest;
        println!(
            "  ignored       {}: {}",
            escape_controls(&m.name),
            escape_controls(&i.why)
        );
    }
    for o in &plan.orphans {
        let key = escape_controls(&o.key);
        match locked_by_store(&o.key) {
            Some(until) => println!(
                "  keep          {key} (archive without manifest, {})",
                locked_text(until)
            ),
            None => println!("  {delete_word:<13} {key} (archive without manifest)"),
        }
    }
    for u in &plan.incomplete {
        println!(
            "  {delete_word:<13} {} (incomplete upload)",
            escape_controls(&u.key)
        );
    }
}
