//! The conformance suite every [`Destination`] must pass, run by each destination crate
//! against its real server and by `core` against a temporary directory.

use bytes::Bytes;
use futures::StreamExt as _;

use super::{Destination, get_small};
use crate::error::ErrorKind;

/// Runs every check under `prefix` (which should be unique to the run); panics with a
/// message naming the failed check.
pub async fn run_all(dest: &dyn Destination, prefix: &str) {
    let p = |k: &str| format!("{prefix}/{k}");
    let what = dest.describe();

    // put small, get, overwrite
    dest.put(&p("small.json"), Bytes::from_static(b"{\"a\":1}"))
        .await
        .unwrap_or_else(|e| panic!("{what}: put small: {e}"));
    assert_eq!(
        get_small(dest, &p("small.json"), 1024).await.unwrap(),
        b"{\"a\":1}",
        "{what}: get small"
    );
    dest.put(&p("small.json"), Bytes::from_static(b"{\"a\":2}"))
        .await
        .unwrap();
    assert_eq!(
        get_small(dest, &p("small.json"), 1024).await.unwrap(),
        b"{\"a\":2}",
        "{what}: overwrite"
    );

    // empty object
    dest.put(&p("empty"), Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("{what}: put empty: {e}"));
    assert!(
        get_small(dest, &p("empty"), 16).await.unwrap().is_empty(),
        "{what}: get empty"
    );

    // streamed upload is invisible until complete; large objects across many parts
    let mut upload = dest.put_multipart(&p("big/archive.bin")).await.unwrap();
    let block: Vec<u8> = (0u32..1024 * 1024 + 7).map(|i| (i % 253) as u8).collect();
    let blocks = 12;
    for _ in 0..blocks {
        upload
            .write(Bytes::from(block.clone()))
            .await
            .unwrap_or_else(|e| panic!("{what}: write part: {e}"));
        let listed = dest.list(&p("big/")).await.unwrap();
        assert!(
            listed.is_empty(),
            "{what}: an incomplete upload is listed: {listed:?}"
        );
    }
    upload
        .complete()
        .await
        .unwrap_or_else(|e| panic!("{what}: complete: {e}"));
    let listed = dest.list(&p("big/")).await.unwrap();
    assert_eq!(listed.len(), 1, "{what}: {listed:?}");
    assert_eq!(listed[0].key, p("big/archive.bin"));
    assert_eq!(listed[0].size, (block.len() * blocks) as u64);
    let mut object = dest.get(&p("big/archive.bin")).await.unwrap();
    let mut offset = 0usize;
    while let Some(chunk) = object.chunks.next().await {
        let chunk = chunk.unwrap();
        for (i, b) in chunk.iter().enumerate() {
            assert_eq!(
                *b,
                block[(offset + i) % block.len()],
                "{what}: byte {} differs",
                offset + i
            );
        }
        offset += chunk.len();
    }
    assert_eq!(offset, block.len() * blocks, "{what}: streamed size");

    // abort leaves nothing
    let mut aborted = dest.put_multipart(&p("aborted/x.bin")).await.unwrap();
    aborted.write(Bytes::from(block.clone())).await.unwrap();
    aborted
        .abort()
        .await
        .unwrap_or_else(|e| panic!("{what}: abort: {e}"));
    assert!(
        dest.list(&p("aborted/")).await.unwrap().is_empty(),
        "{what}: aborted upload is listed"
    );
    assert_eq!(
        dest.get(&p("aborted/x.bin")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // list under a prefix, at any depth, and nothing outside it
    dest.put(&p("tree/2026/11/22/a.json"), Bytes::from_static(b"a"))
        .await
        .unwrap();
    dest.put(&p("tree/2026/11/23/b.json"), Bytes::from_static(b"b"))
        .await
        .unwrap();
    dest.put(&p("treeish/c.json"), Bytes::from_static(b"c"))
        .await
        .unwrap();
    let mut keys: Vec<String> = dest
        .list(&p("tree/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![p("tree/2026/11/22/a.json"), p("tree/2026/11/23/b.json")],
        "{what}: list"
    );
    assert!(dest.list(&p("nothing-here/")).await.unwrap().is_empty());

    // delete, and deleting again is fine; missing objects are NotFound
    dest.delete(&p("tree/2026/11/22/a.json")).await.unwrap();
    dest.delete(&p("tree/2026/11/22/a.json"))
        .await
        .unwrap_or_else(|e| panic!("{what}: delete twice: {e}"));
    assert_eq!(
        dest.list(&p("tree/")).await.unwrap().len(),
        1,
        "{what}: after delete"
    );
    let missing = dest.get(&p("missing.json")).await.unwrap_err();
    assert_eq!(
        missing.kind(),
        ErrorKind::NotFound,
        "{what}: get missing: {missing}"
    );
}
