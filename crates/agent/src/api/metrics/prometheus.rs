//! The latest sample in the Prometheus text exposition format (version 0.0.4): the same
//! values as the Graphite lines, the a9s ones as `a9s_<type>_…` and ours as
//! `service_backup_…`, with the disk and CPU as labels and the namespace as a label.

use std::fmt::Write as _;

use super::Sample;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The family name, its type and the labels of a Graphite path (without the namespace).
fn family(path: &str) -> (String, &'static str, Vec<(&'static str, String)>) {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.as_slice() {
        ["system", cpu, mode] if cpu.len() > 3 && cpu.starts_with("cpu") => (
            "a9s_system_cpu_milliseconds_total".to_string(),
            "counter",
            vec![("cpu", cpu[3..].to_string()), ("mode", (*mode).to_string())],
        ),
        ["system", "load", window] => (
            "a9s_system_load_millionths".to_string(),
            "gauge",
            vec![("window", (*window).to_string())],
        ),
        [kind @ ("system" | "parachute"), "disk", name, what] => (
            format!("a9s_{kind}_disk_{what}"),
            "gauge",
            vec![("disk", (*name).to_string())],
        ),
        // Named as Prometheus names times, as `service_backup_drill_…`.
        ["backup", "drill", "last_success_time"] => (
            "service_backup_drill_last_success_timestamp_seconds".to_string(),
            "gauge",
            Vec::new(),
        ),
        ["backup", "drill", "last_status"] => (
            "service_backup_drill_last_status".to_string(),
            "gauge",
            Vec::new(),
        ),
        ["backup", "destination_failures_total", name] => (
            "service_backup_destination_failures_total".to_string(),
            "counter",
            vec![("destination", (*name).to_string())],
        ),
        ["backup", rest @ ..] => (
            format!("service_backup_{}", rest.join("_")),
            "gauge",
            Vec::new(),
        ),
        _ => (format!("a9s_{}", parts.join("_")), "gauge", Vec::new()),
    }
}

/// A metric name with every character the format does not allow as `_`.
fn clean_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label value, escaped as the format asks (backslash, double quote, line feed).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of `sample` (empty when there is no sample yet).
pub fn render(sample: Option<&Sample>) -> String {
    let Some(sample) = sample else {
        return String::new();
    };
    // Families in the order they first appear, each with all its lines together.
    let mut families: Vec<(String, &'static str, Vec<String>)> = Vec::new();
    for point in &sample.points {
        let (name, kind, mut labels) = family(&point.path);
        let name = clean_name(&name);
        labels.insert(0, ("namespace", sample.namespace.clone()));
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let line = format!("{name}{{{}}} {}", labels.join(","), point.value);
        match families.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, lines)) => lines.push(line),
            None => families.push((name, kind, vec![line])),
        }
    }
    let mut out = String::new();
    for (name, kind, lines) in families {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Point;
    use super::*;

    fn sample(points: &[(&str, i128)]) -> Sample {
        Sample {
            time: 1_594_380_720,
            namespace: "org.space.inst.\"x\".svc.node-0".to_string(),
            points: points.iter().map(|(p, v)| Point::new(*p, *v)).collect(),
        }
    }

    #[test]
    fn families_group_their_lines_and_take_labels() {
        let text = render(Some(&sample(&[
            ("system.cpu.error", 0),
            ("system.cpu0.user", 894_310),
            ("system.cpu0.system", 410_430),
            ("system.cpu1.user", 5),
            ("system.load.load1", 3_542_480),
            ("system.disk.error", 0),
            ("system.disk.persistent.used_percent", 42),
            ("parachute.disk.persistent.used_threshold", 80),
            ("parachute.activated", 0),
            ("backup.last_size_bytes", 123),
            ("backup.drill.last_success_time", 1_594_380_000),
            ("backup.drill.last_status", 1),
        ])));
        let ns = "namespace=\"org.space.inst.\\\"x\\\".svc.node-0\"";
        let want = format!(
            "# TYPE a9s_system_cpu_error gauge\n\
             a9s_system_cpu_error{{{ns}}} 0\n\
             # TYPE a9s_system_cpu_milliseconds_total counter\n\
             a9s_system_cpu_milliseconds_total{{{ns},cpu=\"0\",mode=\"user\"}} 894310\n\
             a9s_system_cpu_milliseconds_total{{{ns},cpu=\"0\",mode=\"system\"}} 410430\n\
             a9s_system_cpu_milliseconds_total{{{ns},cpu=\"1\",mode=\"user\"}} 5\n\
             # TYPE a9s_system_load_millionths gauge\n\
             a9s_system_load_millionths{{{ns},window=\"load1\"}} 3542480\n\
             # TYPE a9s_system_disk_error gauge\n\
             a9s_system_disk_error{{{ns}}} 0\n\
             # TYPE a9s_system_disk_used_percent gauge\n\
             a9s_system_disk_used_percent{{{ns},disk=\"persistent\"}} 42\n\
             # TYPE a9s_parachute_disk_used_threshold gauge\n\
             a9s_parachute_disk_used_threshold{{{ns},disk=\"persistent\"}} 80\n\
             # TYPE a9s_parachute_activated gauge\n\
             a9s_parachute_activated{{{ns}}} 0\n\
             # TYPE service_backup_last_size_bytes gauge\n\
             service_backup_last_size_bytes{{{ns}}} 123\n\
             # TYPE service_backup_drill_last_success_timestamp_seconds gauge\n\
             service_backup_drill_last_success_timestamp_seconds{{{ns}}} 1594380000\n\
             # TYPE service_backup_drill_last_status gauge\n\
             service_backup_drill_last_status{{{ns}}} 1\n"
        );
        assert_eq!(text, want);
        assert_eq!(render(None), "");
        assert_eq!(clean_name("9a-b.c"), "_a_b_c");
    }
}
