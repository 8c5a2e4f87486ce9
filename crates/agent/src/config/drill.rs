//! The settings of restore drills: `verify_schedule` (when the newest backups are
//! downloaded and verified), `restore_check_executable` (what checks a backup restored
//! into a scratch folder) and `restore_check_timeout` (how long it may take), all at the
//! top level.

use super::section::{Problems, Section, scalar_text};
use std::time::Duration;

use crate::schedule::{Schedule, parse_duration};

/// How long the restore check executable may run when `restore_check_timeout` is absent.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_mins(30);

/// Settings of restore drills.
#[derive(Clone, Debug)]
pub struct DrillConfig {
    /// The schedule as written; `None`: no drills.
    pub verify_schedule: Option<String>,
    /// `verify_schedule`, parsed.
    pub schedule: Option<Schedule>,
    /// Command run in a scratch folder holding the restored backup; tokens split on spaces.
    pub check_executable: Option<String>,
    /// How long the restore check executable may run before it is stopped.
    pub check_timeout: Duration,
    /// `restore_check_timeout` as written, or the default's text.
    pub check_timeout_text: String,
}

impl Default for DrillConfig {
    fn default() -> Self {
        Self {
            verify_schedule: None,
            schedule: None,
            check_executable: None,
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            check_timeout_text: "30m".to_string(),
        }
    }
}

/// Reads `verify_schedule` and `restore_check_executable` from the top level.
pub(super) fn read_drill(top: &Section<'_>, problems: &mut Problems) -> DrillConfig {
    let verify_schedule = top
        .text("verify_schedule", problems)
        .map(|s| s.trim().to_string());
    if verify_schedule.is_none() && is_empty_text(top, "verify_schedule") {
        problems.push(
            "verify_schedule is empty: give a schedule such as \"0 5 * * 0\", or remove the key"
                .to_string(),
        );
    }
    // The same messages as a bad cron_schedule, under this key's name.
    let schedule = verify_schedule
        .as_deref()
        .and_then(|expr| match Schedule::parse(expr) {
            Ok(schedule) => Some(schedule),
            Err(why) => {
                problems.push(format!(
                    "verify_schedule \"{expr}\" is not a valid schedule: {why}"
                ));
                None
            }
        });
    let check_executable = top
        .text("restore_check_executable", problems)
        .map(|s| s.trim().to_string());
    if check_executable.is_none() && is_empty_text(top, "restore_check_executable") {
        problems.push(
            "restore_check_executable is empty: give the executable's full path, or remove the key"
                .to_string(),
        );
    }
    if let Some(program) = check_executable
        .as_deref()
        .and_then(|line| crate::executables::tokens(line).into_iter().next())
        && program.contains('/')
        && !program.starts_with('/')
    {
        // As `check` says of the other executables: the agent would resolve it against its
        // own working directory, which depends on how it is started.
        problems.push(format!(
            "restore_check_executable {program} is a relative path: give the executable's full path"
        ));
    }
    if check_executable.is_some() && verify_schedule.is_none() {
        problems.push(
            "restore_check_executable is set but verify_schedule is not: it runs only in restore drills"
                .to_string(),
        );
    }
    let mut config = DrillConfig {
        verify_schedule,
        schedule,
        check_executable,
        ..DrillConfig::default()
    };
    if let Some(text) = top.text("restore_check_timeout", problems) {
        let text = text.trim().to_string();
        match parse_duration(&text) {
            Ok(span) if span.num_seconds() <= 0 => problems.push(format!(
                "restore_check_timeout \"{text}\" is too short: give at least 1s, such as 30m"
            )),
            Ok(span) => {
                config.check_timeout = span.to_std().unwrap_or(DEFAULT_CHECK_TIMEOUT);
                config.check_timeout_text = text;
            }
            Err(why) => problems.push(format!("restore_check_timeout {why}")),
        }
    } else if is_empty_text(top, "restore_check_timeout") {
        problems.push(
            "restore_check_timeout is empty: give a duration such as 30m, or remove the key"
                .to_string(),
        );
    }
    config
}

/// Whether `key` is present with an empty text (which [`Section::text`] reads as absent).
fn is_empty_text(top: &Section<'_>, key: &str) -> bool {
    top.get(key)
        .and_then(scalar_text)
        .is_some_and(|t| t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    #[test]
    fn drills_read_their_schedule_and_check() {
        let config =
            parse("verify_schedule: ' @every 2s '\nrestore_check_executable: /bin/check --quick\n")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.drill.verify_schedule.as_deref(), Some("@every 2s"));
        assert!(config.drill.schedule.is_some());
        assert_eq!(
            config.drill.check_executable.as_deref(),
            Some("/bin/check --quick")
        );
        // A bare name is looked up in PATH, as the other executables are.
        let bare = parse("verify_schedule: '@daily'\nrestore_check_executable: check\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bare.drill.check_executable.as_deref(), Some("check"));
        let none = parse("").unwrap_or_else(|e| panic!("{e}"));
        assert!(none.drill.schedule.is_none() && none.drill.check_executable.is_none());
        assert_eq!(none.drill.check_timeout, super::DEFAULT_CHECK_TIMEOUT);
        let short = parse("verify_schedule: '@daily'\nrestore_check_timeout: 1m30s\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(short.drill.check_timeout.as_secs(), 90);
        assert_eq!(short.drill.check_timeout_text, "1m30s");
    }
}
