//! S3 failures as service-backup errors: the bucket named, what to do, and whether the
//! same request may succeed later.
//!
//! Only the error code, the service's one-line message, the HTTP status and the chain of
//! transport errors are used: never a raw response (an S3 error body can echo request
//! details) and never the request itself.

use std::fmt;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use service_backup_core::{Error, ErrorKind};

/// What was being done, for messages: `upload part 3 of redis/x.tar.gz.enc`, and the
/// permission it needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// The bucket.
    pub bucket: &'a str,
    /// The endpoint, for unreachable stores; `None`: Amazon S3.
    pub endpoint: Option<&'a str>,
    /// The permission the request needs, such as `s3:PutObject`.
    pub right: &'a str,
    /// What to check when the store refuses the credentials.
    pub credentials: &'a str,
}

/// The S3 error code of a refused request, kept as the source of our error so that callers
/// can tell `NoSuchBucket` or `NoSuchUpload` from the rest.
#[derive(Debug)]
pub(crate) struct ServiceCode {
    code: String,
}

impl fmt::Display for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

impl std::error::Error for ServiceCode {}

/// The S3 error code behind `err`, if it is a refused request.
pub(crate) fn service_code(err: &Error) -> Option<&str> {
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<ServiceCode>())
        .map(|c| c.code.as_str())
}

/// Converts a failed request into our error; `action` says what was attempted
/// (`upload part 3 of KEY`).
pub(crate) fn convert<E>(err: &SdkError<E>, req: Request<'_>, action: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let prefix = format!("s3 bucket {}: cannot {action}", req.bucket);
    if let Some(e) = credentials_problem(err, req, &prefix) {
        return e;
    }
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            refused(service.err(), status, req, &prefix)
        }
        SdkError::TimeoutError(_) => Error::new(
            ErrorKind::Destination,
            format!("{prefix}: the request to {} timed out", where_(req)),
        )
        .with_hint("check endpoint_url and the network between this VM and the store")
        .temporary(),
        SdkError::DispatchFailure(failure) => {
            let reason = chain(err);
            if is_certificate_problem(&reason) {
                return Error::new(
                    ErrorKind::Destination,
                    format!("{prefix}: the TLS certificate of {} is not trusted: {reason}", where_(req)),
                )
                .with_hint("set ca_cert to the PEM of the certificate authority that signed the endpoint's certificate, and check that endpoint_url names the host in that certificate");
            }
            let mut e = Error::new(
                ErrorKind::Destination,
                format!("{prefix}: {} is unreachable: {reason}", where_(req)),
            )
            .with_hint(
                "check endpoint_url and region, and the network between this VM and the store",
            );
            if !failure.is_user() {
                e = e.temporary();
            }
            e
        }
        SdkError::ResponseError(_) => Error::new(
            ErrorKind::Destination,
            format!(
                "{prefix}: the answer of {} could not be read: {}",
                where_(req),
                chain(err)
            ),
        )
        .temporary(),
        SdkError::ConstructionFailure(_) => Error::new(
            ErrorKind::Destination,
            format!("{prefix}: the request could not be built: {}", chain(err)),
        )
        .with_hint("check endpoint_url, region and bucket_name"),
        _ => Error::new(ErrorKind::Destination, format!("{prefix}: {}", chain(err))).temporary(),
    }
}

/// Our error when the request could not be signed because the credential chain found no
/// credentials, or failed to get them (STS refused the token, the instance metadata did
/// not answer).
fn credentials_problem<E>(err: &SdkError<E>, req: Request<'_>, prefix: &str) -> Option<Error>
where
    E: std::error::Error + 'static,
{
    if matches!(err, SdkError::ServiceError(_)) {
        return None;
    }
    let reason = chain(err);
    let found_none = reason.contains("no providers in chain provided credentials");
    let failed = [
        "the credential provider was not enabled",
        "the credentials provider was not properly configured",
        "an error occurred while loading credentials",
    ]
    .iter()
    .any(|needle| reason.contains(needle));
    if !found_none && !failed {
        return None;
    }
    let message = if found_none {
        format!(
            "{prefix}: no credentials: none of the places credentials_source env_or_instance_profile looks at has any"
        )
    } else {
        format!("{prefix}: cannot get credentials: {reason}")
    };
    let e = Error::new(ErrorKind::Destination, message).with_hint(format!(
        "check {}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, or a profile in the shared credentials file, or attach an instance profile to the VM",
        req.credentials
    ));
    // Finding none is not temporary; a metadata server or STS that failed may answer later.
    Some(if found_none { e } else { e.temporary() })
}

fn where_(req: Request<'_>) -> String {
    match req.endpoint {
        Some(endpoint) => endpoint.to_string(),
        None => "Amazon S3".to_string(),
    }
}

/// A request the store answered with an error.
fn refused<E: ProvideErrorMetadata>(err: &E, status: u16, req: Request<'_>, prefix: &str) -> Error {
    let code = err
        .code()
        .map_or_else(|| format!("HTTP {status}"), str::to_string);
    let said = err
        .message()
        .map(|m| format!(" ({})", trimmed(m)))
        .unwrap_or_default();
    let message = format!("{prefix}: {code}{said}");
    let (kind, hint, temporary) = classify(&code, status, req);
    let mut e = Error::new(kind, message).with_source(ServiceCode { code });
    if let Some(hint) = hint {
        e = e.with_hint(hint);
    }
    if temporary { e.temporary() } else { e }
}

/// The most characters of a store's message that go into an error (and so into logs).
const MESSAGE_CAP: usize = 300;

/// `message` cut to [`MESSAGE_CAP`] characters, marked when cut.
fn trimmed(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_CAP) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_string(),
    }
}

fn classify(code: &str, status: u16, req: Request<'_>) -> (ErrorKind, Option<String>, bool) {
    let dest = ErrorKind::Destination;
    match code {
        "NoSuchKey" | "NotFound" => (ErrorKind::NotFound, None, false),
        "NoSuchBucket" => (
            dest,
            Some(format!(
                "check bucket_name and region; the first backup creates the bucket when its credentials are allowed s3:CreateBucket, otherwise create bucket {}",
                req.bucket
            )),
            false,
        ),
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken"
        | "TokenRefreshRequired" => (
            dest,
            Some(format!("check {}", req.credentials)),
            false,
        ),
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => (
            dest,
            Some(format!(
                "check {}, and grant {} on bucket {}",
                req.credentials, req.right, req.bucket
            )),
            false,
        ),
        "PermanentRedirect" | "AuthorizationHeaderMalformed" | "IncorrectEndpoint"
        | "IllegalLocationConstraintException" | "InvalidLocationConstraint" => (
            dest,
            Some("set region to the bucket's region (and endpoint_url, if any, to that region's endpoint)".into()),
            false,
        ),
        "InvalidBucketName" => (
            dest,
            Some("fix bucket_name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit".into()),
            false,
        ),
        "BucketAlreadyExists" => (
            dest,
            Some("this bucket name belongs to another account: choose another bucket_name".into()),
            false,
        ),
        "RequestTimeTooSkewed" => (
            dest,
            Some("set the VM's clock right (NTP)".into()),
            false,
        ),
        "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"
        | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "OperationAborted" => {
            (dest, None, true)
        }
        _ => match status {
            403 => (
                dest,
                Some(format!(
                    "check {}, and grant {} on bucket {}",
                    req.credentials, req.right, req.bucket
                )),
                false,
            ),
            404 => (ErrorKind::NotFound, None, false),
            408 | 429 | 500..=599 => (dest, None, true),
            _ => (dest, None, false),
        },
    }
}

/// The chain of transport errors, without repeats: `io error: tcp connect error:
/// Connection refused (os error 111)`.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let mut text = e.to_string();
        // "Connection refused (os error 111)": the number says nothing more.
        if let Some(i) = text.find(" (os error ") {
            text.truncate(i);
        }
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    without_url_secrets(&parts.join(": "))
}

/// `text` with the user info and the query of each URL in it left out: the SDK quotes
/// the endpoint in some errors (`Custom endpoint `...` was not a valid URI`), and those
/// parts may hold a password or a token.
fn without_url_secrets(text: &str) -> String {
    let ends_url = |c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '<' | '>');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        let url_end = after.find(ends_url).unwrap_or(after.len());
        let url = &after[..url_end];
        // A password may hold `?` or `#` when it is quoted raw: the user info ends at the
        // last `@` before the path.
        let authority_end = url.find('/').unwrap_or(url.len());
        let host_start = url[..authority_end].rfind('@').map_or(0, |at| at + 1);
        let tail = &url[host_start..];
        out.push_str(tail.split(['?', '#']).next().unwrap_or_default());
        rest = &after[url_end..];
    }
    out.push_str(rest);
    out
}

fn is_certificate_problem(reason: &str) -> bool {
    ["UnknownIssuer", "invalid peer certificate", "certificate"]
        .iter()
        .any(|needle| reason.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_sdk_errors_lose_their_user_info_and_query() {
        assert_eq!(
            without_url_secrets(
                "Custom endpoint `http://u:SEKRITPASS@127.0.0.1:1/?token=SEKRITQ` was not a valid URI"
            ),
            "Custom endpoint `http://127.0.0.1:1/` was not a valid URI"
        );
        assert_eq!(
            without_url_secrets("a http://h/p?x=1#f b https://k@h2 c"),
            "a http://h/p b https://h2 c"
        );
        assert_eq!(without_url_secrets("no url: here"), "no url: here");
        assert_eq!(
            without_url_secrets("x http://u:p?w#d@h/k y"),
            "x http://h/k y"
        );
        assert_eq!(without_url_secrets("odd ://@?"), "odd ://");
    }

    const REQ: Request<'static> = Request {
        bucket: "b",
        endpoint: Some("http://127.0.0.1:1"),
        right: "s3:PutObject",
        credentials: "access_key_id and secret_access_key",
    };

    #[test]
    fn a_long_message_is_trimmed() {
        let long = "é".repeat(5000);
        let cut = trimmed(&long);
        assert_eq!(cut.chars().count(), MESSAGE_CAP + 1, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(trimmed("Access Denied"), "Access Denied");
    }

    #[test]
    fn codes_decide_kind_hint_and_retry() {
        let (kind, _, temp) = classify("NoSuchKey", 404, REQ);
        assert_eq!((kind, temp), (ErrorKind::NotFound, false));
        let (_, hint, temp) = classify("SlowDown", 503, REQ);
        assert!(temp && hint.is_none());
        let (_, hint, temp) = classify("AccessDenied", 403, REQ);
        assert!(!temp && hint.unwrap().contains("grant s3:PutObject on bucket b"));
        let (_, hint, _) = classify("InvalidAccessKeyId", 403, REQ);
        assert!(hint.unwrap().contains("secret_access_key"));
        let (_, _, temp) = classify("Whatever", 502, REQ);
        assert!(temp);
        let (_, _, temp) = classify("Whatever", 400, REQ);
        assert!(!temp);
    }
}
