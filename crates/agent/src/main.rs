//! `service-backup`: the backup agent's one binary.

fn main() {}
