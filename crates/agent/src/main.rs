//! `service-backup`: the backup agent's one binary.

// The command line that uses these modules is being written separately.
#![allow(dead_code)]

mod config;
mod schedule;

fn main() {}
