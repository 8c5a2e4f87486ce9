//! The `gcs` destination: a bucket of Google Cloud Storage (or of an emulator such as
//! fake-gcs-server), reached through the JSON API with a service account's key or the
//! tokens of the VM's metadata server, over TLS that trusts the system's roots and
//! `ca_cert`.
//!
//! The key signs a JWT grant that the key's `token_uri` exchanges for an access token; or
//! the metadata server hands out tokens of the VM's service account (either renewed before
//! it expires). Archives are written as resumable uploads in fixed-size
//! chunks and become visible only when the last chunk is accepted; manifests and other
//! small objects with one single-request upload. The bucket is created in `project_id` by
//! the first write if it is missing; reads never create it. Nothing touches the network
//! before the first request, so building a destination cannot fail on a network problem.

mod auth;
mod client;
mod http;
mod read;
mod retention;
mod settings;
mod upload;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use service_backup_core::destination::{
    Destination, Immutability, IncompleteUpload, ListingGuard, ObjectMeta, ObjectStream, Upload,
};
use service_backup_core::{Error, ErrorKind, Result};

pub use crate::client::DEFAULT_ENDPOINT;
use crate::client::{Client, encode};
use crate::settings::LIST_PAGE_SIZE;

/// The most bytes read of one listing page.
const MAX_LISTING_PAGE: usize = 16 * 1024 * 1024;
pub use crate::settings::{DEFAULT_CHUNK_SIZE, DEFAULT_STALL_TIMEOUT, GcsSettings};
pub use crate::upload::CHUNK_GRANULARITY;

/// A destination in a Google Cloud Storage bucket.
pub struct GcsDestination {
    client: Arc<Client>,
    chunk_size: usize,
    list_page_size: u32,
    bucket_ready: tokio::sync::OnceCell<()>,
    /// Object retention on each archive and manifest written (see [`retention`]).
    immutability: Option<Immutability>,
    /// Where the listing of the last page handed out goes on.
    next_page: service_backup_core::destination::listing::NextPages,
}

impl GcsDestination {
    /// A destination for `settings`; checks them and the key but makes no request.
    pub fn new(settings: GcsSettings) -> Result<Self> {
        let chunk_size = settings.chunk_size;
        let list_page_size = settings.list_page_size;
        let immutability = settings.immutability;
        let what = format!("gcs bucket {}", settings.bucket_name);
        if chunk_size == 0 || !chunk_size.is_multiple_of(CHUNK_GRANULARITY) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{what}: the chunk size {chunk_size} is not a multiple of {CHUNK_GRANULARITY}"
                ),
            ));
        }
        if !(1..=LIST_PAGE_SIZE).contains(&list_page_size) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{what}: the list page size {list_page_size} is not in 1..={LIST_PAGE_SIZE}"
                ),
            ));
        }
        Ok(Self {
            client: Arc::new(Client::new(settings)?),
            chunk_size,
            list_page_size,
            bucket_ready: tokio::sync::OnceCell::new(),
            immutability,
            next_page: service_backup_core::destination::listing::NextPages::default(),
        })
    }

    /// The objects under `prefix` after `start_after`, listed `page_size` a request from
    /// `from` (and from the page `token` of that same query, when given) until `limit` of
    /// them are held (all without a limit), and the token of the rest if some are left.
    async fn list_from(
        &self,
        prefix: &str,
        from: &str,
        start_after: &str,
        page_size: u32,
        mut token: Option<String>,
        limit: Option<usize>,
    ) -> Result<(Vec<ObjectMeta>, Option<String>)> {
        let client = &self.client;
        let mut base = format!(
            "{}?maxResults={page_size}&fields=items(name,size,updated),nextPageToken",
            client.api(&format!("/b/{}/o", encode(&client.bucket))),
        );
        if !prefix.is_empty() {
            base.push_str("&prefix=");
            base.push_str(&encode(prefix));
        }
        if !from.is_empty() {
            // `startOffset` is inclusive: the key itself is dropped below.
            base.push_str("&startOffset=");
            base.push_str(&encode(from));
        }
        let action = format!("list {prefix:?}");
        let mut out = Vec::new();
        let mut guard = ListingGuard::new(client.describe(), &action);
        loop {
            let url = match &token {
                Some(t) => format!("{base}&pageToken={}", encode(t)),
                None => base.clone(),
            };
            let page: ObjectList = client
                .retry
                .run("list objects", || async {
                    let response = client.send(Method::GET, &url, &action, |r| r).await?;
                    if response.status() == StatusCode::NOT_FOUND {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "{}: cannot {action}: the bucket does not exist",
                                client.describe()
                            ),
                        )
                        .with_hint("check bucket_name; a backup creates a missing bucket"));
                    }
                    let response = client.check(&action, response).await?;
                    // A page of 1000 names is well under a MiB; a longer answer is cut
                    // (and then not valid JSON) rather than held whole.
                    let body = http::read_limited(response, MAX_LISTING_PAGE)
                        .await
                        .map_err(|e| client.transport(&action, &e))?;
                    serde_json::from_slice(&body).map_err(|e| {
                        Error::new(
                            ErrorKind::Destination,
                            format!(
                                "{}: cannot {action}: the listing is not valid JSON: {e}",
                                client.describe()
                            ),
                        )
                    })
                })
                .await?;
            guard.add(page.items.len())?;
            for item in page.items {
                let size = match &item.size {
                    serde_json::Value::String(s) => s.parse().ok(),
                    serde_json::Value::Number(n) => n.as_u64(),
                    _ => None,
                };
                let Some(size) = size else {
                    return Err(Error::new(
                        ErrorKind::Destination,
                        format!(
                            "{}: cannot {action}: {} has no size",
                            client.describe(),
                            item.name
                        ),
                    ));
                };
                let last_modified = item
                    .updated
                    .as_deref()
                    .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
                    .map(|t| t.with_timezone(&Utc));
                if item.name.as_str() <= start_after {
                    continue;
                }
                out.push(ObjectMeta {
                    key: item.name,
                    size,
                    last_modified,
                });
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => {
                    guard.next(&next)?;
                    token = Some(next);
                }
                None => return Ok((out, None)),
            }
            if limit.is_some_and(|limit| out.len() >= limit) {
                return Ok((out, token));
            }
        }
    }

    /// Creates the bucket unless it exists; once per destination.
    async fn ensure_bucket(&self) -> Result<()> {
        self.bucket_ready
            .get_or_try_init(|| create_bucket(&self.client, self.immutability.is_some()))
            .await?;
        Ok(())
    }
}

impl fmt::Debug for GcsDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsDestination")
            .field("client", &self.client)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

/// Creates the bucket in the project unless it exists, with object retention enabled when
/// `retention` (it can only be chosen at creation). A service account that may write
/// objects but not read bucket metadata (403) is trusted to write into an existing bucket.
async fn create_bucket(client: &Client, retention: bool) -> Result<()> {
    let bucket_url = client.api(&format!("/b/{}", encode(&client.bucket)));
    let action = "read the bucket";
    let exists = client
        .retry
        .run("get bucket", || async {
            let response = client.send(Method::GET, &bucket_url, action, |r| r).await?;
            match response.status() {
                s if s.is_success() || s == StatusCode::FORBIDDEN => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(client.refused(action, response).await),
            }
        })
        .await?;
    if exists {
        return Ok(());
    }
    let url = format!(
        "{}?project={}{}",
        client.api("/b"),
        encode(&client.project_id),
        if retention {
            "&enableObjectRetention=true"
        } else {
            ""
        }
    );
    let body = serde_json::json!({"name": client.bucket}).to_string();
    let action = format!("create the bucket in project {}", client.project_id);
    client
        .retry
        .run("create bucket", || async {
            let response = client
                .send(Method::POST, &url, &action, |r| {
                    r.header("content-type", "application/json; charset=UTF-8")
                        .body(body.clone())
                })
                .await?;
            match response.status() {
                s if s.is_success() => Ok(()),
                // Created meanwhile, by another agent or an earlier attempt.
                StatusCode::CONFLICT => Ok(()),
                StatusCode::BAD_REQUEST => Err(client.refused(&action, response).await.with_hint(
                    "bucket names are 3 to 63 lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit; or create the bucket yourself",
                )),
                _ => Err(client.refused(&action, response).await),
            }
        })
        .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectItem>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ObjectItem {
    name: String,
    /// A decimal string in the JSON API.
    size: serde_json::Value,
    updated: Option<String>,
}

#[async_trait]
impl Destination for GcsDestination {
    fn describe(&self) -> String {
        self.client.describe()
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        check_key(&self.client, key)?;
        self.ensure_bucket().await?;
        Ok(Box::new(upload::ResumableUpload::new(
            self.client.clone(),
            key.to_string(),
            self.chunk_size,
            self.immutability,
        )))
    }

    async fn get(&self, key: &str) -> Result<ObjectStream> {
        check_key(&self.client, key)?;
        read::read(self.client.clone(), key, None).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<ObjectStream> {
        check_key(&self.client, key)?;
        read::read(self.client.clone(), key, Some(range)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.list_after(prefix, "").await
    }

    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        let page_size = self.list_page_size;
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
        // The listing this page continues goes on with its query and token; any other
        // starts after the key.
        let (from, page_size, token) = self.next_page.query(
            prefix,
            start_after,
            self.list_page_size
                .min(u32::try_from(limit).unwrap_or(u32::MAX)),
        );
        let (objects, token) = self
            .list_from(prefix, &from, start_after, page_size, token, Some(limit))
            .await?;
        let more = token.is_some();
        let last = objects.last().map(|o| o.key.as_str());
        self.next_page.keep(prefix, from, page_size, token, last);
        Ok((objects, more))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(&self.client, key)?;
        let client = &self.client;
        let url = client.object_url(key);
        let action = format!("delete {key}");
        let result = client
            .retry
            .run("delete object", || async {
                let response = client.send(Method::DELETE, &url, &action, |r| r).await?;
                if response.status() == StatusCode::NOT_FOUND {
                    return Ok(());
                }
                client.check(&action, response).await.map(|_| ())
            })
            .await;
        match result {
            Err(e) if retention::refused_by_retention(&e) => {
                let until = retention::locked_until(client, key).await.flatten();
                Err(Error::locked(e.message().to_string(), until))
            }
            other => other,
        }
    }

    fn immutability(&self) -> Option<Immutability> {
        self.immutability
    }

    /// None: the JSON API lists no resumable upload sessions; one left by a crash expires
    /// by itself after a week and is never visible as an object.
    async fn list_incomplete(&self, _prefix: &str) -> Result<Vec<IncompleteUpload>> {
        Ok(Vec::new())
    }

    async fn discard_incomplete(&self, _upload: &IncompleteUpload) -> Result<()> {
        Ok(())
    }
}

/// Refuses keys that are not plain `/`-separated object names.
fn check_key(client: &Client, key: &str) -> Result<()> {
    service_backup_core::destination::check_object_key(&client.describe(), key)
}
