//! Alerts: after each backup the daemon runs, a failure (and the first success after a
//! failure, a recovery) is sent to the platform's notifications service and to a webhook,
//! as configured in `alerts`.
//!
//! Sending never delays a backup: each alert runs on its own task within its channel's time
//! budget, at most [`MAX_IN_FLIGHT`] at once (more are dropped with a log line). The last
//! outcome is kept in the state folder, so that a recovery is noticed across a restart.
//! Secrets (passwords, client secrets, header values, the webhook URL, which may hold a
//! token) are never logged.

mod body;
mod delivery;
mod notifications;
mod webhook;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use chrono::{SecondsFormat, Utc};
use service_backup_core::Result;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::config::alerts::AlertsConfig;
use crate::context::RunContext;
use crate::identity;
use crate::jobs::backup::RunReport;

pub use body::{Alert, Status};

/// The most alerts being sent at once; another one is dropped and logged.
pub const MAX_IN_FLIGHT: usize = 8;

/// The file in the state folder holding the last backup's outcome.
const LAST_OUTCOME_FILE: &str = "last-backup-outcome";

/// What the last backup did, as kept in [`LAST_OUTCOME_FILE`].
const FAILED: &str = "failed";
const SUCCEEDED: &str = "succeeded";

static IN_FLIGHT: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(MAX_IN_FLIGHT)));

/// Records how the backup the daemon ran ended and, on a failure or a recovery, starts
/// sending an alert; returns without waiting for it.
pub async fn after_backup(config: &Config, ctx: &RunContext, outcome: &Result<RunReport>) {
    let failed = match outcome {
        // A requested stop is not a failure, and tells nothing about the next backup.
        Ok(report) if report.cancelled => return,
        Ok(report) => !report.succeeded(),
        Err(_) => true,
    };
    // A run refused because another was in progress says nothing of the backups
    // themselves: it is alerted, as the original did, and leaves the outcome as it was.
    let rejected = matches!(outcome, Ok(report) if report.rejected);
    let previous = if rejected {
        None
    } else {
        remember(&ctx.state_dir, failed).await
    };
    let status = if failed {
        Status::Failed
    } else if previous.as_deref() == Some(FAILED) {
        Status::Recovered
    } else {
        return;
    };
    let Some(alerts) = config.alerts.clone() else {
        if failed {
            // The original's line when a backup failed and nothing was configured.
            tracing::info!("Alerts not configured.");
        }
        return;
    };
    let alert = Alert::of(config, outcome, status);
    send(alerts, alert);
}

/// Starts sending the failure alert of a scheduled backup refused because another was in
/// progress (`exit_if_in_progress`), as the original did; the last outcome is left as it
/// was.
pub fn after_rejected(config: &Config) {
    let outcome = Ok(RunReport {
        rejected: true,
        problems: vec![crate::lock::IN_PROGRESS.to_string()],
        ..RunReport::default()
    });
    let Some(alerts) = config.alerts.clone() else {
        tracing::info!("Alerts not configured.");
        return;
    };
    send(alerts, Alert::of(config, &outcome, Status::Failed));
}

/// Writes this outcome into the state folder and returns the previous one, if any.
async fn remember(state_dir: &Path, failed: bool) -> Option<String> {
    let path = state_dir.join(LAST_OUTCOME_FILE);
    let previous = tokio::fs::read_to_string(&path)
        .await
        .ok()
        .map(|t| t.trim().to_string());
    let now = if failed { FAILED } else { SUCCEEDED };
    if previous.as_deref() != Some(now)
        && let Err(e) = tokio::fs::write(&path, format!("{now}\n")).await
    {
        tracing::error!(error = %e, "The outcome of the backup could not be recorded for alerts");
    }
    previous
}

/// Starts sending `alert` on every configured channel, each within its time budget.
pub fn send(alerts: AlertsConfig, alert: Alert) {
    let Ok(permit) = IN_FLIGHT.clone().try_acquire_owned() else {
        tracing::error!(
            status = alert.status.word(),
            in_flight = MAX_IN_FLIGHT,
            "Alert dropped: too many alerts are still being sent"
        );
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        tracing::info!(status = alert.status.word(), "Sending alert.");
        let notify = async {
            match &alerts.notifications {
                Some(n) => Some(notifications::send(n, &alert).await),
                None => None,
            }
        };
        let hook = async {
            match &alerts.webhook {
                Some(w) => Some(webhook::send(w, &alert).await),
                None => None,
            }
        };
        let (notify, hook) = tokio::join!(notify, hook);
        let mut all_sent = true;
        for (channel, result) in [("notifications", notify), ("webhook", hook)] {
            if let Some(Err(e)) = result {
                all_sent = false;
                // The original's line when the notification could not be sent.
                tracing::error!(channel, status = alert.status.word(), error = %e, "error sending service alert");
            }
        }
        if all_sent {
            tracing::info!(status = alert.status.word(), "Sent alert.");
        }
    });
}

/// The instance id an alert names: the backup's, else the configured one or the host name.
fn instance_of(config: &Config, report: Option<&RunReport>) -> String {
    report
        .and_then(|r| r.instance_id.clone())
        .unwrap_or_else(|| identity::instance_id(config, None))
}

/// Now, as alerts write times.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}
