//! The task state machine: `queued → running → done | failed`, and `done → deleted`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind};

/// The state of a backup or restore task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Waiting for its turn.
    Queued,
    /// Being carried out.
    Running,
    /// Finished successfully.
    Done,
    /// Finished with an error.
    Failed,
    /// Its archive was removed.
    Deleted,
}

impl TaskState {
    /// Whether a task may move from this state to `next`.
    pub fn can_become(self, next: TaskState) -> bool {
        use TaskState::{Deleted, Done, Failed, Queued, Running};
        matches!(
            (self, next),
            (Queued, Running | Failed) | (Running, Done | Failed) | (Done, Deleted)
        )
    }

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "deleted" => Self::Deleted,
            other => {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("unknown task state {other:?}"),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::*;
    use super::*;

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        let all = [Queued, Running, Done, Failed, Deleted];
        let allowed = [
            (Queued, Running),
            (Queued, Failed),
            (Running, Done),
            (Running, Failed),
            (Done, Deleted),
        ];
        for a in all {
            for b in all {
                assert_eq!(a.can_become(b), allowed.contains(&(a, b)), "{a} -> {b}");
            }
            assert_eq!(a.as_str().parse::<TaskState>().unwrap(), a);
        }
    }
}
