//! The requests the destination makes, seen by a transport that records them instead of
//! sending them: immutability headers (which Azurite ignores), SAS and shared-key
//! authorization, and a refused deletion of a locked blob.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::http::headers::Headers;
use azure_core::http::{AsyncRawResponse, HttpClient, Method, Request, StatusCode};
use bytes::Bytes;
use service_backup_core::destination::{Destination as _, RetryPolicy};
use service_backup_core::secret::Secret;

use crate::AzureDestination;
use crate::settings::{AzureCredentials, AzureSettings};
use crate::store::Store;
use service_backup_core::destination::{Immutability, LockMode};

/// What a request looked like: its method, URL and headers.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers every request with `status` (and `code` as the service's error code).
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    status: u16,
    code: Option<&'static str>,
}

impl Recorder {
    fn new(status: u16, code: Option<&'static str>) -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::new(Vec::new()),
            status,
            code,
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl HttpClient for Recorder {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        self.seen.lock().unwrap().push(Seen {
            method: request.method(),
            url: request.url().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_str().to_string()))
                .collect(),
        });
        let mut headers = Headers::new();
        if let Some(code) = self.code {
            headers.insert("x-ms-error-code", code.to_string());
        }
        Ok(AsyncRawResponse::from_bytes(
            StatusCode::from(self.status),
            headers,
            Bytes::new(),
        ))
    }
}

fn settings(credentials: AzureCredentials, immutability: Option<Immutability>) -> AzureSettings {
    AzureSettings {
        credentials,
        immutability,
        ..AzureSettings::with_access_key(
            "acct",
            Secret::new("a2V5"),
            "backups",
            "https://acct.blob.example",
            RetryPolicy::none(),
        )
    }
}

fn destination(settings: AzureSettings, transport: Arc<Recorder>) -> AzureDestination {
    let mut dest = AzureDestination::new(settings.clone()).unwrap();
    dest.store = Arc::new(Store::build(settings, Some(transport)).unwrap());
    dest
}

/// Days from now until an RFC 7231 date, rounded.
fn days_until(date: &str) -> i64 {
    let until = chrono::DateTime::parse_from_rfc2822(&date.replace("GMT", "+0000")).unwrap();
    (until.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .num_hours()
        .div_euclid(24)
        + 1
}

#[tokio::test]
async fn blobs_are_written_with_the_immutability_policy_on_the_request_that_makes_them_visible() {
    let immutability = Immutability {
        mode: LockMode::Compliance,
        days: 30,
    };
    let recorder = Recorder::new(201, None);
    let dest = destination(
        settings(
            AzureCredentials::AccessKey(Secret::new("a2V5")),
            Some(immutability),
        ),
        recorder.clone(),
    );
    // A manifest: one Put Blob.
    dest.put("svc/2026/01/01/m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    // An archive of two blocks: Put Block twice, then Put Block List.
    let mut upload = dest
        .put_multipart("svc/2026/01/01/a.tar.gz.enc")
        .await
        .unwrap();
    upload.write(Bytes::from(vec![0u8; 5 << 20])).await.unwrap();
    upload.complete().await.unwrap();

    let seen: Vec<Seen> = recorder
        .seen()
        .into_iter()
        .filter(|s| !s.url.contains("restype=container"))
        .collect();
    let [put_blob, block1, block2, commit] = seen.as_slice() else {
        panic!("{seen:#?}")
    };
    // The SDK sends the slashes of a blob name encoded; the service decodes them.
    assert!(
        put_blob
            .url
            .ends_with("/backups/svc%2F2026%2F01%2F01%2Fm.json"),
        "{put_blob:?}"
    );
    assert!(commit.url.contains("comp=blocklist"), "{commit:?}");
    for visible in [put_blob, commit] {
        assert_eq!(visible.method, Method::Put);
        // The SDK writes the mode in lower case, as the service's API description does.
        assert_eq!(
            visible.header("x-ms-immutability-policy-mode"),
            Some("locked"),
            "{visible:?}"
        );
        let until = visible
            .header("x-ms-immutability-policy-until-date")
            .unwrap();
        assert!(until.ends_with(" GMT"), "{until}");
        assert_eq!(days_until(until), 30, "{until}");
    }
    for block in [block1, block2] {
        assert!(block.url.ends_with("comp=block"), "{block:?}");
        assert_eq!(
            block.header("x-ms-immutability-policy-mode"),
            None,
            "{block:?}"
        );
    }

    // Unlocked (governance) is the other mode; without immutability there is no header.
    let recorder = Recorder::new(201, None);
    let dest = destination(
        settings(
            AzureCredentials::AccessKey(Secret::new("a2V5")),
            Some(Immutability {
                mode: LockMode::Governance,
                days: 1,
            }),
        ),
        recorder.clone(),
    );
    dest.put("m.json", Bytes::from_static(b"{}")).await.unwrap();
    let last = recorder.seen().pop().unwrap();
    assert_eq!(
        last.header("x-ms-immutability-policy-mode"),
        Some("unlocked")
    );
    let recorder = Recorder::new(201, None);
    let dest = destination(
        settings(AzureCredentials::AccessKey(Secret::new("a2V5")), None),
        recorder.clone(),
    );
    dest.put("m.json", Bytes::from_static(b"{}")).await.unwrap();
    let last = recorder.seen().pop().unwrap();
    assert_eq!(last.header("x-ms-immutability-policy-until-date"), None);
    assert!(
        last.header("authorization")
            .unwrap()
            .starts_with("SharedKey acct:"),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_locked_blob_refusing_its_deletion_is_told_apart() {
    let recorder = Recorder::new(409, Some("BlobImmutableDueToPolicy"));
    let dest = destination(
        settings(AzureCredentials::AccessKey(Secret::new("a2V5")), None),
        recorder,
    );
    let err = dest
        .delete("svc/2026/01/01/a.tar.gz.enc")
        .await
        .unwrap_err();
    assert!(AzureDestination::is_locked(&err), "{err}");
    assert!(
        err.to_string().contains("locked by an immutability policy"),
        "{err}"
    );
    let recorder = Recorder::new(409, Some("LeaseIdMissing"));
    let dest = destination(
        settings(AzureCredentials::AccessKey(Secret::new("a2V5")), None),
        recorder,
    );
    let err = dest.delete("a").await.unwrap_err();
    assert!(!AzureDestination::is_locked(&err), "{err}");
}

#[tokio::test]
async fn a_sas_token_rides_on_every_request_and_nothing_is_signed() {
    let recorder = Recorder::new(201, None);
    let dest = destination(
        settings(
            AzureCredentials::SasToken(Secret::new("?sv=2019-12-12&ss=b&sig=SIGNATURE%3D")),
            None,
        ),
        recorder.clone(),
    );
    dest.put("a/m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let seen = recorder.seen();
    assert!(!seen.is_empty());
    for request in &seen {
        for pair in ["sv=2019-12-12", "ss=b", "sig=SIGNATURE%3D"] {
            assert!(request.url.contains(pair), "{pair}: {request:?}");
        }
        assert_eq!(request.header("authorization"), None, "{request:?}");
    }
    assert!(
        seen.last()
            .unwrap()
            .url
            .starts_with("https://acct.blob.example/backups/a%2Fm.json?"),
        "{seen:?}"
    );
    let shown = format!("{dest:?} {}", dest.describe());
    assert!(!shown.contains("SIGNATURE"), "{shown}");
}

#[test]
fn a_sas_token_without_a_signature_and_a_managed_identity_over_http_are_refused() {
    let err = Store::new(settings(
        AzureCredentials::SasToken(Secret::new("sv=2019-12-12&sp=r")),
        None,
    ))
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("sas_token is not a shared access signature"),
        "{err}"
    );
    let mut s = settings(
        AzureCredentials::ManagedIdentity(crate::settings::ManagedIdentity::default()),
        None,
    );
    s.endpoint = "http://127.0.0.1:10000/devstoreaccount1".into();
    let err = Store::new(s).unwrap_err();
    assert!(err.to_string().contains("only sent over https"), "{err}");
}

/// A stand-in for the instance metadata service (no real one runs here): answers one
/// token request with `token`, and hands back the request it got.
fn stand_in_imds(token: &'static str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!(
        "http://{}/metadata/identity/oauth2/token",
        listener.local_addr().unwrap()
    );
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        let body =
            format!(r#"{{"access_token":"{token}","expires_in":"3599","token_type":"Bearer"}}"#);
        write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8(request).unwrap()
    });
    (endpoint, handle)
}

#[tokio::test]
async fn a_managed_identity_token_is_sent_as_a_bearer_token() {
    let (endpoint, imds) = stand_in_imds("TOKEN-FROM-IMDS");
    let recorder = Recorder::new(201, None);
    let dest = destination(
        settings(
            AzureCredentials::ManagedIdentity(crate::settings::ManagedIdentity {
                client_id: Some("11111111-2222".into()),
                endpoint: Some(endpoint),
            }),
            None,
        ),
        recorder.clone(),
    );
    dest.put("a/m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let asked = imds.join().unwrap().to_ascii_lowercase();
    assert!(
        asked.starts_with("get /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3a%2f%2fstorage.azure.com%2f&client_id=11111111-2222 "),
        "{asked}"
    );
    assert!(asked.contains("\r\nmetadata: true\r\n"), "{asked}");
    let seen = recorder.seen();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer TOKEN-FROM-IMDS"),
            "{request:?}"
        );
    }
    // The token is kept: the stand-in answered once, and a second write needs no other.
    dest.put("a/n.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
}
