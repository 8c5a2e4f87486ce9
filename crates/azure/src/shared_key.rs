//! Shared-key authorization (the storage account's access key), which the maintained SDK
//! does not offer: each request, as sent, is signed with HMAC-SHA256 of the string Microsoft
//! documents in "Authorize with Shared Key" (the Blob service's form for versions
//! 2015-02-21 and later). The service, and Azurite, recompute the string and refuse the
//! request when one byte differs.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The policy that dates and signs every request with the account key.
pub(crate) struct SharedKey {
    account: String,
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKey")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl SharedKey {
    /// A signer for `account` with its decoded access key.
    pub fn new(account: &str, key: Vec<u8>) -> Self {
        Self {
            account: account.to_string(),
            key: Zeroizing::new(key),
        }
    }

    /// Adds `x-ms-date` and the `Authorization` header to `request`.
    pub fn sign(&self, request: &mut Request, date: &str) {
        request.insert_header("x-ms-date", date.to_string());
        let text = string_to_sign(&self.account, request);
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(text.as_bytes());
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        request.insert_header(
            "authorization",
            format!("SharedKey {}:{signature}", self.account),
        );
    }
}

#[async_trait]
impl Policy for SharedKey {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        // Dated at each try: the service refuses a date more than 15 minutes old.
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        self.sign(request, &date);
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// The string the signature is computed over: the verb, the standard headers in their
/// fixed order, the `x-ms-` headers sorted, then the resource with its query parameters.
pub(crate) fn string_to_sign(account: &str, request: &Request) -> String {
    let headers = request.headers();
    let header = |name: &'static str| {
        headers
            .get_optional_str(&name.into())
            .unwrap_or_default()
            .to_string()
    };
    // An empty body is signed as an empty length, not "0" (since version 2015-02-21).
    let length = headers
        .get_optional_str(&"content-length".into())
        .map(str::to_string)
        .or_else(|| request.body().len().map(|l| l.to_string()))
        .filter(|l| l != "0")
        .unwrap_or_default();
    let mut out = String::new();
    out.push_str(request.method().as_ref());
    out.push('\n');
    for name in ["content-encoding", "content-language"] {
        out.push_str(&header(name));
        out.push('\n');
    }
    out.push_str(&length);
    out.push('\n');
    for name in [
        "content-md5",
        "content-type",
        // `Date` stays empty: `x-ms-date` is the signed date.
        "date",
        "if-modified-since",
        "if-match",
        "if-none-match",
        "if-unmodified-since",
        "range",
    ] {
        out.push_str(&header(name));
        out.push('\n');
    }
    let ms: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().to_ascii_lowercase();
            name.starts_with("x-ms-")
                .then(|| (name, value.as_str().trim().to_string()))
        })
        .collect();
    for (name, value) in ms {
        out.push_str(&name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    out.push_str(&canonical_resource(account, request));
    out
}

/// `/account/path` as requested (still percent-encoded), then each query parameter
/// (names in lower case, sorted; values decoded, several of one name sorted and joined
/// with commas) on a line of its own.
fn canonical_resource(account: &str, request: &Request) -> String {
    let url = request.url();
    let mut out = format!("/{account}{}", url.path());
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in url.query_pairs() {
        params
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.into_owned());
    }
    for (name, mut values) in params {
        values.sort();
        out.push('\n');
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::{Method, Url};

    /// The example of a Put Block request from "Authorize with Shared Key" (headers
    /// reduced to those that are signed), with the account's path-style URL of Azurite.
    #[test]
    fn the_string_to_sign_follows_the_documented_layout() {
        let url = Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/mycontainer/my%20blob?comp=block&blockid=QUJD&timeout=30",
        )
        .unwrap();
        let mut request = Request::new(url, Method::Put);
        request.insert_header("x-ms-version", "2015-02-21");
        request.insert_header("x-ms-date", "Sun, 11 Oct 2009 21:49:13 GMT");
        request.insert_header("content-type", "application/octet-stream");
        request.insert_header("x-ms-meta-m2", " v2 ");
        request.insert_header("x-ms-meta-m1", "v1");
        request.set_body(azure_core::Bytes::from_static(b"0123456789"));
        assert_eq!(
            string_to_sign("devstoreaccount1", &request),
            "PUT\n\n\n10\n\napplication/octet-stream\n\n\n\n\n\n\n\
             x-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\nx-ms-meta-m1:v1\nx-ms-meta-m2:v2\nx-ms-version:2015-02-21\n\
             /devstoreaccount1/devstoreaccount1/mycontainer/my%20blob\nblockid:QUJD\ncomp:block\ntimeout:30"
        );
    }

    #[test]
    fn an_empty_body_is_signed_without_a_length() {
        let url = Url::parse("https://acct.blob.example/c?restype=container").unwrap();
        let request = Request::new(url, Method::Put);
        let text = string_to_sign("acct", &request);
        assert!(text.starts_with("PUT\n\n\n\n"), "{text:?}");
        assert!(text.ends_with("/acct/c\nrestype:container"), "{text:?}");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_string_with_the_key() {
        let url = Url::parse("https://acct.blob.example/c/b").unwrap();
        let mut request = Request::new(url, Method::Get);
        SharedKey::new("acct", b"key".to_vec()).sign(&mut request, "Mon, 01 Jan 2024 00:00:00 GMT");
        let text = string_to_sign("acct", &request);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(text.as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(
            request
                .headers()
                .get_optional_str(&"authorization".into())
                .unwrap(),
            format!("SharedKey acct:{want}")
        );
        assert!(
            text.contains("x-ms-date:Mon, 01 Jan 2024 00:00:00 GMT\n"),
            "{text}"
        );
    }
}
