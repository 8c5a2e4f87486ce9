//! What an alert says: the JSON body of the webhook, and the facts the notification's
//! e-mail is written from.

use serde::Serialize;
use service_backup_core::Result;

use crate::config::Config;
use crate::jobs::backup::RunReport;

/// Whether an alert reports a failure or a recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A backup failed.
    Failed,
    /// A backup succeeded after a failure.
    Recovered,
}

impl Status {
    /// The word of the status in the body and the logs.
    pub fn word(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Recovered => "recovered",
        }
    }
}

/// One alert, as the webhook's JSON body.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// `failed` or `recovered`.
    pub status: Status,
    /// The instance whose backup it is.
    pub instance_id: String,
    /// The backup's name, when the upload started.
    pub backup_name: Option<String>,
    /// The destinations that did not get the backup.
    pub failed_destinations: Vec<String>,
    /// The destinations that got it.
    pub stored_in: Vec<String>,
    /// What went wrong (`null` on a recovery).
    pub error: Option<String>,
    /// When the alert was made (UTC, RFC 3339).
    pub time: String,
    /// This agent's version.
    pub agent_version: &'static str,
    /// The product named in `alerts.product_name`.
    pub product_name: String,
    /// The service instance as the original's notifications named it: only when an
    /// instance id or a service identifier is configured.
    #[serde(skip)]
    pub named_instance: Option<String>,
}

impl Alert {
    /// The alert of a backup that ended with `outcome`.
    pub fn of(config: &Config, outcome: &Result<RunReport>, status: Status) -> Self {
        let report = outcome.as_ref().ok();
        let stored_in = report.map(|r| r.stored_in.clone()).unwrap_or_default();
        let failed_destinations = if status == Status::Failed {
            config
                .destinations
                .iter()
                .map(crate::config::DestinationConfig::display_name)
                .filter(|name| !stored_in.contains(name))
                .collect()
        } else {
            Vec::new()
        };
        let error = match (status, outcome) {
            (Status::Recovered, _) => None,
            (Status::Failed, Ok(report)) => Some(report.problems.join("; ")),
            (Status::Failed, Err(e)) => Some(e.to_string()),
        };
        let instance_id = super::instance_of(config, report);
        let named_instance = (config.instance_id.is_some()
            || config.service_identifier_executable.is_some())
        .then(|| instance_id.clone());
        Self {
            status,
            instance_id,
            backup_name: report.and_then(|r| r.name.clone()),
            failed_destinations,
            stored_in,
            error,
            time: super::now(),
            agent_version: env!("CARGO_PKG_VERSION"),
            product_name: config
                .alerts
                .as_ref()
                .map(|a| a.product_name.clone())
                .unwrap_or_default(),
            named_instance,
        }
    }

    /// The subject of the notification, as the original's service-alerts-client wrote it.
    pub fn subject(&self) -> String {
        let what = match self.status {
            Status::Failed => "Service Backup Failed",
            Status::Recovered => "Service Backup Recovered",
        };
        format!("[Service Alert][{}] {what}", self.product_name)
    }

    /// The text of the notification, in the original's e-mail template.
    pub fn text(&self) -> String {
        let content = match self.status {
            Status::Failed => format!(
                "A backup run has failed with the following error: {}",
                self.error.as_deref().unwrap_or_default()
            ),
            Status::Recovered => format!(
                "A backup run has succeeded after a failure: {} is stored in {}.",
                self.backup_name.as_deref().unwrap_or("the backup"),
                self.stored_in.join(", ")
            ),
        };
        let instance = self
            .named_instance
            .as_ref()
            .map(|id| format!(", service instance {id}"))
            .unwrap_or_default();
        format!(
            "Alert from {}{instance}:\n\n{content}\n\n[Alert generated at {}]",
            self.product_name, self.time
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: Status, named: Option<&str>) -> Alert {
        Alert {
            status,
            instance_id: "redis-0".into(),
            backup_name: Some("20261123T023500Z-redis-0-5f1c2a9e".into()),
            failed_destinations: vec![],
            stored_in: vec!["s3".into(), "nfs".into()],
            error: (status == Status::Failed).then(|| "destination s3: denied".into()),
            time: "2026-11-23T02:35:07Z".into(),
            agent_version: "0.1.0",
            product_name: "Redis".into(),
            named_instance: named.map(str::to_string),
        }
    }

    #[test]
    fn the_notification_reads_as_the_original_client_wrote_it() {
        // service-alerts-client's email_body.go: `Alert from {{.Product}}{{if
        // .ServiceInstanceID}}, service instance {{.ServiceInstanceID}}{{end}}:\n\n
        // {{.Content}}\n\n[Alert generated at {{.Timestamp}}]`, and send_service_alert.go's
        // subject `[Service Alert][%s] %s`.
        let failed = alert(Status::Failed, Some("redis-0"));
        assert_eq!(
            failed.subject(),
            "[Service Alert][Redis] Service Backup Failed"
        );
        assert_eq!(
            failed.text(),
            "Alert from Redis, service instance redis-0:\n\nA backup run has failed with the \
             following error: destination s3: denied\n\n[Alert generated at 2026-11-23T02:35:07Z]"
        );
        let recovered = alert(Status::Recovered, None);
        assert_eq!(
            recovered.subject(),
            "[Service Alert][Redis] Service Backup Recovered"
        );
        assert_eq!(
            recovered.text(),
            "Alert from Redis:\n\nA backup run has succeeded after a failure: \
             20261123T023500Z-redis-0-5f1c2a9e is stored in s3, nfs.\n\n\
             [Alert generated at 2026-11-23T02:35:07Z]"
        );
    }

    #[test]
    fn the_body_has_every_field_and_not_the_notification_only_one() {
        let body = serde_json::to_value(alert(Status::Recovered, Some("x"))).unwrap();
        assert_eq!(body["status"], "recovered");
        assert!(body["error"].is_null());
        assert!(body.get("named_instance").is_none());
        assert_eq!(body.as_object().unwrap().len(), 9);
    }
}
