//! The service-backup agent: its configuration, schedule, task database, backup and restore
//! jobs, HTTP API, daemon and commands. The `service-backup` binary is a thin shell over
//! [`cli::run`]; tests and fuzz targets call the modules directly.
//!
//! The modules stack from the commands down: `cli` → `daemon` → `api` → the jobs
//! (`runner`, `restoring`, `prune`) → `destinations`, `tasks`, `executables`, `lock` →
//! `config`, `schedule`, `logging`.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod destinations;
pub mod executables;
pub mod lock;
pub mod logging;
pub mod owner;
pub mod process;
pub mod progress;
pub mod prune;
pub mod restoring;
pub mod runner;
pub mod schedule;
pub mod store;
pub mod tasks;
