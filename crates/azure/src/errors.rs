//! What a failed request means for the user: the kind of error, a reason in plain words,
//! what to do, and whether trying again may help.
//!
//! Only the status, the service's error code and the transport's own words are used: the
//! bodies and headers of responses are never copied into messages.

use std::error::Error as _;

use azure_core::error::ErrorKind as SdkKind;
use service_backup_core::ErrorKind;

/// A failed request, classified.
#[derive(Debug)]
pub(crate) struct Failure {
    pub kind: ErrorKind,
    pub reason: String,
    pub hint: Option<String>,
    pub temporary: bool,
}

impl Failure {
    fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            hint: None,
            temporary: false,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn temporary(mut self) -> Self {
        self.temporary = true;
        self
    }
}

/// The service's error code (`BlobNotFound`, `AuthenticationFailed`…), if it answered.
pub(crate) fn error_code(err: &azure_core::Error) -> Option<&str> {
    match err.kind() {
        SdkKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// The HTTP status the service answered, if it answered.
pub(crate) fn status(err: &azure_core::Error) -> Option<u16> {
    err.http_status().map(u16::from)
}

/// The error code of a blob whose immutability policy (or legal hold) refuses its
/// deletion or overwriting.
pub(crate) const LOCKED_CODE: &str = "BlobImmutableDueToPolicy";

/// Whether a request was refused because the blob is locked by an immutability policy.
pub(crate) fn is_locked(err: &azure_core::Error) -> bool {
    status(err) == Some(409) && error_code(err) == Some(LOCKED_CODE)
}

/// How the requests of a container are authorized, for the words of messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    /// The account's access key.
    AccessKey,
    /// A shared access signature.
    Sas,
    /// The VM's managed identity.
    ManagedIdentity,
}
/// Whether the blob (or its container) does not exist.
pub(crate) fn is_not_found(err: &azure_core::Error) -> bool {
    status(err) == Some(404)
}

/// The names of the container a request was for, as messages give them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Names<'a> {
    /// The storage account.
    pub account: &'a str,
    /// The container's name.
    pub container: &'a str,
    /// The blob service URL without query or user info.
    pub endpoint: &'a str,
    /// How requests are authorized.
    pub auth: Auth,
}

/// Classifies a failed request on the container `names` describes.
pub(crate) fn classify(err: &azure_core::Error, names: Names<'_>) -> Failure {
    match err.kind() {
        SdkKind::HttpResponse {
            status, error_code, ..
        } => http_failure(u16::from(*status), error_code.as_deref(), names),
        SdkKind::Io | SdkKind::Connection => transport_failure(err, names.endpoint),
        // The only credential of ours that can fail is the managed identity's token source.
        SdkKind::Credential => Failure::new(
            ErrorKind::Destination,
            format!("no token for the managed identity: {err}"),
        )
        .hint("check that the VM has a managed identity (and `client_id` names one assigned to it) and that the instance metadata service is reachable")
        .temporary(),
        SdkKind::DataConversion => Failure::new(
            ErrorKind::Destination,
            format!("the answer of {} could not be read", names.endpoint),
        )
        .hint("check that `endpoint` is the blob service URL of the storage account")
        .temporary(),
        SdkKind::Other => Failure::new(ErrorKind::Destination, "the request failed")
            .hint("check `endpoint` and the network"),
    }
}

/// A status and error code the service answered.
fn http_failure(status: u16, code: Option<&str>, names: Names<'_>) -> Failure {
    let said = match code {
        Some(code) => format!("{status} {code}"),
        None => status.to_string(),
    };
    let Names {
        account,
        container,
        auth,
        ..
    } = names;
    match (status, code.unwrap_or_default()) {
        (404, "ContainerNotFound") => Failure::new(
            ErrorKind::NotFound,
            format!("the container {container} does not exist ({said})"),
        )
        .hint("check `container` and `storage_account`; a backup creates a missing container when it starts (was it deleted meanwhile?)"),
        (404, _) => Failure::new(ErrorKind::NotFound, format!("it does not exist ({said})")),
        // Azure says AuthenticationFailed for a wrong key; Azurite, AuthorizationFailure
        // (which Azure also uses for requests its network rules refuse).
        (403, "AuthenticationFailed" | "AuthorizationFailure" | "") | (401, _) => match auth {
            Auth::AccessKey => Failure::new(
                ErrorKind::Destination,
                format!("the storage account {account} refused the access key ({said})"),
            )
            .hint("check `storage_account` and `storage_access_key`: the key must be a current access key of that account; if both are right, check that the account's network rules let this VM in"),
            Auth::Sas => Failure::new(
                ErrorKind::Destination,
                format!("the storage account {account} refused the shared access signature ({said})"),
            )
            .hint("check `sas_token`: it must be signed for this account, not expired, and allow read, add, create, write, delete and list on the container (and create for the container itself); check the account's network rules"),
            Auth::ManagedIdentity => Failure::new(
                ErrorKind::Destination,
                format!("the storage account {account} refused the managed identity's token ({said})"),
            )
            .hint("give the VM's managed identity a role such as Storage Blob Data Contributor on the account or container; check the account's network rules"),
        },
        (403, "AuthorizationPermissionMismatch") if auth != Auth::AccessKey => Failure::new(
            ErrorKind::Destination,
            format!("the storage account {account} does not allow this request ({said})"),
        )
        .hint(match auth {
            Auth::Sas => "the `sas_token` lacks a permission: it needs read, add, create, write, delete and list (account SAS: services b, resource types s, c and o)",
            _ => "give the VM's managed identity a role such as Storage Blob Data Contributor on the account or container",
        }),
        (403, _) => Failure::new(
            ErrorKind::Destination,
            format!("the storage account {account} does not allow this request ({said})"),
        )
        .hint("allow the account's key to read, write, list and delete blobs and to create the container (shared-key access must be enabled on the account)"),
        (409, LOCKED_CODE) => Failure::new(
            ErrorKind::Locked { until: None },
            format!("it is locked by an immutability policy ({said})"),
        )
        .hint("the blob cannot be deleted or overwritten until its immutability policy expires; prune keeps it until then"),
        (400, "InvalidResourceName" | "OutOfRangeInput" | "InvalidUri")
            if !valid_container_name(container) =>
        {
            Failure::new(
                ErrorKind::Destination,
                format!("the container name {container:?} is not valid ({said})"),
            )
            .hint("container names are 3 to 63 lowercase letters, digits and single hyphens, starting with a letter or digit: fix `container`")
        }
        (400, "InvalidBlockList" | "InvalidBlobOrBlock" | "InvalidBlockId") => Failure::new(
            ErrorKind::Destination,
            format!("the service refused the block list ({said})"),
        )
        .hint("blocks were lost before the commit (was the container deleted meanwhile?); run the backup again"),
        (409, "ContainerBeingDeleted") => Failure::new(
            ErrorKind::Destination,
            format!("the container {container} is being deleted ({said})"),
        )
        .hint("wait until the deletion has finished, or choose another `container`")
        .temporary(),
        (412, _) => Failure::new(
            ErrorKind::Destination,
            format!("the object changed while it was read ({said})"),
        )
        .hint("something overwrote it meanwhile; read it again"),
        (408 | 429 | 500 | 502 | 503 | 504, _) => Failure::new(
            ErrorKind::Destination,
            format!("the service is busy or failing ({said})"),
        )
        .hint("it was retried; if this persists, check the health of the storage account")
        .temporary(),
        _ => Failure::new(
            ErrorKind::Destination,
            format!("the service refused the request ({said})"),
        ),
    }
}

/// A request that got no answer: connection refused, reset, timed out, TLS refused.
fn transport_failure(err: &azure_core::Error, endpoint: &str) -> Failure {
    let chain = causes(err);
    let reqwest = err.downcast_ref::<reqwest::Error>();
    let tls = chain.iter().any(|c| {
        let c = c.to_ascii_lowercase();
        c.contains("certificate") || c.contains("unknownissuer") || c.contains("tls")
    });
    if tls {
        return Failure::new(
            ErrorKind::Destination,
            format!("the TLS connection to {endpoint} was refused: {}", last(&chain)),
        )
        .hint("check `endpoint`: its certificate must be valid for the host and signed by a certificate authority the system trusts, or by the one in `ca_cert`");
    }
    if reqwest.is_some_and(reqwest::Error::is_timeout) {
        return Failure::new(
            ErrorKind::Destination,
            format!("{endpoint} did not answer in time"),
        )
        .hint("check `endpoint` and the network (firewall, proxy)")
        .temporary();
    }
    if reqwest.is_some_and(reqwest::Error::is_connect) {
        return Failure::new(
            ErrorKind::Destination,
            format!("cannot connect to {endpoint}: {}", last(&chain)),
        )
        .hint("check `endpoint` (or `blob_store_base_url`) and the network")
        .temporary();
    }
    Failure::new(
        ErrorKind::Destination,
        format!("the connection to {endpoint} failed: {}", last(&chain)),
    )
    .hint("check the network; the request was retried")
    .temporary()
}

/// The messages of an error's causes, outermost first, from the first one below the SDK.
fn causes(err: &azure_core::Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = err.source();
    while let Some(e) = current {
        out.push(e.to_string());
        current = e.source();
    }
    out
}

/// The innermost cause, which names what happened (`Connection refused`…).
fn last(chain: &[String]) -> String {
    let text = chain.last().map_or("no answer", String::as_str);
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Whether `name` follows the service's rules for container names.
pub(crate) fn valid_container_name(name: &str) -> bool {
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (3..=63).contains(&name.len())
        && chars_ok
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        || name == "$root"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::AzureSettings;
    use crate::store::Store;
    use service_backup_core::destination::RetryPolicy;
    use service_backup_core::secret::Secret;

    fn store(container: &str) -> Store {
        Store::new(AzureSettings::with_access_key(
            "acct",
            Secret::new("c2VjcmV0LWtleQ=="),
            container,
            "https://acct.blob.example",
            RetryPolicy::none(),
        ))
        .unwrap()
    }

    fn http(status: u16, code: &str) -> azure_core::Error {
        SdkKind::HttpResponse {
            status: azure_core::http::StatusCode::from(status),
            error_code: Some(code.to_string()),
            raw_response: None,
        }
        .into_error()
    }

    #[test]
    fn statuses_map_to_kinds_hints_and_retries() {
        let s = store("backups");
        let missing = s.error("read a/b.json", http(404, "BlobNotFound"));
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(
            missing
                .to_string()
                .starts_with("azure acct/backups: cannot read a/b.json")
        );
        let no_container = s.error("list", http(404, "ContainerNotFound"));
        assert!(no_container.hint().unwrap().contains("container"));
        let denied = s.error("list", http(403, "AuthenticationFailed"));
        assert_eq!(denied.kind(), ErrorKind::Destination);
        assert!(!denied.is_temporary());
        assert!(denied.hint().unwrap().contains("storage_access_key"));
        assert!(!denied.to_string().contains("c2VjcmV0"), "{denied}");
        for (status, code) in [(503, "ServerBusy"), (500, "InternalError"), (429, "")] {
            assert!(s.error("x", http(status, code)).is_temporary(), "{status}");
        }
        assert!(!s.error("x", http(400, "InvalidHeaderValue")).is_temporary());
        let refused = s.error("commit x", http(400, "InvalidBlockList"));
        assert!(
            refused.to_string().contains("refused the block list"),
            "{refused}"
        );
    }

    #[test]
    fn a_delete_refused_by_an_immutability_policy_is_told_apart() {
        let s = store("backups");
        let err = http(409, LOCKED_CODE);
        assert!(is_locked(&err));
        assert!(!is_locked(&http(409, "LeaseIdMissing")));
        let ours = s.error("delete a/b.tar.gz.enc", err);
        // The kind prune reads to keep the backup rather than fail.
        assert_eq!(ours.kind(), ErrorKind::Locked { until: None });
        assert!(!ours.is_temporary());
        assert!(
            ours.to_string().contains(
                "cannot delete a/b.tar.gz.enc: it is locked by an immutability policy (409 BlobImmutableDueToPolicy)"
            ),
            "{ours}"
        );
        assert!(ours.hint().unwrap().contains("prune keeps it"), "{ours}");
    }

    #[test]
    fn invalid_container_names_are_explained() {
        let s = store("Bad_Name");
        let err = s.error("create the container", http(400, "InvalidResourceName"));
        assert!(
            err.to_string().contains("\"Bad_Name\" is not valid"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("lowercase"));
        assert!(valid_container_name("backups-01"));
        for bad in ["ab", "Backups", "a--b", "-ab", "ab-", "a_b"] {
            assert!(!valid_container_name(bad), "{bad}");
        }
    }
}
