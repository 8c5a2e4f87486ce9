//! The other ways in, against Azurite: a shared access signature (Azurite checks its
//! signature), a private CA (`ca_cert`) over TLS, and a managed identity's bearer tokens
//! (Azurite with `--oauth basic`, over TLS only; tokens from a stand-in metadata service).

mod common;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, KeyInit as _, Mac as _};
use service_backup_azure::{AzureCredentials, AzureDestination, ManagedIdentity};
use service_backup_core::ErrorKind;
use service_backup_core::destination::{Destination, conformance, get_small};
use service_backup_core::secret::Secret;
use service_backup_testkit::{azurite, env, private_ca, unique};
use sha2::Sha256;

use common::{key, settings, settings_at};

/// An account SAS for the blob service signed with `key` (the form of version
/// 2019-12-12: account, permissions, services, resource types, start, expiry, IP,
/// protocol, version, each on a line).
fn account_sas(account: &str, key: &str, permissions: &str) -> String {
    let (services, types, expiry, protocol, version) = (
        "b",
        "sco",
        "2099-01-01T00:00:00Z",
        "https,http",
        "2019-12-12",
    );
    let text = format!(
        "{account}\n{permissions}\n{services}\n{types}\n\n{expiry}\n\n{protocol}\n{version}\n"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(text.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig: String = sig
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!(
        "sv={version}&ss={services}&srt={types}&sp={permissions}&se={expiry}&spr={protocol}&sig={sig}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sas_token_passes_the_conformance_suite() {
    let mut s = settings(&unique("sas"));
    s.credentials = AzureCredentials::SasToken(Secret::new(account_sas(
        &env("SB_TEST_AZURE_ACCOUNT"),
        &key(),
        "rwdlac",
    )));
    let dest = AzureDestination::new(s).unwrap();
    conformance::run_all(&dest, &unique("run")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sas_token_signed_with_another_key_is_refused_with_a_hint_and_no_secret() {
    let other = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let token = account_sas(&env("SB_TEST_AZURE_ACCOUNT"), other, "rwdlac");
    let sig = token.rsplit("sig=").next().unwrap().to_string();
    let mut s = settings(&unique("badsas"));
    s.credentials = AzureCredentials::SasToken(Secret::new(token));
    let dest = AzureDestination::new(s).unwrap();
    let err = dest
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(
        text.contains("refused the shared access signature"),
        "{text}"
    );
    assert!(err.hint().unwrap().contains("sas_token"), "{text}");
    assert!(!text.contains(&sig), "the signature is in {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sas_token_cannot_write() {
    let container = unique("rosas");
    // The container and a manifest, written with the key.
    let writer = AzureDestination::new(settings(&container)).unwrap();
    writer
        .put("m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let mut s = settings(&container);
    s.credentials = AzureCredentials::SasToken(Secret::new(account_sas(
        &env("SB_TEST_AZURE_ACCOUNT"),
        &key(),
        "rl",
    )));
    let reader = AzureDestination::new(s).unwrap();
    assert_eq!(
        get_small(&reader, "m.json", 16).await.unwrap(),
        b"{}".to_vec()
    );
    let err = reader.delete("m.json").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    assert!(err.to_string().contains("cannot delete m.json"), "{err}");
    assert_eq!(
        writer.list("").await.unwrap().len(),
        1,
        "the manifest is still there"
    );
}

/// Azurite over TLS with a certificate of a private CA; returns the server, its https
/// endpoint and the CA's PEM.
fn azurite_tls(
    dir: &std::path::Path,
    oauth: bool,
) -> (service_backup_testkit::ServerProcess, String, String) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = private_ca(&certs, "azure-test-ca");
    let mut server = azurite(&dir.join("azurite"))
        .args(["--cert"])
        .args([certs.join("cert.pem")]);
    server = server.args(["--key"]).args([certs.join("key.pem")]);
    if oauth {
        server = server.args(["--oauth", "basic"]);
    }
    let server = server.started();
    let endpoint = server
        .url(&format!("/{}", env("SB_TEST_AZURE_ACCOUNT")))
        .replacen("http://", "https://", 1);
    (server, endpoint, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_through_ca_cert_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, endpoint, ca) = azurite_tls(tmp.path(), false);

    let without = AzureDestination::new(settings_at(&endpoint, "tls")).unwrap();
    let err = without
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(
        text.contains(&format!("the TLS connection to {endpoint} was refused")),
        "{text}"
    );
    assert!(text.to_ascii_lowercase().contains("certificate"), "{text}");
    assert!(err.hint().unwrap().contains("ca_cert"), "{text}");

    let mut s = settings_at(&endpoint, "tls");
    s.ca_cert = Some(ca);
    let with = AzureDestination::new(s).unwrap();
    with.put("a.json", Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(
        get_small(&with, "a.json", 16).await.unwrap(),
        b"{}".to_vec()
    );

    let mut s = settings_at(&endpoint, "tls");
    s.ca_cert =
        Some("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n".into());
    let err = AzureDestination::new(s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string()
            .contains("ca_cert is not a usable certificate"),
        "{err}"
    );
}

/// An unsigned token of the shape Azurite's basic OAuth mode checks (audience, issuer,
/// times; not the signature).
fn storage_token() -> String {
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let now = chrono::Utc::now().timestamp();
    let claims = format!(
        r#"{{"aud":"https://storage.azure.com","iss":"https://sts.windows.net/00000000-0000-0000-0000-000000000000/","iat":{},"nbf":{},"exp":{}}}"#,
        now - 60,
        now - 60,
        now + 3600
    );
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&claims),
        b64("signature")
    )
}

/// A stand-in for the instance metadata service (no real one runs here): answers every
/// token request with `token`; returns its endpoint.
fn stand_in_imds(token: String) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!(
        "http://{}/metadata/identity/oauth2/token",
        listener.local_addr().unwrap()
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let ok = String::from_utf8_lossy(&request)
                .to_ascii_lowercase()
                .contains("\r\nmetadata: true\r\n");
            let (status, body) = if ok {
                (
                    "200 OK",
                    format!(r#"{{"access_token":"{token}","expires_in":"3599"}}"#),
                )
            } else {
                (
                    "400 Bad Request",
                    r#"{"error":"invalid_request"}"#.to_string(),
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_identity_reads_and_writes_with_bearer_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, endpoint, ca) = azurite_tls(tmp.path(), true);
    let mut s = settings_at(&endpoint, "identity");
    s.ca_cert = Some(ca.clone());
    s.credentials = AzureCredentials::ManagedIdentity(ManagedIdentity {
        client_id: None,
        endpoint: Some(stand_in_imds(storage_token())),
    });
    let dest = AzureDestination::new(s).unwrap();
    dest.put("a/m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(
        get_small(&dest, "a/m.json", 16).await.unwrap(),
        b"{}".to_vec()
    );
    assert_eq!(dest.list("a/").await.unwrap().len(), 1);
    dest.delete("a/m.json").await.unwrap();

    // No metadata service answering: no request goes out, and the hint says why.
    let mut s = settings_at(&endpoint, "identity");
    s.ca_cert = Some(ca);
    s.credentials = AzureCredentials::ManagedIdentity(ManagedIdentity {
        client_id: None,
        endpoint: Some("http://127.0.0.1:9/metadata/identity/oauth2/token".into()),
    });
    let dest = AzureDestination::new(s).unwrap();
    let err = dest.list("").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no token for the managed identity"), "{text}");
    assert!(err.hint().unwrap().contains("managed identity"), "{text}");
}

/// Azurite has no immutability policies: it takes the headers (with `--loose`) and lets the
/// blob be deleted at once. What the requests carry is checked beside the upload code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_accepts_the_immutability_headers_and_enforces_nothing() {
    let mut s = settings(&unique("immutable"));
    s.immutability = Some(service_backup_core::destination::Immutability {
        mode: service_backup_core::destination::LockMode::Compliance,
        days: 1,
    });
    let dest = AzureDestination::new(s).unwrap();
    dest.put("m.json", Bytes::from_static(b"{}")).await.unwrap();
    let mut upload = dest.put_multipart("a.bin").await.unwrap();
    upload.write(Bytes::from(vec![1u8; 5 << 20])).await.unwrap();
    upload.complete().await.unwrap();
    assert_eq!(dest.list("").await.unwrap().len(), 2);
    dest.delete("a.bin").await.unwrap();
    assert_eq!(dest.list("").await.unwrap().len(), 1);
}
