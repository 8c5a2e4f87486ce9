//! The restore drills' datapoints in our `backup` type: when the last drill passed, and
//! whether the newest finished drill passed.

use service_backup_core::task::TaskState;

use super::Point;
use crate::tasks::store::Task;

/// `backup.drill.last_success_time`: unix seconds of the end of the newest drill that passed.
pub const LAST_SUCCESS: &str = "backup.drill.last_success_time";

/// `backup.drill.last_status`: 1 when the newest finished drill passed, 0 when it failed.
pub const LAST_STATUS: &str = "backup.drill.last_status";

/// The drill datapoints of `tasks` (the drill tasks, oldest first); none before a drill
/// finished.
pub fn points(tasks: &[Task]) -> Vec<Point> {
    let mut out = Vec::new();
    if let Some(t) = tasks.iter().rev().find(|t| t.state == TaskState::Done) {
        out.push(Point::new(
            LAST_SUCCESS,
            i128::from(t.updated_at.timestamp()),
        ));
    }
    if let Some(t) = tasks
        .iter()
        .rev()
        .find(|t| matches!(t.state, TaskState::Done | TaskState::Failed))
    {
        out.push(Point::new(
            LAST_STATUS,
            i128::from(t.state == TaskState::Done),
        ));
    }
    out
}
