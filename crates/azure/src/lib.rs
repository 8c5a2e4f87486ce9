//! The `azure` destination: a container of Azure Blob storage (or a compatible service,
//! such as the Azurite emulator), reached with the storage account's shared key.
//!
//! An archive is uploaded as blocks (Put Block) and made visible in one step by committing
//! the block list (Put Block List) when it is complete; until then the container lists
//! nothing under its name. Blocks of an upload that is aborted, dropped or interrupted are
//! never committed: the service discards uncommitted blocks by itself (after 7 days on
//! Azure). Small objects (manifests) are written with one Put Blob, atomic as well.
//!
//! The container is created by the first write if it is missing; reads never create it.
//! Nothing touches the network before the first request, so building a destination is
//! cheap and cannot fail on a network problem.

mod capped;
mod errors;
mod read;
mod settings;
mod store;
mod upload;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::prelude::{MaxResults, NextMarker, Prefix};
use futures::StreamExt as _;
use service_backup_core::destination::{
    Destination, IncompleteUpload, ObjectMeta, ObjectStream, Upload,
};
use service_backup_core::{Error, ErrorKind, Result};

use crate::errors::is_not_found;
pub use crate::settings::{AzureSettings, PUBLIC_CLOUD_DOMAIN};
use crate::store::Store;

/// Objects listed per request (the service's maximum is 5000).
const LIST_PAGE_SIZE: u32 = 5000;

/// A destination in an Azure Blob storage container.
pub struct AzureDestination {
    store: Arc<Store>,
    container_ready: tokio::sync::OnceCell<()>,
    list_page_size: NonZeroU32,
}

impl AzureDestination {
    /// A destination for `settings`; checks them but makes no request (the first
    /// request connects).
    pub fn new(settings: AzureSettings) -> Result<Self> {
        Ok(Self {
            store: Arc::new(Store::new(settings)?),
            container_ready: tokio::sync::OnceCell::new(),
            list_page_size: NonZeroU32::new(LIST_PAGE_SIZE).expect("not zero"),
        })
    }

    /// Lists `page_size` objects per request instead of the service's maximum (to see
    /// pagination at work without thousands of objects).
    #[must_use]
    pub fn with_list_page_size(mut self, page_size: NonZeroU32) -> Self {
        self.list_page_size = page_size;
        self
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
        read::open(self.store.clone(), key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let store = &self.store;
        let mut out = Vec::new();
        let mut marker: Option<NextMarker> = None;
        loop {
            let page = store
                .retry
                .run("list blobs", || {
                    let mut request = store
                        .container
                        .list_blobs()
                        .max_results(MaxResults::new(self.list_page_size));
                    if !prefix.is_empty() {
                        request = request.prefix(Prefix::from(prefix.to_string()));
                    }
                    if let Some(m) = &marker {
                        request = request.marker(m.clone());
                    }
                    async move {
                        match request.into_stream().next().await {
                            Some(page) => {
                                page.map_err(|e| store.error(&format!("list {prefix:?}"), e))
                            }
                            None => Err(Error::new(
                                ErrorKind::Destination,
                                format!(
                                    "{}: the listing of {prefix:?} ended without a page",
                                    store.describe()
                                ),
                            )
                            .temporary()),
                        }
                    }
                })
                .await?;
            for blob in page.blobs.blobs() {
                out.push(ObjectMeta {
                    key: blob.name.clone(),
                    size: blob.properties.content_length,
                    last_modified: store::to_chrono(
                        blob.properties.last_modified.unix_timestamp(),
                        blob.properties.last_modified.nanosecond(),
                    ),
                });
            }
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(&self.store, key)?;
        let store = &self.store;
        let blob = store.container.blob_client(key);
        store
            .retry
            .run("delete blob", || async {
                match blob.delete().await {
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
