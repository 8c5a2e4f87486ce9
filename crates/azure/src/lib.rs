//! The `azure` destination: a container of Azure Blob storage (or a compatible service,
//! such as the Azurite emulator), reached with the storage account's shared key, a shared
//! access signature or the VM's managed identity.
//!
//! An archive is uploaded as blocks (Put Block) and made visible in one step by committing
//! the block list (Put Block List) when it is complete; until then the container lists
//! nothing under its name. Blocks of an upload that is aborted, dropped or interrupted are
//! never committed: the service discards uncommitted blocks by itself (after 7 days on
//! Azure). Small objects (manifests) are written with one Put Blob, atomic as well.
//!
//! With immutability configured, every blob is written with a version-level immutability
//! policy (`x-ms-immutability-policy-until-date` and `-mode` on the Put Blob or Put Block
//! List that makes it visible); a deletion the policy refuses is an error of its own.
//!
//! The container is created by the first write if it is missing; reads never create it.
//! Nothing touches the network before the first request, so building a destination is
//! cheap and cannot fail on a network problem.

mod errors;
mod identity;
mod read;
mod settings;
mod shared_key;
mod store;
mod transport;
mod upload;

#[cfg(test)]
mod tests;

use std::fmt;
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use azure_storage_blob::models::BlobContainerClientListBlobsOptions;
use futures::StreamExt as _;
use service_backup_core::destination::{
    Destination, IncompleteUpload, ListingGuard, ObjectMeta, ObjectStream, Upload,
};
use service_backup_core::{Error, ErrorKind, Result};

use crate::errors::is_not_found;
pub use crate::settings::{
    AzureCredentials, AzureSettings, DEFAULT_STALL_TIMEOUT, ManagedIdentity, PUBLIC_CLOUD_DOMAIN,
};
use crate::store::Store;

/// Objects listed per request (the service's maximum is 5000).
const LIST_PAGE_SIZE: u32 = 5000;

/// A destination in an Azure Blob storage container.
pub struct AzureDestination {
    store: Arc<Store>,
    container_ready: tokio::sync::OnceCell<()>,
    list_page_size: NonZeroU32,
    /// Where the listing of the last page handed out goes on.
    next_page: service_backup_core::destination::listing::NextPages,
}

impl AzureDestination {
    /// A destination for `settings`; checks them but makes no request (the first
    /// request connects).
    pub fn new(settings: AzureSettings) -> Result<Self> {
        Ok(Self {
            store: Arc::new(Store::new(settings)?),
            container_ready: tokio::sync::OnceCell::new(),
            list_page_size: NonZeroU32::new(LIST_PAGE_SIZE).expect("not zero"),
            next_page: service_backup_core::destination::listing::NextPages::default(),
        })
    }

    /// Lists `page_size` objects per request instead of the service's maximum (to see
    /// pagination at work without thousands of objects).
    #[must_use]
    pub fn with_list_page_size(mut self, page_size: NonZeroU32) -> Self {
        self.list_page_size = page_size;
        self
    }

    /// Deletes the whole container with everything in it. The agent never does; tests
    /// use it to take a container away under an upload.
    pub async fn delete_container(&self) -> Result<()> {
        self.store
            .container
            .delete(None)
            .await
            .map(|_| ())
            .map_err(|e| self.store.error("delete the container", e))
    }

    /// Whether `err` is a deletion or overwrite refused because the blob is still under
    /// its immutability policy (409 `BlobImmutableDueToPolicy`): prune keeps such a backup.
    pub fn is_locked(err: &Error) -> bool {
        std::error::Error::source(err)
            .and_then(|s| s.downcast_ref::<azure_core::Error>())
            .is_some_and(crate::errors::is_locked)
    }

    /// The objects under `prefix` after `start_after`, listed `page_size` a request from
    /// `from` (and from the `marker` of that same query, when given) until `limit` of them
    /// are held (all without a limit), and the marker of the rest if some are left.
    async fn list_from(
        &self,
        prefix: &str,
        from: &str,
        start_after: &str,
        page_size: u32,
        mut marker: Option<String>,
        limit: Option<usize>,
    ) -> Result<(Vec<ObjectMeta>, Option<String>)> {
        let store = &self.store;
        // `startFrom` is inclusive, and a service or emulator that does not know it lists
        // from the start: the filter below keeps the answer exact either way.
        let start_from = (!from.is_empty()).then(|| from.to_string());
        let mut out = Vec::new();
        let mut guard = ListingGuard::new(store.describe(), format!("list {prefix:?}"));
        let page_size = i32::try_from(page_size).unwrap_or(i32::MAX);
        loop {
            let page = store
                .retry
                .run("list blobs", || async {
                    let what = format!("list {prefix:?}");
                    let options = BlobContainerClientListBlobsOptions {
                        marker: marker.clone(),
                        maxresults: Some(page_size),
                        prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
                        start_from: start_from.clone(),
                        ..BlobContainerClientListBlobsOptions::default()
                    };
                    // One page per call, so that a failed page is asked again alone.
                    let mut pages = store
                        .container
                        .list_blobs(Some(options))
                        .map_err(|e| store.error(&what, e))?
                        .into_pages();
                    match pages.next().await {
                        Some(page) => page
                            .and_then(azure_core::http::Response::into_model)
                            .map_err(|e| store.error(&what, e)),
                        None => Err(Error::new(
                            ErrorKind::Destination,
                            format!(
                                "{}: the listing of {prefix:?} ended without a page",
                                store.describe()
                            ),
                        )
                        .temporary()),
                    }
                })
                .await?;
            guard.add(page.blob_items.len())?;
            for blob in page.blob_items {
                let Some(key) = blob.name else { continue };
                if key.as_str() <= start_after {
                    continue;
                }
                let properties = blob.properties.unwrap_or_default();
                out.push(ObjectMeta {
                    key,
                    size: properties.content_length.unwrap_or_default(),
                    last_modified: properties.last_modified.and_then(store::to_chrono),
                });
            }
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(next) => {
                    guard.next(&next)?;
                    marker = Some(next);
                }
                None => return Ok((out, None)),
            }
            if limit.is_some_and(|limit| out.len() >= limit) {
                return Ok((out, marker));
            }
        }
    }

    /// Creates the container unless it exists; once per destination.
    async fn ensure_container(&self) -> Result<()> {
        self.container_ready
            .get_or_try_init(|| self.store.create_container())
            .await?;
        Ok(())
    }
}

impl fmt::Debug for AzureDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureDestination")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Destination for AzureDestination {
    fn describe(&self) -> String {
        self.store.describe()
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        check_key(&self.store, key)?;
        self.ensure_container().await?;
        Ok(Box::new(upload::BlockUpload::new(
            self.store.clone(),
            key.to_string(),
        )?))
    }

    async fn get(&self, key: &str) -> Result<ObjectStream> {
        check_key(&self.store, key)?;
        read::open(self.store.clone(), key, None).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<ObjectStream> {
        check_key(&self.store, key)?;
        read::open(self.store.clone(), key, Some(range)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.list_after(prefix, "").await
    }

    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        let page_size = self.list_page_size.get();
        let listed = self.list_from(prefix, start_after, start_after, page_size, None, None);
        Ok(listed.await?.0)
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, bool)> {
        let limit = limit.max(1);
        // The listing this page continues goes on with its query and marker; any other
        // starts after the key.
        let (from, page_size, marker) = self.next_page.query(
            prefix,
            start_after,
            self.list_page_size
                .get()
                .min(u32::try_from(limit).unwrap_or(u32::MAX)),
        );
        let (objects, marker) = self
            .list_from(prefix, &from, start_after, page_size, marker, Some(limit))
            .await?;
        let more = marker.is_some();
        let last = objects.last().map(|o| o.key.as_str());
        self.next_page.keep(prefix, from, page_size, marker, last);
        Ok((objects, more))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(&self.store, key)?;
        let store = &self.store;
        let blob = store.container.blob_client(key);
        store
            .retry
            .run("delete blob", || async {
                match blob.delete(None).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(store.error(&format!("delete {key}"), e)),
                }
            })
            .await
    }

    /// None: uncommitted blocks belong to no blob a client can list or delete, and the
    /// service discards them by itself (after 7 days on Azure).
    async fn list_incomplete(&self, _prefix: &str) -> Result<Vec<IncompleteUpload>> {
        Ok(Vec::new())
    }

    async fn discard_incomplete(&self, _upload: &IncompleteUpload) -> Result<()> {
        Ok(())
    }
}

/// Refuses keys that are not plain `/`-separated object names.
fn check_key(store: &Store, key: &str) -> Result<()> {
    service_backup_core::destination::check_object_key(&store.describe(), key)
}
