//! The error of an invalid configuration: every problem found, each one line.

use std::fmt;

/// Every problem found in a configuration, each one line in its final form:
/// `Invalid config - <problem>.`, followed by ` <missing_properties_message>` when the
/// problem is a missing value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<String>,
}

/// How a problem about missing values starts (the original's words).
const MISSING: &str = "Missing values for ";

impl ConfigError {
    /// Builds the final lines from bare problems (no trailing period) and the
    /// configuration's `missing_properties_message`, which follows only the
    /// `Missing values for …` problems, as in the original release: it tells the operator
    /// what to do about a missing setting, and reads wrongly after any other problem.
    pub(super) fn new(problems: Vec<String>, message: &str) -> Self {
        let problems = problems
            .into_iter()
            .map(|problem| {
                let problem = problem.trim().trim_end_matches('.');
                let message = if problem.starts_with(MISSING) {
                    message
                } else {
                    ""
                };
                // A question (`did you mean …?`) keeps its mark instead of a period.
                let stop = if problem.ends_with('?') { "" } else { "." };
                // Text from the file (a key, a value, the message) cannot start a line of
                // its own or send a terminal escape.
                super::section::escaped(
                    format!("Invalid config - {problem}{stop} {message}").trim_end(),
                )
            })
            .collect();
        Self { problems }
    }

    /// The problems, one line each, ready to print.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_prefix_one_period_and_the_message_where_values_are_missing() {
        let err = ConfigError::new(
            vec!["Missing values for s3: bucket_path.".into(), "a b".into()],
            "custom message",
        );
        assert_eq!(
            err.problems(),
            [
                "Invalid config - Missing values for s3: bucket_path. custom message",
                "Invalid config - a b.",
            ]
        );
        assert_eq!(err.to_string(), err.problems().join("\n"));
        let bare = ConfigError::new(vec!["x".into()], "");
        assert_eq!(bare.problems(), ["Invalid config - x."]);
        let question = ConfigError::new(vec!["unknown key a; did you mean b?".into()], "m");
        assert_eq!(
            question.problems(),
            ["Invalid config - unknown key a; did you mean b?"]
        );
    }
}
