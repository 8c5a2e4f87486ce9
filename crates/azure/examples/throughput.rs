//! Puts and gets one object of 256 MiB (or `SB_BENCH_MIB`) through the `azure`
//! destination and prints the rates: a measure of the client, against Azurite or an
//! account (`SB_TEST_AZURE_ENDPOINT`, `SB_TEST_AZURE_ACCOUNT`, `SB_TEST_AZURE_KEY`).
//! Run with `cargo run --release -p service-backup-azure --example throughput` under
//! `/usr/bin/time -v` for the peak memory.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt as _;
use service_backup_azure::{AzureDestination, AzureSettings};
use service_backup_core::destination::{Destination as _, RetryPolicy};
use service_backup_core::secret::Secret;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("set {name}"));
    let mib: usize = std::env::var("SB_BENCH_MIB").map_or(256, |v| v.parse().expect("a number"));
    let container = format!("bench-{}", std::process::id());
    let dest = AzureDestination::new(AzureSettings::with_access_key(
        &var("SB_TEST_AZURE_ACCOUNT"),
        Secret::new(var("SB_TEST_AZURE_KEY")),
        &container,
        &var("SB_TEST_AZURE_ENDPOINT"),
        RetryPolicy::default(),
    ))
    .expect("settings");
    let chunk = Bytes::from(vec![0x5a_u8; 1 << 20]);
    let started = Instant::now();
    let mut upload = dest.put_multipart("bench.bin").await.expect("upload");
    for _ in 0..mib {
        upload.write(chunk.clone()).await.expect("write");
    }
    upload.complete().await.expect("complete");
    let put = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut stream = dest.get("bench.bin").await.expect("get").chunks;
    let mut read = 0usize;
    while let Some(part) = stream.next().await {
        read += part.expect("read").len();
    }
    let get = started.elapsed().as_secs_f64();
    assert_eq!(read, mib << 20);
    println!(
        "{mib} MiB: put {put:.2} s ({:.0} MiB/s), get {get:.2} s ({:.0} MiB/s)",
        mib as f64 / put,
        mib as f64 / get
    );
    dest.delete_container().await.expect("clean up");
}
