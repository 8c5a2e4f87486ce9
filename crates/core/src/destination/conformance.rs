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
    let total = (block.len() * blocks) as u64;
    for range in [
        0..10,
        1_048_570..1_048_600,
        3 * 1_048_583 - 1..5 * 1_048_583 + 2,
        total - 3..total,
        total - 3..total + 100,
        total..total + 5,
    ] {
        let mut object = dest
            .get_range(&p("big/archive.bin"), range.clone())
            .await
            .unwrap_or_else(|e| panic!("{what}: get range {range:?}: {e}"));
        let mut got = Vec::new();
        while let Some(chunk) = object.chunks.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        let expected: Vec<u8> = (range.start..range.end.min(total))
            .map(|i| block[usize::try_from(i).unwrap() % block.len()])
            .collect();
        assert_eq!(
            got.len(),
            expected.len(),
            "{what}: length of range {range:?}"
        );
        assert!(got == expected, "{what}: bytes of range {range:?}");
    }
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

    // list after a key: only what sorts after it, nothing outside the prefix
    let after: Vec<String> = dest
        .list_after(&p("tree/"), &p("tree/2026/11/22/a.json"))
        .await
        .unwrap_or_else(|e| panic!("{what}: list after: {e}"))
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        after,
        vec![p("tree/2026/11/23/b.json")],
        "{what}: list after"
    );
    assert!(
        dest.list_after(&p("tree/"), &p("tree/2026/11/23/b.json"))
            .await
            .unwrap()
            .is_empty(),
        "{what}: list after the last key"
    );
    assert_eq!(
        dest.list_after(&p("tree/"), "").await.unwrap().len(),
        2,
        "{what}: list after nothing"
    );
    // after a day folder: the whole folder and what follows; across folders of the year
    for (start, expected) in [
        (p("tree/2026/11/22/"), 2),
        (p("tree/2026/11/"), 2),
        (p("tree/2026/11/22/a"), 2),
        (p("tree/2026/11/22/b"), 1),
        (p("tree/2026/11/3"), 0),
        (p("tree/2025/12/31/z.json"), 2),
    ] {
        assert_eq!(
            dest.list_after(&p("tree/"), &start).await.unwrap().len(),
            expected,
            "{what}: list after {start}"
        );
    }

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
        dest.get_range(&p("missing.json"), 0..4)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound,
        "{what}: get range of a missing object"
    );
    assert_eq!(
        missing.kind(),
        ErrorKind::NotFound,
        "{what}: get missing: {missing}"
    );
}

/// Checks that a listing follows every page: `dest` must be set to pages of 2 objects;
/// writes 8 objects under `prefix`.
pub async fn lists_every_page(dest: &dyn Destination, prefix: &str) {
    let what = dest.describe();
    for i in 0..7 {
        dest.put(
            &format!("{prefix}/p/{i}/m.json"),
            Bytes::from(vec![b'x'; i]),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: put page object: {e}"));
    }
    dest.put(&format!("{prefix}/q/other.json"), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let mut listed = dest.list(&format!("{prefix}/p/")).await.unwrap();
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        (0..7)
            .map(|i| format!("{prefix}/p/{i}/m.json"))
            .collect::<Vec<_>>(),
        "{what}: pages"
    );
    assert_eq!(listed[5].size, 5, "{what}: size");
    assert!(
        listed.iter().all(|o| o.last_modified.is_some()),
        "{what}: last modified"
    );
    assert_eq!(
        dest.list(&format!("{prefix}/")).await.unwrap().len(),
        8,
        "{what}: both prefixes"
    );
}

/// Checks [`Destination::list_page`]: writes 11 objects under `prefix` (in folders, and one
/// beside them that must not be listed), then lists them `limit` at a time, each page after
/// the last key of the one before, and again after keys that are not objects. Every key
/// comes exactly once and in order, no page holds more than `most` keys (about a page: a
/// store may round `limit` up to its own page size), and the listing took several pages.
pub async fn lists_page_by_page(dest: &dyn Destination, prefix: &str, limit: usize, most: usize) {
    let what = dest.describe();
    let mut want = Vec::new();
    for (folder, n) in [("2026/12/01", 4), ("2026/12/02", 1), ("2026/12/03", 6)] {
        for i in 0..n {
            let key = format!("{prefix}/p/{folder}/b{i:02}.json");
            dest.put(&key, Bytes::from(vec![b'x'; i]))
                .await
                .unwrap_or_else(|e| panic!("{what}: put {key}: {e}"));
            want.push(key);
        }
    }
    dest.put(&format!("{prefix}/q.json"), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    want.sort();
    let listing = format!("{prefix}/p/");
    let pages_after = |start: String| {
        let listing = listing.clone();
        let what = what.clone();
        async move {
            let (mut keys, mut pages, mut after) = (Vec::new(), 0, start);
            loop {
                let (page, more) = dest
                    .list_page(&listing, &after, limit)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: list page after {after:?}: {e}"));
                pages += 1;
                assert!(
                    page.len() <= most,
                    "{what}: a page of {} keys for a limit of {limit}",
                    page.len()
                );
                assert!(pages <= 100, "{what}: the pages do not end");
                keys.extend(page.iter().map(|o| o.key.clone()));
                match page.last() {
                    Some(last) if more => after.clone_from(&last.key),
                    _ => {
                        assert!(!more, "{what}: an empty page says more follow");
                        return (keys, pages);
                    }
                }
            }
        }
    };
    let (keys, pages) = pages_after(String::new()).await;
    assert_eq!(keys, want, "{what}: the keys of every page, in order");
    assert!(
        pages >= want.len().div_ceil(most),
        "{what}: {pages} pages for {} keys",
        want.len()
    );
    assert!(pages > 1, "{what}: one page of {} keys", want.len());
    // After a key that is no object: a folder's name, a key between two others.
    let (keys, _) = pages_after(format!("{prefix}/p/2026/12/02")).await;
    assert_eq!(keys, want[4..], "{what}: after a folder's name");
    let (keys, _) = pages_after(format!("{prefix}/p/2026/12/03/b02.jsonx")).await;
    assert_eq!(keys, want[8..], "{what}: after a key between two");
    let (keys, pages) = pages_after(want[want.len() - 1].clone()).await;
    assert!(
        keys.is_empty() && pages == 1,
        "{what}: after the last key: {keys:?}"
    );
    let (page, _) = dest.list_page(&listing, "", most).await.unwrap();
    assert_eq!(page[2].size, 2, "{what}: size");
    assert!(
        page.iter().all(|o| o.last_modified.is_some()),
        "{what}: last modified"
    );
}

/// Checks that a 9 MiB object reads back as a stream of several chunks (each at most
/// `max_chunk` bytes, when given), that a reader may stop early, and that a small read's
/// limit still applies afterwards.
pub async fn reads_stream_and_stop_when_dropped(
    dest: &dyn Destination,
    key: &str,
    max_chunk: Option<usize>,
) {
    let what = dest.describe();
    // Not a multiple of a read range, with a tail smaller than one.
    let data: Vec<u8> = (0..9 * 1024 * 1024 + 123)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut upload = dest.put_multipart(key).await.unwrap();
    for chunk in data.chunks(1024 * 1024) {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    upload.complete().await.unwrap();

    let object = dest.get(key).await.unwrap();
    assert_eq!(object.size, Some(data.len() as u64), "{what}: size");
    let chunks: Vec<Bytes> = object.chunks.map(Result::unwrap).collect().await;
    assert!(chunks.len() > 1, "{what}: {} chunks", chunks.len());
    if let Some(max) = max_chunk {
        assert!(
            chunks.len() >= data.len().div_ceil(max),
            "{what}: {} chunks",
            chunks.len()
        );
        assert!(chunks.iter().all(|c| c.len() <= max), "{what}: chunk size");
    }
    assert!(chunks.concat() == data, "{what}: the content differs");

    // A reader that stops early: the stream is dropped without harm.
    let mut object = dest.get(key).await.unwrap();
    let first = object.chunks.next().await.unwrap().unwrap();
    assert_eq!(&first[..], &data[..first.len()], "{what}: first chunk");
    drop(object);
    assert_eq!(
        get_small(dest, key, 1024).await.unwrap_err().kind(),
        ErrorKind::Corrupt,
        "{what}: a limit still applies"
    );
}

/// Checks that a destination whose server is unreachable fails a write within seconds (its
/// default retry policy included) with a temporary error, and returns that error for the
/// caller's checks of its words.
pub async fn unreachable_fails_within_seconds(dest: &dyn Destination) -> crate::Error {
    let what = dest.describe();
    let start = std::time::Instant::now();
    let err = dest
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .expect_err("a write to an unreachable server succeeded");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "{what}: {:?}",
        start.elapsed()
    );
    assert!(err.is_temporary(), "{what}: {err}");
    err
}
