//! The service-backup agent: its configuration, schedule, task database, backup and restore
//! jobs, HTTP API, daemon and commands. The `service-backup` binary is a thin shell over
//! [`cli::run`]; tests and fuzz targets call the modules directly.
//!
//! The modules stack from the commands down, each using only modules after it: `cli` →
//! `daemon` → `catch_up`, `drill` (restore drills), `alerts` → `api` → `jobs` (backup,
//! restore, prune) → `destinations`, `identity`, `queue`, `command`, `password` → `context` → `lock` →
//! `tasks` → `config` → `schedule`, `executables`, `progress`, `logging`, `owner`, `process`.

pub mod alerts;
pub mod api;
pub mod catalog;
pub mod catch_up;
pub mod cli;
pub mod command;
pub mod config;
pub mod context;
pub mod daemon;
pub mod destinations;
pub mod drill;
pub mod escape;
pub mod executables;
pub mod health;
pub mod identity;
pub mod jobs;
pub mod lock;
pub mod logging;
pub mod owner;
pub mod password;
pub mod process;
pub mod progress;
pub mod queue;
pub mod schedule;
pub mod tasks;
