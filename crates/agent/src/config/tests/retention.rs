//! `retention:` at the top and per destination: values, overrides and bad input.

use service_backup_core::retention::Policy;

use super::super::parse;
use super::{S3_OK, problems};

#[test]
fn retention_is_read_top_level_and_per_destination() {
    let yaml = "
destinations:
- type: local
  name: disk
  config: {path: /b}
  retention: {keep_last: 3}
- type: local
  name: nfs
  config: {path: /c}
source_folder: /s
cron_schedule: '@daily'
retention: {keep_last: 14, keep_days: 7, keep_daily: 7, keep_weekly: 4, keep_monthly: '6'}
";
    let config = parse(yaml).expect("valid");
    let top = Policy {
        keep_last: Some(14),
        keep_days: Some(7),
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(6),
    };
    assert_eq!(config.retention, Some(top));
    let disk = &config.destinations[0];
    assert_eq!(
        disk.retention_or(config.retention),
        Some(Policy {
            keep_last: Some(3),
            ..Policy::default()
        }),
        "the destination's own replaces the top-level one"
    );
    assert_eq!(
        config.destinations[1].retention_or(config.retention),
        Some(top)
    );
    let none = parse(S3_OK).unwrap();
    assert_eq!(none.retention, None, "absent: nothing is ever deleted");
    assert_eq!(none.destinations[0].retention_or(none.retention), None);
}

#[test]
fn bad_retention_values_are_named() {
    let line = |p: &str| format!("Invalid config - {p}.");
    let table = [
        (
            "retention: {keep_last: -1}\n",
            vec![line(
                "retention.keep_last must be a whole number, 0 or more, not -1",
            )],
        ),
        (
            "retention: {keep_days: seven}\n",
            vec![line(
                "retention.keep_days must be a whole number, 0 or more, not \"seven\"",
            )],
        ),
        (
            "retention: {keep_daily: 1.5, keep_weekly: [1]}\n",
            vec![
                line("retention.keep_daily must be a whole number, 0 or more, not 1.5"),
                line("retention.keep_weekly must be a whole number, 0 or more, not a list"),
            ],
        ),
        (
            "retention: {keep_yearly: 2}\n",
            vec![
                "Invalid config - unknown key retention.keep_yearly; did you mean keep_daily?"
                    .to_string(),
            ],
        ),
        (
            "retention: {keep_everything: 2}\n",
            vec![line(
                "unknown key retention.keep_everything; the keys here are keep_last, keep_days, keep_daily, keep_weekly, keep_monthly",
            )],
        ),
        (
            "retention: 14\n",
            vec![line(
                "retention must be a mapping such as {keep_last: 14, keep_daily: 7}, not a number",
            )],
        ),
        (
            "retention: {keep_last: 0}\n",
            vec![line(
                "retention keeps nothing: give at least one of keep_last, keep_days, keep_daily, keep_weekly, keep_monthly a number above 0 (or remove retention to keep every backup)",
            )],
        ),
    ];
    for (extra, want) in table {
        let yaml = format!("{S3_OK}{extra}");
        assert_eq!(problems(&yaml), want, "{extra}");
    }
    let per_destination = S3_OK.replace(
        "  config: {bucket_name",
        "  retention: {keep_last: x}\n  config: {bucket_name",
    );
    assert_eq!(
        problems(&per_destination),
        [line(
            "s3 destination \"primary\": retention.keep_last must be a whole number, 0 or more, not \"x\""
        )]
    );
    let per_destination = S3_OK.replace(
        "  config: {bucket_name",
        "  retention: {keep_lst: 2}\n  config: {bucket_name",
    );
    assert_eq!(
        problems(&per_destination),
        [
            "Invalid config - s3 destination \"primary\": unknown key destinations[0].retention.keep_lst; did you mean keep_last?"
        ]
    );
}
