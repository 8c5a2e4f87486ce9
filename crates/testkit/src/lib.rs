//! What the tests of the workspace share, so that no crate's `tests/common` copies another's:
//! the variables `tests/run.sh` exports, unique names, free ports, quick retries, servers of
//! a test's own ([`server`], [`emulators`]), the fault relay ([`relay`]), sample trees
//! ([`trees`]) and backup plans ([`backups`]).
//!
//! A dev-dependency only: nothing in it ships.

pub mod backups;
pub mod certs;
pub mod emulators;
pub mod hostile;
pub mod relay;
pub mod server;
pub mod trees;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use service_backup_core::destination::RetryPolicy;

pub use backups::{StopAt, assert_nothing_left, backup_into, backup_plan};
pub use certs::private_ca;
pub use emulators::{Sshd, azurite, azurite_endpoint, fake_gcs, moto};
pub use hostile::{endless_error_server, trickling_server};
pub use relay::{Counts, Faults, Matcher, Relay, request};
pub use server::ServerProcess;
pub use trees::{
    dump_file, files_below, incompressible, noise_file, noisy_source, sample_tree, tree,
};

/// A variable that `tests/run.sh` exports for a test server; the test fails without it
/// (a missing server never skips a test).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through tests/run.sh, which starts the test servers"
        )
    })
}

/// A name no other test run uses: `WHAT-PID-NANOS-N`, lowercase letters, digits and single
/// dashes when `what` is, so also a valid bucket or container name.
pub fn unique(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{what}-{}-{nanos:09}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A free TCP port on 127.0.0.1 (bound, then released): nothing listens on it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port of an endpoint URL (`http://127.0.0.1:PORT/path`).
pub fn port_of(endpoint: &str) -> u16 {
    let rest = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let authority = rest.split('/').next().unwrap();
    authority
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no port in {endpoint}"))
}

/// Retries that give up within a few seconds, for tests that expect failures.
pub fn quick_retry() -> RetryPolicy {
    quick_retry_within(Duration::from_millis(50), Duration::from_secs(5))
}

/// Three attempts, the first retry after `backoff` (at most four times that later), all
/// within `budget`.
pub fn quick_retry_within(backoff: Duration, budget: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: backoff,
        max_backoff: backoff * 4,
        budget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_suit_buckets() {
        let (a, b) = (unique("run"), unique("run"));
        assert_ne!(a, b);
        assert!(a.starts_with("run-"), "{a}");
        assert!(a.len() <= 63, "{a}");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "{a}"
        );
        assert!(!a.contains("--"), "{a}");
    }

    #[test]
    fn ports_are_read_from_endpoints() {
        assert_eq!(port_of("http://127.0.0.1:9000"), 9000);
        assert_eq!(port_of("http://127.0.0.1:10000/devstoreaccount1"), 10000);
        assert_eq!(port_of("127.0.0.1:22/"), 22);
    }
}
