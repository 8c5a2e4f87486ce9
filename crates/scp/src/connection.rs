//! SSH connections to the server: TCP, handshake, host key check, public key
//! authentication, SFTP; and a small pool of idle connections for reuse.
//!
//! Everything here blocks: it is called from blocking threads only.

use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use service_backup_core::{Error, ErrorKind, Result};
use ssh2::{MethodType, Session, Sftp};
use zeroize::Zeroizing;

use crate::ScpSettings;
use crate::errors;
use crate::fingerprint::{HostKeyPins, KEY_FAMILIES, SeenKey};
use crate::known_hosts::{KnownHosts, Recorded};

/// Idle connections kept for reuse.
const POOL_SIZE: usize = 4;

/// An authenticated SSH session with its SFTP channel.
pub(crate) struct Connection {
    /// The SFTP channel (it keeps the session alive too).
    pub(crate) sftp: Sftp,
    _session: Session,
}

/// The host keys a connection accepts.
enum Trust {
    /// The configured `fingerprint`.
    Configured(HostKeyPins),
    /// The keys recorded in the `known_hosts` file.
    Recorded(HostKeyPins),
    /// None yet: the first key presented is recorded.
    FirstUse,
    /// Any (no `fingerprint`, no `known_hosts` file).
    Unchecked,
}

impl Trust {
    /// The keys to accept, if any are known.
    fn pins(&self) -> Option<&HostKeyPins> {
        match self {
            Self::Configured(pins) | Self::Recorded(pins) => Some(pins),
            Self::FirstUse | Self::Unchecked => None,
        }
    }
}

/// Everything the destination's operations share: settings, pinned host keys, the pool.
pub(crate) struct Remote {
    pub(crate) settings: ScpSettings,
    pins: Option<HostKeyPins>,
    /// Where host keys are recorded on first use, when no `fingerprint` is configured.
    known_hosts: Option<KnownHosts>,
    /// The server's name in the `known_hosts` file (`[host]:port`).
    host: String,
    /// `user@host:port`, for messages.
    pub(crate) name: String,
    /// The host key algorithm that yields the pinned key, once found.
    host_key_family: Mutex<Option<&'static str>>,
    /// Whether the "host key not checked" error was logged.
    warned: AtomicBool,
    idle: Mutex<Vec<Connection>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Remote {
    /// Checks the settings that can be checked without the network.
    pub(crate) fn new(settings: ScpSettings) -> Result<Self> {
        let pins = match settings.fingerprint.as_deref() {
            Some(text) => HostKeyPins::parse(text)?,
            None => None,
        };
        let name = format!("{}@{}:{}", settings.user, settings.server, settings.port);
        let known_hosts = settings.known_hosts.clone().map(KnownHosts::new);
        let host = KnownHosts::host_name(&settings.server, settings.port);
        Ok(Self {
            settings,
            pins,
            known_hosts,
            host,
            name,
            host_key_family: Mutex::new(None),
            warned: AtomicBool::new(false),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `op` on an idle connection, or a new one. A reused connection that turns out
    /// to be broken (the server closed it while idle) is replaced once, at once.
    pub(crate) fn run<T>(&self, mut op: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        let (conn, value) = self.take(&mut op)?;
        self.release(conn);
        Ok(value)
    }

    /// Like [`Remote::run`], but keeps the connection for the caller (an open file).
    pub(crate) fn take<T>(
        &self,
        mut op: impl FnMut(&Connection) -> Result<T>,
    ) -> Result<(Connection, T)> {
        let reused = lock(&self.idle).pop();
        if let Some(conn) = reused {
            match op(&conn) {
                Ok(value) => return Ok((conn, value)),
                Err(e) if e.is_temporary() => {
                    // Every idle connection is likely as dead as this one.
                    let stale = std::mem::take(&mut *lock(&self.idle));
                    drop((conn, stale));
                }
                Err(e) => {
                    self.release(conn);
                    return Err(e);
                }
            }
        }
        let conn = self.open()?;
        match op(&conn) {
            Ok(value) => Ok((conn, value)),
            Err(e) => {
                if !e.is_temporary() {
                    self.release(conn);
                }
                Err(e)
            }
        }
    }

    /// Returns a healthy connection to the pool.
    pub(crate) fn release(&self, conn: Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < POOL_SIZE {
            idle.push(conn);
        }
    }

    /// The host keys to accept: configured, else recorded in the `known_hosts` file.
    fn trust(&self) -> Result<Trust> {
        if let Some(pins) = &self.pins {
            return Ok(Trust::Configured(pins.clone()));
        }
        let Some(file) = &self.known_hosts else {
            return Ok(Trust::Unchecked);
        };
        Ok(match file.lookup(&self.host)? {
            Some(pins) => Trust::Recorded(pins),
            None => Trust::FirstUse,
        })
    }

    /// A new authenticated connection with SFTP. The host key is checked before anything
    /// of the user's is sent.
    pub(crate) fn open(&self) -> Result<Connection> {
        let trust = self.trust()?;
        let pins = trust.pins();
        let known = *lock(&self.host_key_family);
        let first = known.or_else(|| pins.and_then(HostKeyPins::preferred_family));
        let (session, seen) = match self.handshake(self.tcp()?, first) {
            Ok(found) => found,
            // The server no longer holds a key of the pinned type: take any, then compare.
            Err(e) if first.is_some() && !e.is_temporary() => self.handshake(self.tcp()?, None)?,
            Err(e) => return Err(e),
        };
        // A key seen on first use is recorded only once the login succeeded: a server this
        // user cannot use is not trusted for later.
        let mut first_use = None;
        let session = match pins {
            Some(pins) if pins.accept(&seen) => {
                if known != Some(seen.family()) {
                    *lock(&self.host_key_family) = Some(seen.family());
                }
                session
            }
            Some(pins) => self.find_pinned_key(&trust, pins, first, seen)?,
            None if matches!(trust, Trust::FirstUse) => {
                self.check_recordable(&seen)?;
                first_use = Some(seen);
                session
            }
            None => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        server = %self.name,
                        host_key = %seen.sha256_text(),
                        "no `fingerprint` is configured for the scp destination and no \
                         known_hosts file is kept: its host key is not checked; set \
                         `fingerprint` to the host key shown here to pin it"
                    );
                }
                session
            }
        };
        self.authenticate(&session)?;
        if let Some(seen) = first_use {
            self.trust_first_use(seen)?;
        }
        let sftp = session
            .sftp()
            .map_err(|e| errors::session(&self.name, "start SFTP", &e))?;
        Ok(Connection {
            sftp,
            _session: session,
        })
    }

    /// Whether the key a server presented on first use can be recorded at all.
    fn check_recordable(&self, seen: &SeenKey) -> Result<()> {
        if seen.family().is_empty() {
            // Such a record would match nothing later: every connection would be a first use.
            return Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "the SSH server {} presented a host key of type {}, which the agent cannot \
                     record in its known_hosts file",
                    self.name,
                    seen.type_name()
                ),
            )
            .with_hint(format!(
                "give the server an ed25519, ECDSA or RSA host key, or set `fingerprint: \"{}\"` \
                 once you have checked it against `ssh-keygen -l -f` of the server's host key",
                seen.sha256_text()
            )));
        }
        Ok(())
    }

    /// The first login to a server with no key recorded: records the key it presented
    /// (unless another process recorded one meanwhile: then that one must match).
    fn trust_first_use(&self, seen: SeenKey) -> Result<()> {
        let file = self
            .known_hosts
            .as_ref()
            .expect("first use needs a known_hosts file");
        match file.record(&self.host, &seen).map_err(|e| {
            e.context(format!(
                "cannot record the host key of the SSH server {} in the known_hosts file",
                self.name
            ))
        })? {
            Recorded::New => {
                tracing::error!(
                    server = %self.name,
                    host_key = %format!("{} ({})", seen.sha256_text(), seen.type_name()),
                    known_hosts = %file.path().display(),
                    "no `fingerprint` is configured for the scp destination: the host key the \
                     server presented was trusted on first use and recorded in the known_hosts \
                     file, and a different key will be refused; check it against \
                     `ssh-keygen -l -f` of the server's host key, and pin it with \
                     `fingerprint: \"{}\"`",
                    seen.sha256_text()
                );
            }
            Recorded::Already(pins) if pins.accept(&seen) => {}
            Recorded::Already(pins) => {
                return Err(self.mismatch(&Trust::Recorded(pins.clone()), &pins, &[seen]));
            }
        }
        *lock(&self.host_key_family) = Some(seen.family());
        Ok(())
    }

    /// The server did not present the pinned key first: it may hold keys of several types.
    /// Asks for each other type in turn; refuses the server if none is an accepted key.
    fn find_pinned_key(
        &self,
        trust: &Trust,
        pins: &HostKeyPins,
        first: Option<&'static str>,
        seen: SeenKey,
    ) -> Result<Session> {
        let mut presented = vec![seen];
        for family in KEY_FAMILIES {
            if Some(family) == first || presented.iter().any(|k| k.family() == family) {
                continue;
            }
            let tcp = self.tcp()?;
            let Ok((session, key)) = self.handshake(tcp, Some(family)) else {
                // The server holds no key of this type: try the next.
                continue;
            };
            if pins.accept(&key) {
                *lock(&self.host_key_family) = Some(family);
                return Ok(session);
            }
            presented.push(key);
        }
        Err(self.mismatch(trust, pins, &presented))
    }

    /// The refusal of a server that presented none of the accepted keys.
    fn mismatch(&self, trust: &Trust, pins: &HostKeyPins, presented: &[SeenKey]) -> Error {
        if !matches!(trust, Trust::Recorded(_)) {
            return Error::new(
                ErrorKind::Destination,
                format!(
                    "the host key of the SSH server {} does not match the configured \
                     fingerprint: expected {}, the server presented {}",
                    self.name,
                    pins.describe(),
                    pins.describe_seen(presented)
                ),
            )
            .with_hint(
                "check `fingerprint` against `ssh-keygen -l -f` of the server's host key; if \
                 the key changed on purpose, update `fingerprint`; otherwise another machine \
                 may be answering at this address",
            );
        }
        let file = self
            .known_hosts
            .as_ref()
            .map_or_else(String::new, |f| f.path().display().to_string());
        Error::new(
            ErrorKind::Destination,
            format!(
                "the host key of the SSH server {} has changed: the known_hosts file {file} \
                 records {} for {}, the server presented {}; the agent did not log in",
                self.name,
                pins.describe(),
                self.host,
                pins.describe_seen(presented)
            ),
        )
        .with_hint(format!(
            "if the server's key was changed on purpose, accept the new one: delete the old \
             one with `ssh-keygen -R '{}' -f {file}` and the next connection records the new \
             one, or set `fingerprint` to it; otherwise another machine may be answering at \
             this address",
            self.host
        ))
    }

    /// A TCP connection to the server, trying each of its addresses.
    fn tcp(&self) -> Result<TcpStream> {
        let s = &self.settings;
        let host_port = format!("{}:{}", s.server, s.port);
        let timeout_secs = s.timeout.as_secs();
        let addrs: Vec<_> = (s.server.as_str(), s.port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Destination,
                    format!("cannot connect to the SSH server {host_port}: {e}"),
                )
                .with_hint("check `server`, and this VM's DNS settings")
            })?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, s.timeout) {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(tcp), _) => tcp,
            (None, Some(e)) => return Err(errors::connect(&host_port, timeout_secs, &e)),
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::Destination,
                    format!("cannot connect to the SSH server {host_port}: no address found"),
                )
                .with_hint("check `server`, and this VM's DNS settings"));
            }
        };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// The SSH handshake, asking for `host_key_family` if given.
    fn handshake(
        &self,
        tcp: TcpStream,
        host_key_family: Option<&str>,
    ) -> Result<(Session, SeenKey)> {
        let s = &self.settings;
        let mut session =
            Session::new().map_err(|e| errors::session(&self.name, "start a session", &e))?;
        // Every blocking call gives up after this long, so a silent server cannot hang us.
        session.set_timeout(u32::try_from(s.timeout.as_millis()).unwrap_or(u32::MAX));
        session.set_tcp_stream(tcp);
        if let Some(family) = host_key_family {
            session
                .method_pref(MethodType::HostKey, family)
                .map_err(|e| errors::session(&self.name, "choose host key types", &e))?;
        }
        session
            .handshake()
            .map_err(|e| errors::session(&self.name, "complete the SSH handshake", &e))?;
        let seen = SeenKey::of(&session).ok_or_else(|| {
            Error::new(
                ErrorKind::Destination,
                format!("the SSH server {} presented no host key", self.name),
            )
        })?;
        Ok((session, seen))
    }

    /// Public key authentication with the key held in memory; one attempt per session
    /// (a second attempt on the same session can block forever).
    fn authenticate(&self, session: &Session) -> Result<()> {
        let s = &self.settings;
        // Block scalars in YAML keep or drop the final newline; the key parser needs it.
        let mut key = Zeroizing::new(s.key.expose().trim().replace("\r\n", "\n"));
        key.push('\n');
        session
            .userauth_pubkey_memory(&s.user, None, &key, None)
            .map_err(|e| errors::authentication(&self.name, &s.user, &e))?;
        if !session.authenticated() {
            return Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "the SSH server {} did not complete the authentication of {}",
                    self.name, s.user
                ),
            )
            .with_hint("check the server's log: it may ask for more than a public key"));
        }
        Ok(())
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Closing a connection waits for the server's answer: not on an async thread.
        let idle = std::mem::take(&mut *lock(&self.idle));
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("sftp-close".into())
                .spawn(move || drop(idle));
        }
    }
}
