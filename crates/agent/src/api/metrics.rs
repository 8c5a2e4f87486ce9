//! `GET /metrics`: the datapoints of the a9s metrics API as Graphite lines
//! `<namespace>.<path> <value> <unix-seconds>`, sampled on an interval into a bounded ring,
//! and the latest sample in the Prometheus text format. The `system` and `parachute` types
//! follow the a9s documentation; `backup` is ours.

pub mod drill;
pub mod handlers;
pub mod parachute;
pub mod prometheus;
pub mod system;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use service_backup_core::blocking;
use service_backup_core::task::TaskState;

use super::ApiState;
use crate::config::{Config, DEFAULT_PARACHUTE_THRESHOLD};
use crate::health::status::FullDisk;
use crate::tasks::store::{Task, TaskKind};

pub use super::request::parse_quantity;
pub use parachute::Parachute;

/// How many samples the ring keeps (an hour at the default interval).
pub const RING_SAMPLES: usize = 360;

/// How often a sample is taken.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// One datapoint: its path below the namespace (`system.load.load1`) and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// The path below the namespace.
    pub path: String,
    /// The value, a whole number in the documented unit.
    pub value: i128,
}

impl Point {
    /// A datapoint.
    pub fn new(path: impl Into<String>, value: i128) -> Self {
        Self {
            path: path.into(),
            value,
        }
    }
}

/// The datapoints taken at one time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Unix seconds.
    pub time: i64,
    /// The namespace every path starts with.
    pub namespace: String,
    /// The datapoints, in the documented order.
    pub points: Vec<Point>,
}

impl Sample {
    /// The Graphite lines `<namespace>.<path> <value> <time>`.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.points
            .iter()
            .map(|p| format!("{}.{} {} {}", self.namespace, p.path, p.value, self.time))
    }
}

/// The latest samples.
#[derive(Debug, Default)]
pub struct Ring {
    samples: Mutex<VecDeque<Sample>>,
}

impl Ring {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a sample, dropping the oldest beyond [`RING_SAMPLES`].
    pub fn push(&self, sample: Sample) {
        let mut s = self.lock();
        if s.len() == RING_SAMPLES {
            s.pop_front();
        }
        s.push_back(sample);
    }

    /// The Graphite lines of the `quantity` latest samples (all when `None`), oldest first.
    pub fn latest(&self, quantity: Option<usize>) -> Vec<String> {
        let s = self.lock();
        let n = quantity.unwrap_or(s.len()).min(s.len());
        s.iter().skip(s.len() - n).flat_map(Sample::lines).collect()
    }

    /// The newest sample.
    pub fn newest(&self) -> Option<Sample> {
        self.lock().back().cloned()
    }
}

/// A namespace part with every character but letters, digits, `_` and `-` as `_`: the rule
/// `validate` applies to configured parts holds for the defaults too (a host name or an
/// identifier's output with a dot, a space or a quote would split or break a Graphite path).
fn part(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The metrics namespace: `api.metrics.namespace`, else the a9s
/// `<org-guid>.<space-guid>.<instance-guid>.<internal-instance-name>.<internal-service-name>.<node>`
/// of `api.metrics`, whose parts not configured are left out but for the instance guid
/// (default: the instance id served), the service name (default `service-backup`) and the
/// node (default: `deployment_name`, else the host name).
pub fn namespace(config: &Config, instance_id: &str) -> String {
    let m = config.api.as_ref().map(|a| &a.metrics);
    if let Some(ns) = m.and_then(|m| m.namespace.clone()) {
        return ns;
    }
    let given = |f: fn(&crate::config::MetricsConfig) -> &Option<String>| {
        m.and_then(|m| f(m).as_deref()).map(part)
    };
    let node = given(|m| &m.node).unwrap_or_else(|| {
        part(
            &config
                .deployment_name
                .clone()
                .unwrap_or_else(crate::identity::host_name),
        )
    });
    [
        given(|m| &m.org_guid),
        given(|m| &m.space_guid),
        Some(given(|m| &m.instance_guid).unwrap_or_else(|| part(instance_id))),
        given(|m| &m.internal_instance_name),
        Some(given(|m| &m.internal_service_name).unwrap_or_else(|| "service-backup".into())),
        Some(node),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(".")
}

/// Takes one sample now: `system`, `parachute` (logging a threshold crossed) and `backup`.
pub fn sample(namespace: String, parachute: &Parachute, backups: &[Task]) -> Sample {
    let time = Utc::now().timestamp();
    let mut points = Vec::new();
    let disks = system::sample(&mut points);
    parachute.points(&disks, &mut points);
    backup_points(backups, &mut |path, value| {
        points.push(Point::new(path, value));
    });
    Sample {
        time,
        namespace,
        points,
    }
}

/// The threshold of the configuration in force.
pub fn configured_threshold(config: &Config) -> u64 {
    config
        .api
        .as_ref()
        .map_or(DEFAULT_PARACHUTE_THRESHOLD, |a| {
            a.metrics.parachute_threshold
        })
}

/// The parachute threshold in force (set through the API and kept in `state_dir`, else
/// the configured one) and the disks at or over it, for the health status.
pub fn full_disks(config: &Config, state_dir: &Path) -> (u64, Vec<FullDisk>) {
    let threshold = Parachute::load(Some(state_dir), configured_threshold(config)).threshold();
    let full = system::local_disks()
        .iter()
        .filter_map(|d| {
            let percent = d.usage?.used_percent();
            (threshold > 0 && percent >= threshold).then(|| FullDisk {
                name: d.name.clone(),
                used_percent: percent,
            })
        })
        .collect();
    (threshold, full)
}

/// Samples the metrics into the ring every [`SAMPLE_INTERVAL`] until cancelled.
pub async fn sample_forever(state: ApiState) {
    loop {
        let backups = state
            .ctx
            .tasks
            .list(TaskKind::Backup)
            .await
            .unwrap_or_default();
        let drills = state
            .ctx
            .tasks
            .list(TaskKind::Drill)
            .await
            .unwrap_or_default();
        let config = state.config();
        // A reload may change the configured threshold; one set through the API stays.
        state.parachute.configure(configured_threshold(&config));
        let ns = namespace(&config, &state.instance_id);
        let parachute = state.parachute.clone();
        let health = crate::health::current(&config, &state.ctx, full_disks).await;
        let taken = blocking(move || Ok(sample(ns, &parachute, &backups))).await;
        if let Ok(mut s) = taken {
            s.points.extend(drill::points(&drills));
            s.points.push(Point::new(
                "backup.health_status",
                health.status.level.value(),
            ));
            state.metrics.push(s);
        }
        tokio::select! {
            () = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            () = state.ctx.cancel.cancelled() => return,
        }
    }
}

/// Our own `backup` datapoints, from the backup tasks (oldest first).
fn backup_points(tasks: &[Task], put: &mut impl FnMut(&str, i128)) {
    let last_done = tasks.iter().rev().find(|t| t.state == TaskState::Done);
    if let Some(t) = last_done {
        put(
            "backup.last_success_time",
            i128::from(t.updated_at.timestamp()),
        );
        put(
            "backup.last_size_bytes",
            i128::from(t.stored_bytes.unwrap_or(0)),
        );
        put(
            "backup.last_duration_seconds",
            t.duration_in_seconds.unwrap_or(0.0).round() as i128,
        );
    }
    let failures = tasks
        .iter()
        .rev()
        .filter(|t| matches!(t.state, TaskState::Done | TaskState::Failed))
        .take_while(|t| t.state == TaskState::Failed)
        .count();
    put(
        "backup.consecutive_failures",
        i128::try_from(failures).unwrap_or(0),
    );
    put(
        "backup.running",
        i128::from(tasks.iter().any(|t| t.state == TaskState::Running)),
    );
    freshness_points(tasks, put);
}

/// The freshness values: when the last backup succeeded and when one was last attempted,
/// and the failures of each destination over the recorded backups.
fn freshness_points(tasks: &[Task], put: &mut impl FnMut(&str, i128)) {
    let ended = |t: &Task| t.finished_at.unwrap_or(t.updated_at).timestamp();
    let success = tasks
        .iter()
        .rev()
        .find(|t| matches!(t.state, TaskState::Done | TaskState::Deleted));
    if let Some(t) = success {
        put(
            "backup.last_success_timestamp_seconds",
            i128::from(ended(t)),
        );
    }
    let attempt = tasks.iter().rev().find(|t| {
        matches!(
            t.state,
            TaskState::Done | TaskState::Deleted | TaskState::Failed
        ) && t.trigger != "discovered"
    });
    if let Some(t) = attempt {
        put(
            "backup.last_attempt_timestamp_seconds",
            i128::from(ended(t)),
        );
    }
    let mut failures: Vec<(String, i128)> = Vec::new();
    for t in tasks {
        for name in t.failed_destinations.iter().flatten() {
            let name = part(name);
            match failures.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => failures.push((name, 1)),
            }
        }
        // A destination that got a backup is listed at 0 until it fails.
        for name in t.stored_destinations.iter().flatten() {
            let name = part(name);
            if !failures.iter().any(|(n, _)| *n == name) {
                failures.push((name, 0));
            }
        }
    }
    for (name, count) in failures {
        put(&format!("backup.destination_failures_total.{name}"), count);
    }
}

#[cfg(test)]
mod tests;
