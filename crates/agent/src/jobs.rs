//! The jobs a command, the daemon or the API runs, each recorded as a task: a backup, a
//! restore (or verify), and the prune of the destinations.

pub mod backup;
pub mod prune;
pub mod restore;
