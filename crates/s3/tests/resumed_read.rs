//! Streamed reads against moto (started by `tests/run.sh`): the bytes arrive whole and in
//! order whatever the object's size, a connection reset mid-body is resumed where it
//! stopped rather than from the start, and an object rewritten before a resume fails the
//! read without yielding a byte of the new object.

mod common;

use bytes::Bytes;
use common::settings;
use futures::StreamExt as _;
use service_backup_core::ErrorKind;
use service_backup_core::destination::{Destination, ObjectStream};
use service_backup_s3::S3Destination;
use service_backup_s3::read::READ_AHEAD;
use service_backup_testkit::{Faults, Relay, env, port_of, unique};

const MIB: usize = 1024 * 1024;

/// `len` bytes that differ from one position to the next (a byte out of place shows),
/// varied by `seed`.
fn content(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let i = i as u32;
            (i.wrapping_mul(2_654_435_761) ^ (i >> 13) ^ seed.wrapping_mul(97)) as u8
        })
        .collect()
}

/// Writes `data` under `key` in 1 MiB writes, as a backup does.
async fn write(dest: &S3Destination, key: &str, data: &[u8]) {
    let mut upload = dest.put_multipart(key).await.unwrap();
    for piece in data.chunks(MIB) {
        upload.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    upload.complete().await.unwrap();
}

/// Every byte of `object`, or the bytes before the first error and that error.
async fn drain(mut object: ObjectStream) -> (Vec<u8>, Option<service_backup_core::Error>) {
    let mut out = Vec::new();
    while let Some(chunk) = object.chunks.next().await {
        match chunk {
            Ok(c) => {
                assert!(!c.is_empty(), "an empty chunk was yielded");
                out.extend_from_slice(&c);
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_arrive_whole_and_in_order() {
    let dest =
        S3Destination::new(&settings(&env("SB_TEST_S3_ENDPOINT"), &unique("whole"))).unwrap();
    let ahead = READ_AHEAD;
    // Empty, one byte, the read-ahead exactly, one byte more, and many times it.
    for (i, len) in [0, 1, ahead, ahead + 1, 5 * ahead + 12_345]
        .into_iter()
        .enumerate()
    {
        let data = content(len, i as u32);
        let key = format!("r/{len}.bin");
        write(&dest, &key, &data).await;
        let object = dest.get(&key).await.unwrap();
        assert_eq!(object.size, Some(len as u64), "{key}");
        let (got, err) = drain(object).await;
        assert!(err.is_none(), "{key}: {err:?}");
        assert_eq!(got.len(), len, "{key}");
        if let Some(at) = got.iter().zip(&data).position(|(a, b)| a != b) {
            panic!("{key}: byte {at} differs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_body_resumes_where_it_stopped() {
    let endpoint = env("SB_TEST_S3_ENDPOINT");
    let bucket = unique("reset");
    let direct = S3Destination::new(&settings(&endpoint, &bucket)).unwrap();
    let len = 6 * READ_AHEAD + 777;
    let data = content(len, 7);
    write(&direct, "a.bin", &data).await;

    let relay = Relay::raw(port_of(&endpoint));
    let through = S3Destination::new(&settings(&relay.url(""), &bucket)).unwrap();
    // Well into the body.
    relay.set(Faults {
        reset_answers_at: Some(2 * READ_AHEAD as u64 + 4321),
        ..Faults::default()
    });
    let (got, err) = drain(through.get("a.bin").await.unwrap()).await;
    assert!(err.is_none(), "the reset was not retried: {err:?}");
    assert!(relay.counts().resets == 1, "the connection was never reset");
    assert_eq!(got.len(), len);
    if let Some(at) = got.iter().zip(&data).position(|(a, b)| a != b) {
        panic!("byte {at} differs after the resumed read");
    }
    // The object was not read again from the start: at most what was in flight again.
    let relayed = relay.counts().down;
    assert!(
        relayed < (len + 2 * READ_AHEAD) as u64,
        "{relayed} bytes relayed for an object of {len}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_rewritten_before_a_resume_fails_the_read() {
    let endpoint = env("SB_TEST_S3_ENDPOINT");
    let bucket = unique("changed");
    let direct = S3Destination::new(&settings(&endpoint, &bucket)).unwrap();
    let len = 6 * READ_AHEAD;
    let old = content(len, 1);
    let new = content(len, 2);
    write(&direct, "a.bin", &old).await;

    let relay = Relay::raw(port_of(&endpoint));
    let through = S3Destination::new(&settings(&relay.url(""), &bucket)).unwrap();
    // The read starts, the object is rewritten, then the connection is cut: the resume
    // finds another object under the key.
    relay.set(Faults {
        reset_answers_at: Some(4 * READ_AHEAD as u64),
        ..Faults::default()
    });
    let object = through.get("a.bin").await.unwrap();
    write(&direct, "a.bin", &new).await;
    let (got, err) = drain(object).await;
    assert!(relay.counts().resets == 1, "the connection was never reset");
    let err = err.expect("a read across a rewrite succeeded");
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(
        text.contains("a.bin changed while it was being read"),
        "{text}"
    );
    assert!(!err.is_temporary(), "{text}");
    assert!(err.hint().unwrap().contains("restore again"), "{text}");
    // Only bytes of the old object were yielded, up to the cut.
    assert!(got.len() < len, "{} bytes of {len} yielded", got.len());
    assert!(
        got == old[..got.len()],
        "bytes of the new object were yielded"
    );

    // Read again, the new object is whole.
    let (got, err) = drain(direct.get("a.bin").await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert!(got == new, "the rewritten object differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_not_found() {
    let dest =
        S3Destination::new(&settings(&env("SB_TEST_S3_ENDPOINT"), &unique("missing"))).unwrap();
    dest.put("marker", Bytes::new()).await.unwrap();
    let err = dest.get("nothing.bin").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_fails_within_the_bound() {
    // A GetObject answer whose 10 MiB body comes a byte every 200 ms: each read makes
    // "progress", so only a bound on the pace ends it.
    let (port, answered) = service_backup_testkit::trickling_server(
        "Content-Length: 10485760\r\nETag: \"abc\"\r\n",
        std::time::Duration::from_millis(200),
    );
    let bucket = unique("trickle");
    let mut s = settings(&format!("http://127.0.0.1:{port}"), &bucket);
    s.request_timeout = std::time::Duration::from_secs(1);
    let dest = S3Destination::new(&s).unwrap();
    let started = std::time::Instant::now();
    let (got, err) = drain(dest.get("2026/12/06/x.tar.gz.enc").await.unwrap()).await;
    let err = err.expect("a trickling body is an error");
    assert!(got.len() < 1000, "{}", got.len());
    let text = err.to_string();
    assert!(text.contains(&format!("s3 bucket {bucket}")), "{text}");
    assert!(text.contains("fewer than 64 KiB came in 1 s"), "{text}");
    // one open, then each resume stalls again: the resumes run out
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(15), "{elapsed:?}");
    assert_eq!(
        answered.load(std::sync::atomic::Ordering::SeqCst),
        u64::from(service_backup_s3::read::MAX_RESUMES) + 1
    );
}
