//! The settings of restore drills: `verify_schedule` (when the newest backups are
//! downloaded and verified) and `restore_check_executable` (what checks a backup restored
//! into a scratch folder), both at the top level.

use super::section::{Problems, Section, scalar_text};
use crate::schedule::Schedule;

/// Settings of restore drills.
#[derive(Clone, Debug, Default)]
pub struct DrillConfig {
    /// The schedule as written; `None`: no drills.
    pub verify_schedule: Option<String>,
    /// `verify_schedule`, parsed.
    pub schedule: Option<Schedule>,
    /// Command run in a scratch folder holding the restored backup; tokens split on spaces.
    pub check_executable: Option<String>,
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
    DrillConfig {
        verify_schedule,
        schedule,
        check_executable,
    }
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
    }
}
