//! Uploads as blocks: Put Block for each full block, at most [`MAX_IN_FLIGHT`] at a time,
//! then Put Block List at `complete()`, which makes the blob visible in one step.
//!
//! Memory is bounded by the block being filled plus the blocks in flight: three blocks,
//! 12 MiB at the start, whatever the size of the object. An object that fits in one block
//! is written with one Put Blob instead. Blocks of an upload that is aborted or dropped are
//! never committed; the service discards them (after 7 days on Azure).
//!
//! With immutability configured, the request that makes the blob visible (Put Blob or Put
//! Block List) carries the policy: until now plus the configured days, in its mode.

use std::num::NonZero;
use std::sync::Arc;

use azure_core::http::RequestContent;
use azure_storage_blob::BlockBlobClient;
use azure_storage_blob::models::{
    BlockBlobClientCommitBlockListOptions, BlockBlobClientUploadOptions, BlockLookupList,
    ImmutabilityPolicyMode,
};
use bytes::{Bytes, BytesMut};
use service_backup_core::destination::{Immutability, LockMode};
use service_backup_core::{Error, ErrorKind, Result};
use time::OffsetDateTime;
use tokio::task::JoinSet;

use crate::store::Store;

/// Size of the first blocks.
const FIRST_BLOCK: usize = 4 * 1024 * 1024;
/// The block size doubles after this many blocks.
const BLOCKS_PER_SIZE: usize = 10_000;
/// The service's limit of blocks in one blob.
const MAX_BLOCKS: usize = 50_000;
/// Blocks uploaded at the same time.
const MAX_IN_FLIGHT: usize = 2;

/// The size of block number `index` (from 0): 4 MiB for the first 10,000 blocks, then
/// doubling every 10,000, so that 50,000 blocks hold more than 1 TiB (64 MiB at most).
pub(crate) fn block_size(index: usize) -> usize {
    FIRST_BLOCK << (index / BLOCKS_PER_SIZE).min(4)
}

/// The id of block `index` of upload `upload`: the same length for every block of a blob,
/// as the service requires, and unique to the upload.
fn block_id(upload: &str, index: usize) -> Vec<u8> {
    format!("{upload}-{index:06}").into_bytes()
}

/// The immutability headers' values for blob `key` written `now`: none for the probes of
/// `check`, which it deletes again at once.
fn policy(
    immutability: Option<Immutability>,
    key: &str,
    now: OffsetDateTime,
) -> (Option<OffsetDateTime>, Option<ImmutabilityPolicyMode>) {
    match immutability {
        Some(Immutability { mode, days }) if Immutability::applies_to(key) => (
            Some(now + time::Duration::days(i64::from(days))),
            Some(match mode {
                LockMode::Governance => ImmutabilityPolicyMode::Unlocked,
                LockMode::Compliance => ImmutabilityPolicyMode::Locked,
            }),
        ),
        _ => (None, None),
    }
}

/// An object being written as blocks.
pub(crate) struct BlockUpload {
    store: Arc<Store>,
    blob: Arc<BlockBlobClient>,
    key: String,
    /// Random, so that blocks left by an earlier attempt at the same key never mix in.
    upload_id: String,
    /// The block being filled.
    buffer: BytesMut,
    /// Ids of the blocks sent so far, in order.
    blocks: Vec<Vec<u8>>,
    in_flight: JoinSet<Result<()>>,
    /// Set once a block failed: the upload cannot be completed.
    failed: bool,
}

impl BlockUpload {
    pub fn new(store: Arc<Store>, key: String) -> Result<Self> {
        let upload_id = service_backup_core::random::hex_token(8)?;
        Ok(Self {
            blob: Arc::new(store.container.blob_client(&key).block_blob_client()),
            store,
            key,
            upload_id,
            buffer: BytesMut::new(),
            blocks: Vec::new(),
            in_flight: JoinSet::new(),
            failed: false,
        })
    }

    /// Sends the filled buffer as the next block, waiting for room among the blocks in
    /// flight first.
    async fn send_block(&mut self) -> Result<()> {
        if self.blocks.len() >= MAX_BLOCKS {
            self.failed = true;
            return Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "{}: cannot upload {}: it is larger than the {MAX_BLOCKS} blocks a blob may hold",
                    self.store.describe(),
                    self.key
                ),
            ));
        }
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.join_one().await?;
        }
        let data = std::mem::take(&mut self.buffer).freeze();
        let index = self.blocks.len();
        let id = block_id(&self.upload_id, index);
        self.blocks.push(id.clone());
        let (store, blob, key) = (self.store.clone(), self.blob.clone(), self.key.clone());
        self.in_flight
            .spawn(async move { put_block(&store, &blob, &key, index, id, data).await });
        Ok(())
    }

    /// Waits for one block in flight and returns its failure, if any.
    async fn join_one(&mut self) -> Result<()> {
        let result = match self.in_flight.join_next().await {
            None => return Ok(()),
            Some(joined) => joined.unwrap_or_else(|e| Err(self.task_failed(&e))),
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Collects the blocks that already finished, so a failure shows at the next write.
    fn reap(&mut self) -> Result<()> {
        while let Some(joined) = self.in_flight.try_join_next() {
            if let Err(e) = joined.unwrap_or_else(|e| Err(self.task_failed(&e))) {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(())
    }

    fn task_failed(&self, e: &tokio::task::JoinError) -> Error {
        Error::new(
            ErrorKind::Destination,
            format!(
                "{}: the upload of a block of {} stopped: {e}",
                self.store.describe(),
                self.key
            ),
        )
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "{}: the upload of {} failed earlier and cannot go on",
                    self.store.describe(),
                    self.key
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl service_backup_core::destination::Upload for BlockUpload {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        self.check_usable()?;
        self.reap()?;
        while !data.is_empty() {
            let size = block_size(self.blocks.len());
            let take = (size - self.buffer.len()).min(data.len());
            if self.buffer.capacity() - self.buffer.len() < take {
                // The first write of a block gets room for itself only, so that small
                // objects stay small; the next one gets room for the whole block at once.
                let room = if self.buffer.is_empty() {
                    take
                } else {
                    size - self.buffer.len()
                };
                self.buffer.reserve(room);
            }
            self.buffer.extend_from_slice(&data.split_to(take));
            if self.buffer.len() == size {
                self.send_block().await?;
            }
        }
        Ok(())
    }

    async fn complete(mut self: Box<Self>) -> Result<()> {
        self.check_usable()?;
        if self.blocks.is_empty() {
            // One block's worth or less: a single Put Blob, visible at once.
            let data = std::mem::take(&mut self.buffer).freeze();
            let (store, blob, key) = (&self.store, &self.blob, &self.key);
            let size = NonZero::new(data.len() as u64).unwrap_or(NonZero::<u64>::MIN);
            return store
                .retry
                .run("put blob", || async {
                    let (until, mode) = policy(store.immutability, key, OffsetDateTime::now_utc());
                    let options = BlockBlobClientUploadOptions {
                        immutability_policy_expiry: until,
                        immutability_policy_mode: mode,
                        // Never split: one request, visible at once.
                        partition_size: Some(size),
                        parallel: NonZero::new(1),
                        ..BlockBlobClientUploadOptions::default()
                    };
                    blob.upload(data.clone().into(), Some(options))
                        .await
                        .map(|_| ())
                        .map_err(|e| store.error(&format!("upload {key}"), e))
                })
                .await;
        }
        if !self.buffer.is_empty() {
            self.send_block().await?;
        }
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        // `Latest` rather than `Uncommitted`: a retried commit whose first attempt did
        // land finds the same blocks committed, and succeeds again.
        let list = BlockLookupList {
            latest: Some(self.blocks.clone()),
            ..BlockLookupList::default()
        };
        let (store, blob, key) = (&self.store, &self.blob, &self.key);
        let what = format!("commit the blocks of {key}");
        store
            .retry
            .run("put block list", || async {
                let (until, mode) = policy(store.immutability, key, OffsetDateTime::now_utc());
                let options = BlockBlobClientCommitBlockListOptions {
                    immutability_policy_expiry: until,
                    immutability_policy_mode: mode,
                    ..BlockBlobClientCommitBlockListOptions::default()
                };
                let content =
                    RequestContent::try_from(list.clone()).map_err(|e| store.error(&what, e))?;
                blob.commit_block_list(content, Some(options))
                    .await
                    .map(|_| ())
                    .map_err(|e| store.error(&what, e))
            })
            .await
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        // Stop the blocks in flight; the blocks already sent stay uncommitted, invisible,
        // until the service discards them.
        self.in_flight.shutdown().await;
        self.buffer = BytesMut::new();
        Ok(())
    }
}

/// Sends one block, retrying temporary failures.
async fn put_block(
    store: &Store,
    blob: &BlockBlobClient,
    key: &str,
    index: usize,
    id: Vec<u8>,
    data: Bytes,
) -> Result<()> {
    store
        .retry
        .run("put block", || async {
            blob.stage_block(&id, data.len() as u64, data.clone().into(), None)
                .await
                .map(|_| ())
                .map_err(|e| store.error(&format!("upload block {index} of {key}"), e))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AzureDestination;
    use crate::settings::AzureSettings;
    use service_backup_core::destination::{Destination as _, RetryPolicy, Upload as _};
    use service_backup_core::secret::Secret;
    use service_backup_testkit::{env, unique};

    /// Against the server of tests/run.sh: the service refuses a block list naming a block
    /// it never received, and nothing becomes visible.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_naming_a_block_never_uploaded_is_refused() {
        let container = unique("refused");
        let dest = AzureDestination::new(AzureSettings::with_access_key(
            &env("SB_TEST_AZURE_ACCOUNT"),
            Secret::new(env("SB_TEST_AZURE_KEY")),
            &container,
            &env("SB_TEST_AZURE_ENDPOINT"),
            RetryPolicy::none(),
        ))
        .unwrap();
        dest.ensure_container().await.unwrap();
        let mut upload = BlockUpload::new(dest.store.clone(), "k/archive.bin".into()).unwrap();
        for _ in 0..5 {
            upload
                .write(Bytes::from(vec![1u8; 1024 * 1024]))
                .await
                .unwrap();
        }
        let lost = block_id(&upload.upload_id, 99);
        upload.blocks.push(lost);
        let err = Box::new(upload).complete().await.unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
        assert!(
            text.starts_with(&format!(
                "azure {}/{container}: cannot commit the blocks of k/archive.bin: the service refused the block list (400 InvalidBlockList)",
                env("SB_TEST_AZURE_ACCOUNT")
            )),
            "{text}"
        );
        assert!(
            err.hint().unwrap().contains("run the backup again"),
            "{text}"
        );
        assert!(dest.list("").await.unwrap().is_empty());
        assert_eq!(
            dest.get("k/archive.bin").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn blocks_grow_so_that_the_block_limit_holds_over_a_tebibyte() {
        assert_eq!(block_size(0), 4 << 20);
        assert_eq!(block_size(9_999), 4 << 20);
        assert_eq!(block_size(10_000), 8 << 20);
        assert_eq!(block_size(MAX_BLOCKS - 1), 64 << 20);
        assert_eq!(block_size(10 * MAX_BLOCKS), 64 << 20, "never larger");
        let capacity: u64 = (0..MAX_BLOCKS).map(|i| block_size(i) as u64).sum();
        assert!(capacity > 1 << 40, "{capacity}");
    }

    #[test]
    fn block_ids_have_one_length() {
        let a = block_id("0123456789abcdef", 0);
        let b = block_id("0123456789abcdef", MAX_BLOCKS - 1);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
    }
}
