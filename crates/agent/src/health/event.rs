//! One health event in the platform's health exposure schema, version 1.1.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::status::{Level, Status};
use crate::config::HealthConfig;

/// The schema version every event carries.
pub const SCHEMA_VERSION: &str = "1.1";

/// The platform every event names.
pub const PLATFORM: &str = "ESC";

/// A health event, serialized as the schema's JSON object.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Event {
    /// The schema version, "1.1".
    pub version: &'static str,
    /// When the event was made, UTC, ISO 8601.
    pub timestamp: String,
    /// A UUID v4 of its own.
    pub id: String,
    /// "ESC".
    pub platform: &'static str,
    /// The tenant.
    pub tenant_name: String,
    /// The space.
    pub space_name: String,
    /// The service's name.
    pub cloud_service_name: String,
    /// The service instance.
    pub service_instance: ServiceInstance,
    /// OK, WARNING, DEGRADED or ERROR.
    pub health_status: Level,
    /// What happened and what to do.
    pub health_description: String,
}

/// The schema's `service_instance`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ServiceInstance {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its plan.
    pub instance_class_name: String,
}

/// The names every event of this agent carries: configured, else `instance_id` for the
/// instance's id and name, `deployment` for the service's name, empty otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    tenant_name: String,
    space_name: String,
    cloud_service_name: String,
    instance: ServiceInstance,
}

impl Names {
    /// The names of `health`, with the defaults from the instance id and deployment.
    pub fn new(health: &HealthConfig, instance_id: &str, deployment: Option<&str>) -> Self {
        let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
        Self {
            tenant_name: or(&health.tenant_name, ""),
            space_name: or(&health.space_name, ""),
            cloud_service_name: or(
                &health.cloud_service_name,
                deployment.unwrap_or("service-backup"),
            ),
            instance: ServiceInstance {
                id: or(&health.instance_id, instance_id),
                name: or(&health.instance_name, instance_id),
                instance_class_name: or(&health.instance_class_name, ""),
            },
        }
    }

    /// The tenant, for the topic's name.
    pub fn tenant(&self) -> &str {
        &self.tenant_name
    }

    /// A new event of `status` at `now`, with `id`.
    pub fn event(&self, status: &Status, now: DateTime<Utc>, id: String) -> Event {
        Event {
            version: SCHEMA_VERSION,
            timestamp: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            id,
            platform: PLATFORM,
            tenant_name: self.tenant_name.clone(),
            space_name: self.space_name.clone(),
            cloud_service_name: self.cloud_service_name.clone(),
            service_instance: self.instance.clone(),
            health_status: status.level,
            health_description: status.description.clone(),
        }
    }
}

/// A new random UUID v4.
pub fn new_id() -> service_backup_core::Result<String> {
    service_backup_core::random::uuid_v4()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_has_every_field_of_the_schema() {
        let health = HealthConfig {
            tenant_name: Some("t1".into()),
            space_name: Some("prod".into()),
            instance_class_name: Some("small".into()),
            ..HealthConfig::default()
        };
        let names = Names::new(&health, "vm-1", Some("redis"));
        let status = Status {
            level: Level::Degraded,
            description: "half".into(),
            public: "half".into(),
        };
        let now = DateTime::parse_from_rfc3339("2026-12-06T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let json = serde_json::to_value(names.event(&status, now, "x".into())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": "1.1",
                "timestamp": "2026-12-06T04:00:00.000Z",
                "id": "x",
                "platform": "ESC",
                "tenant_name": "t1",
                "space_name": "prod",
                "cloud_service_name": "redis",
                "service_instance": {"id": "vm-1", "name": "vm-1", "instance_class_name": "small"},
                "health_status": "DEGRADED",
                "health_description": "half",
            })
        );
    }

    #[test]
    fn ids_are_uuid_v4_and_differ() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert_ne!(a, b);
        for id in [a, b] {
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(parts[2].starts_with('4'), "{id}");
            assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
        }
    }
}
