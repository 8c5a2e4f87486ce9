//! SSH and SFTP failures, as core's [`Error`]: what failed on which server, whether it may
//! work later, and what to do. Messages never carry the private key.

use service_backup_core::{Error, ErrorKind};
use ssh2::ErrorCode;

// libssh2's session error codes (LIBSSH2_ERROR_*) that we tell apart.
const SOCKET_NONE: i32 = -1;
const BANNER_RECV: i32 = -2;
const BANNER_SEND: i32 = -3;
const SOCKET_SEND: i32 = -7;
const TIMEOUT: i32 = -9;
const SOCKET_DISCONNECT: i32 = -13;
const FILE: i32 = -16;
const AUTHENTICATION_FAILED: i32 = -18;
const PUBLICKEY_UNVERIFIED: i32 = -19;
const CHANNEL_FAILURE: i32 = -21;
const CHANNEL_CLOSED: i32 = -26;
const CHANNEL_EOF_SENT: i32 = -27;
const SOCKET_TIMEOUT: i32 = -30;
const INVAL: i32 = -34;
const SOCKET_RECV: i32 = -43;
const BAD_SOCKET: i32 = -45;
const KEYFILE_AUTH_FAILED: i32 = -48;

// SFTP status codes (SSH_FX_*).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_NO_CONNECTION: i32 = 6;
const FX_CONNECTION_LOST: i32 = 7;
/// The server does not support a request (such as `fsync@openssh.com`).
pub(crate) const FX_OP_UNSUPPORTED: i32 = 8;
const FX_NO_SUCH_PATH: i32 = 10;
const FX_WRITE_PROTECT: i32 = 12;
const FX_NO_SPACE_ON_FILESYSTEM: i32 = 14;
const FX_QUOTA_EXCEEDED: i32 = 15;

/// Whether the connection itself failed (the same request may work on a new one).
fn connection_lost(code: ErrorCode) -> bool {
    match code {
        ErrorCode::Session(c) => matches!(
            c,
            SOCKET_NONE
                | BANNER_RECV
                | BANNER_SEND
                | SOCKET_SEND
                | TIMEOUT
                | SOCKET_DISCONNECT
                | CHANNEL_FAILURE
                | CHANNEL_CLOSED
                | CHANNEL_EOF_SENT
                | SOCKET_TIMEOUT
                | SOCKET_RECV
                | BAD_SOCKET
        ),
        ErrorCode::SFTP(c) => matches!(c, FX_NO_CONNECTION | FX_CONNECTION_LOST),
    }
}

/// Whether an SFTP request failed because the path does not exist.
pub(crate) fn is_not_found(err: &ssh2::Error) -> bool {
    matches!(
        err.code(),
        ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH)
    )
}

/// Whether an SFTP request failed with status `code`.
pub(crate) fn is_sftp(err: &ssh2::Error, code: i32) -> bool {
    err.code() == ErrorCode::SFTP(code)
}

/// The hint for a connection that broke.
fn network_hint(server: &str) -> String {
    format!("check that the SSH server {server} is running and reachable from this VM")
}

/// An SFTP request on `path` failed; `server` is `user@host:port`.
pub(crate) fn sftp(server: &str, action: &str, path: &str, err: &ssh2::Error) -> Error {
    let user = server.split('@').next().unwrap_or(server);
    let code = err.code();
    let message = format!(
        "cannot {action} {path} on {server}: {}",
        err.message().trim()
    );
    let (kind, hint) = match code {
        ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH) => (ErrorKind::NotFound, None),
        ErrorCode::SFTP(FX_PERMISSION_DENIED | FX_WRITE_PROTECT) => (
            ErrorKind::Destination,
            Some(format!(
                "check that the user {user} may write to the `destination` directory on the \
                 server (its owner and mode)"
            )),
        ),
        ErrorCode::SFTP(FX_NO_SPACE_ON_FILESYSTEM | FX_QUOTA_EXCEEDED) => (
            ErrorKind::Destination,
            Some("free space on the server, or raise the user's quota".to_string()),
        ),
        c if connection_lost(c) => (ErrorKind::Destination, Some(network_hint(server))),
        _ => (ErrorKind::Destination, None),
    };
    let mut e = Error::new(kind, message);
    if let Some(hint) = hint {
        e = e.with_hint(hint);
    }
    if connection_lost(code) {
        e = e.temporary();
    }
    e
}

/// Reading or writing an open remote file failed (ssh2 reports these as I/O errors).
pub(crate) fn transfer(server: &str, action: &str, path: &str, err: &std::io::Error) -> Error {
    let text = err.to_string();
    let lowered = text.to_ascii_lowercase();
    let message = format!("cannot {action} {path} on {server}: {text}");
    if lowered.contains("no space") || lowered.contains("quota") {
        return Error::new(ErrorKind::Destination, message)
            .with_hint("free space on the server, or raise the user's quota");
    }
    if lowered.contains("permission denied") || lowered.contains("write protected") {
        return Error::new(ErrorKind::Destination, message);
    }
    // Anything else while a file is open is the connection failing.
    Error::new(ErrorKind::Destination, message)
        .with_hint(network_hint(server))
        .temporary()
}

/// The SSH session failed before authentication (handshake) or while setting up SFTP.
pub(crate) fn session(server: &str, action: &str, err: &ssh2::Error) -> Error {
    let message = format!("cannot {action} with {server}: {}", err.message().trim());
    if connection_lost(err.code()) {
        Error::new(ErrorKind::Destination, message)
            .with_hint(network_hint(server))
            .temporary()
    } else {
        Error::new(ErrorKind::Destination, message).with_hint(
            "check that `server` and `port` name an SSH server that offers SFTP \
             (`Subsystem sftp` in its sshd_config)",
        )
    }
}

/// Public key authentication failed. The library's own text is left out on purpose: only
/// our words, so no part of the key can reach a message.
pub(crate) fn authentication(server: &str, user: &str, err: &ssh2::Error) -> Error {
    match err.code() {
        ErrorCode::Session(AUTHENTICATION_FAILED | PUBLICKEY_UNVERIFIED) => Error::new(
            ErrorKind::Destination,
            format!("the SSH server {server} refused the private key `key` for the user {user}"),
        )
        .with_hint(format!(
            "add the public half of `key` to the authorized_keys of {user} on the server, \
             or check `user`"
        )),
        ErrorCode::Session(FILE | INVAL | KEYFILE_AUTH_FAILED) => Error::new(
            ErrorKind::Config,
            format!("the private key `key` for {server} cannot be used"),
        )
        .with_hint(
            "set `key` to an RSA, ECDSA or ed25519 private key without a passphrase, \
             in PEM or OpenSSH format, with its BEGIN and END lines",
        ),
        code if connection_lost(code) => Error::new(
            ErrorKind::Destination,
            format!("the connection to {server} broke during authentication"),
        )
        .with_hint(network_hint(server))
        .temporary(),
        code => Error::new(
            ErrorKind::Destination,
            format!("authentication as {user} on {server} failed ({code})"),
        )
        .with_hint("check `user` and `key`, and the server's log"),
    }
}

/// A TCP connection to the server could not be made.
pub(crate) fn connect(host_port: &str, timeout_secs: u64, err: &std::io::Error) -> Error {
    use std::io::ErrorKind as Io;
    match err.kind() {
        Io::ConnectionRefused => Error::new(
            ErrorKind::Destination,
            format!("cannot connect to the SSH server {host_port}: connection refused"),
        )
        .with_hint("check `server` and `port`, and that the SSH server is running"),
        Io::TimedOut | Io::WouldBlock => Error::new(
            ErrorKind::Destination,
            format!(
                "cannot connect to the SSH server {host_port}: no answer within {timeout_secs}s"
            ),
        )
        .with_hint("check `server` and `port`, and the network path and firewalls to the server")
        .temporary(),
        Io::ConnectionReset | Io::ConnectionAborted | Io::Interrupted => Error::new(
            ErrorKind::Destination,
            format!("cannot connect to the SSH server {host_port}: {err}"),
        )
        .with_hint("check the network path to the server")
        .temporary(),
        _ => Error::new(
            ErrorKind::Destination,
            format!("cannot connect to the SSH server {host_port}: {err}"),
        )
        .with_hint("check `server` and `port`, and the network path to the server"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sftp_errors_are_classified() {
        let server = "backup@10.0.0.5:22";
        let missing = sftp(
            server,
            "open",
            "/srv/x",
            &ssh2::Error::from_errno(ErrorCode::SFTP(FX_NO_SUCH_FILE)),
        );
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(!missing.is_temporary());
        let denied = sftp(
            server,
            "create directory",
            "/srv/x",
            &ssh2::Error::from_errno(ErrorCode::SFTP(FX_PERMISSION_DENIED)),
        );
        assert_eq!(denied.kind(), ErrorKind::Destination);
        let text = denied.to_string();
        assert!(
            text.starts_with("cannot create directory /srv/x on backup@10.0.0.5:22"),
            "{text}"
        );
        assert!(text.contains("the user backup may write"), "{text}");
        let lost = sftp(
            server,
            "write",
            "/srv/x",
            &ssh2::Error::from_errno(ErrorCode::Session(SOCKET_DISCONNECT)),
        );
        assert!(lost.is_temporary());
    }

    #[test]
    fn authentication_errors_say_what_to_do() {
        let refused = authentication(
            "h:22",
            "backup",
            &ssh2::Error::from_errno(ErrorCode::Session(AUTHENTICATION_FAILED)),
        );
        assert!(refused.to_string().contains("refused the private key"));
        assert!(refused.to_string().contains("authorized_keys of backup"));
        let unusable = authentication(
            "h:22",
            "backup",
            &ssh2::Error::from_errno(ErrorCode::Session(FILE)),
        );
        assert_eq!(unusable.kind(), ErrorKind::Config);
        assert!(!unusable.is_temporary());
    }

    #[test]
    fn connect_errors_name_the_server() {
        let refused = connect(
            "10.0.0.5:2222",
            30,
            &std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        assert!(!refused.is_temporary());
        assert!(
            refused
                .to_string()
                .contains("10.0.0.5:2222: connection refused")
        );
        let timeout = connect(
            "10.0.0.5:2222",
            30,
            &std::io::Error::from(std::io::ErrorKind::TimedOut),
        );
        assert!(timeout.is_temporary());
    }
}
