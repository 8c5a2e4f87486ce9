//! `service-backup verify CONFIG --all`: every backup of this agent on every destination.

use std::collections::BTreeSet;

use futures::StreamExt as _;
use service_backup_core::catalog::Selector;
use service_backup_core::ops::restore::RestoreInto;

use super::Which;
use crate::cli::output::{self, VerifiedBackup, VerifiedDestination, VerifyAllResult};
use crate::command::{CliResult, Outcome, runtime};
use crate::config::Config;
use crate::destinations;
use crate::identity;
use crate::jobs::restore::{self, RestorePlan};
use crate::progress::{self, Bar, units};

/// How one destination's backups fared.
#[derive(Default)]
struct Tally {
    valid: usize,
    failed: usize,
}

/// Verifies each listed backup in the destination that listed it, one line each, then a
/// summary per destination; a destination that cannot be listed counts as a failure.
pub(super) fn verify_all(config: &Config, which: &Which) -> CliResult {
    let rt = runtime()?;
    let decryption = which.decryption(Some(config))?;
    let instance = rt.block_on(identity::this_instance(config));
    let mut listings = destinations::backups(config, which.destination.as_deref())?;
    // Configuration order, which is the order the listings come in.
    let mut tallies: Vec<(String, Tally)> = Vec::new();
    let mut unlisted = 0;
    let mut result = VerifyAllResult::default();
    while let Some(listed) = rt.block_on(listings.next()) {
        let (dest, entries) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                eprintln!("error: {}", crate::escape::escape_controls(&e.to_string()));
                unlisted += 1;
                result.unlisted.push(e.to_string());
                continue;
            }
        };
        let mut tally = Tally::default();
        let mut names: Vec<String> = entries
            .into_iter()
            .filter(|e| e.manifest.instance_id == instance)
            .map(|e| e.manifest.name)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        names.reverse(); // newest first, as `list` shows them
        for name in names {
            let plan = RestorePlan {
                selector: Selector::Named(name.clone()),
                destination: Some(dest.name.clone()),
                decryption: decryption.clone(),
                into: RestoreInto::CheckOnly,
                from_instance: None,
                include: Vec::new(),
            };
            match rt.block_on(restore::from_destinations(
                config,
                &plan,
                Bar::new("verify"),
            )) {
                Ok((_, stats)) => {
                    tally.valid += 1;
                    result.backups.push(VerifiedBackup {
                        name: name.clone(),
                        destination: dest.name.clone(),
                        ok: true,
                        entries: Some(stats.extracted.entries),
                        size_in_bytes: Some(stats.extracted.bytes),
                        sha256: Some(stats.sha256.clone()),
                        error: None,
                    });
                    if output::json() {
                        continue;
                    }
                    let size = if progress::for_a_person() {
                        units::bytes(stats.extracted.bytes)
                    } else {
                        format!("{} bytes", stats.extracted.bytes)
                    };
                    println!(
                        "backup {name} in {} is valid: {} entries, {size}, sha256 {}",
                        dest.name, stats.extracted.entries, stats.sha256
                    );
                }
                Err(e) => {
                    tally.failed += 1;
                    result.backups.push(VerifiedBackup {
                        name: name.clone(),
                        destination: dest.name.clone(),
                        ok: false,
                        entries: None,
                        size_in_bytes: None,
                        sha256: None,
                        error: Some(e.to_string()),
                    });
                    eprintln!(
                        "error: {}",
                        crate::escape::escape_controls(&format!(
                            "backup {name} in {}: {e}",
                            dest.name
                        ))
                    );
                }
            }
        }
        tallies.push((dest.name.clone(), tally));
    }
    let valid: usize = tallies.iter().map(|(_, t)| t.valid).sum();
    let failed: usize = tallies.iter().map(|(_, t)| t.failed).sum();
    if output::json() {
        result.ok = failed == 0 && unlisted == 0;
        result.valid = valid;
        result.failed = failed;
        result.destinations = tallies
            .iter()
            .map(|(name, t)| VerifiedDestination {
                name: name.clone(),
                valid: t.valid,
                failed: t.failed,
            })
            .collect();
        output::print_json(&result);
        return Ok(if result.ok {
            Outcome::Success
        } else {
            Outcome::Failed
        });
    }
    let per: Vec<String> = tallies
        .iter()
        .map(|(name, t)| format!("{name}: {} valid, {} failed", t.valid, t.failed))
        .collect();
    let unreachable = if unlisted > 0 {
        format!("; {unlisted} destination(s) could not be listed")
    } else {
        String::new()
    };
    println!(
        "verified {} backup(s): {valid} valid, {failed} failed ({}){unreachable}",
        valid + failed,
        per.join("; ")
    );
    Ok(if failed > 0 || unlisted > 0 {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}
