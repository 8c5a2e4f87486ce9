//! Bad input through the real binary: each gets a clear message and exit code, and nothing
//! is written or lost.
//!
//! [`ROWS`] is the bad-input table: one row per case, checked by one test
//! (`every_bad_input_of_the_table_is_refused`). Adding a case is adding a row. Cases that
//! need a sequence of commands (a wrong key that a previous key opens, a damaged stored
//! backup, an unreadable source) are the tests after the table.

mod common;

use std::cell::OnceCell;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, is_root, tree};

const HEADER_LEN: usize = 8 + 16 + 2 + 6 + 68 + 32;

/// The length of an archive's header, from its stanza lengths: with the context stanza it
/// depends on the backup's name.
fn header_of(archive: &[u8]) -> usize {
    service_backup_core::format::header_len(archive)
        .unwrap()
        .unwrap()
}
const SEALED_CHUNK: usize = 65536 + 16;
/// An env with a backup of a source larger than two chunks once compressed.
fn env_with_big_backup() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let noise = service_backup_testkit::incompressible(400_000, 0x2545_F491_4F6C_DD1D);
    std::fs::write(env.path("source/noise.bin"), noise).unwrap();
    let item = env.backup();
    let archive = env.archive_of(&item);
    assert!(std::fs::metadata(&archive).unwrap().len() > (HEADER_LEN + 3 * SEALED_CHUNK) as u64);
    (env, archive)
}

/// One bad input: what is given to the binary.
enum Input {
    /// A change made to a good encrypted backup of more than two chunks (`good`), with a
    /// second backup of the same key at hand (`other`); restored with `restore --file`.
    Archive(fn(good: &[u8], other: &[u8]) -> Vec<u8>),
    /// A good archive read with a key it was not made for.
    WrongKey,
    /// A good archive read with an X25519 identity (`--identity`) it was not made for.
    WrongIdentity,
    /// An archive (made from the good one, or a vector of spec/vectors) given to `decrypt`
    /// (to a file and into a folder) and `restore --file` with this backup password
    /// (`--passphrase-file`).
    Password(fn(good: &[u8]) -> Vec<u8>, &'static str),
    /// A plain .tar.gz holding a harmless file and then this entry: (type, name, link).
    TarEntry(tar::EntryType, &'static str, Option<&'static str>),
    /// A configuration file; `{d}` stands for the working folder. Run with `validate` and
    /// with `backup`.
    Config(&'static str),
    /// A configuration file of these bytes as they are.
    RawConfig(&'static [u8]),
    /// These arguments as they are, in the working folder (with its good `config.yml`).
    Args(&'static [&'static str]),
    /// A good key file that other users may read or write: its mode.
    KeyFileMode(u32),
    /// The content of the key file named by an otherwise good configuration, and of the key
    /// file given to `decrypt --key-file`.
    KeyFile(&'static str),
    /// A request to the HTTP API of one daemon started for every API row, with a backup
    /// already made: in `path` and `body`, `{id}` stands for that backup's id. The row's
    /// `code` is the HTTP status, its `words` are words of the JSON error body.
    Api {
        method: &'static str,
        path: &'static str,
        auth: Auth,
        content_type: Option<&'static str>,
        body: &'static [u8],
    },
}

/// The `Authorization` header of an API row.
#[derive(Clone, Copy)]
enum Auth {
    /// `Bearer <the daemon's token>`.
    Good,
    /// No header.
    Missing,
    /// This header value, as it is.
    Header(&'static str),
    /// The daemon's token under this scheme word.
    Scheme(&'static str),
    /// No header; the cookie of a session just opened by the dashboard root, and this
    /// `X-CSRF-Token` (none when `None`).
    Session(Option<&'static str>),
    /// No header; this `sb_session` cookie as it is.
    Cookie(&'static str),
}

/// An API row's input: a request.
const fn api(
    method: &'static str,
    path: &'static str,
    auth: Auth,
    content_type: Option<&'static str>,
    body: &'static [u8],
) -> Input {
    Input::Api {
        method,
        path,
        auth,
        content_type,
        body,
    }
}

/// The password of the password vectors of spec/vectors (published, for tests only).
const VECTOR_PASSWORD: &str = "correct horse battery staple";

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const JSON: Option<&str> = Some("application/json");
/// A body over the API's 64 KiB limit.
const OVERSIZED: &[u8] = &[b'a'; 100 * 1024];

/// A row of the bad-input table.
struct Row {
    name: &'static str,
    input: Input,
    code: i32,
    /// Words the error must contain (each of them).
    words: &'static [&'static str],
}

const fn row(name: &'static str, input: Input, code: i32, words: &'static [&'static str]) -> Row {
    Row {
        name,
        input,
        code,
        words,
    }
}

/// `good` with empty stanzas of an unknown type before its own, 65 in all: one more than
/// a header may hold (`spec/archive-format.md`, "Limits").
fn sixty_five_stanzas(good: &[u8], _: &[u8]) -> Vec<u8> {
    let count = u16::from_be_bytes([good[24], good[25]]);
    let mut out = good[..24].to_vec();
    out.extend_from_slice(&65u16.to_be_bytes());
    for _ in count..65 {
        out.extend_from_slice(&[0x01, 0x00, 0, 0, 0, 0]);
    }
    out.extend_from_slice(&good[26..]);
    out
}

fn flip(good: &[u8], i: usize) -> Vec<u8> {
    let mut b = good.to_vec();
    let i = if i >= good.len() { good.len() - 1 } else { i };
    b[i] ^= 0x01;
    b
}

const FULL: usize = usize::MAX;
const GOOD_CONFIG: &str = "destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n";

/// The bad-input table: one line per case.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    // Encrypted archives: authentication, truncation, order, another format.
    row("tampered key stanza", Input::Archive(|g, _| flip(g, 40)), 1, &["fails authentication"]),
    row("tampered header MAC", Input::Archive(|g, _| flip(g, header_of(g) - 1)), 1, &["header fails authentication"]),
    row("tampered chunk body", Input::Archive(|g, _| flip(g, header_of(g) + 100)), 1, &["chunk 0 of the archive fails authentication"]),
    row("tampered chunk tag", Input::Archive(|g, _| flip(g, header_of(g) + SEALED_CHUNK - 3)), 1, &["chunk 0 of the archive fails authentication"]),
    row("tampered final tag", Input::Archive(|g, _| flip(g, FULL)), 1, &["fails authentication"]),
    row("truncated at a chunk boundary", Input::Archive(|g, _| g[..header_of(g) + 2 * SEALED_CHUNK].to_vec()), 1, &["truncated after chunk 1"]),
    row("truncated inside a chunk", Input::Archive(|g, _| g[..header_of(g) + SEALED_CHUNK + 500].to_vec()), 1, &["chunk 1 of the archive fails authentication"]),
    row("truncated header", Input::Archive(|g, _| g[..header_of(g) - 5].to_vec()), 1, &["header is truncated"]),
    row("header only", Input::Archive(|g, _| g[..header_of(g)].to_vec()), 1, &["truncated"]),
    row("chunks reordered", Input::Archive(|g, _| { let mut s = g.to_vec(); let (a, b) = (header_of(g), header_of(g) + SEALED_CHUNK); s[a..b].copy_from_slice(&g[b..b + SEALED_CHUNK]); s[b..b + SEALED_CHUNK].copy_from_slice(&g[a..b]); s }), 1, &["chunk 0 of the archive fails authentication"]),
    row("header of another archive", Input::Archive(|g, o| [&o[..header_of(o)], &g[header_of(g)..]].concat()), 1, &["chunk 0 of the archive fails authentication"]),
    row("data appended", Input::Archive(|g, _| [g, b"trailing"].concat()), 1, &["of the archive fails authentication"]),
    row("a zip file", Input::Archive(|_, _| b"PK\x03\x04 this is a zip file".to_vec()), 1, &["a service-backup encrypted archive"]),
    row("an empty file", Input::Archive(|_, _| Vec::new()), 1, &["empty"]),
    row("wrong key", Input::WrongKey, 1, &["the archive was encrypted for key id"]),
    // Issue 25: the message lists the key ids the archive needs and the recipients tried.
    row("identity that matches no stanza", Input::WrongIdentity, 1, &["the archive was encrypted for key id ", ", but the given identities are for recipient "]),
    row("header with 65 stanzas", Input::Archive(sixty_five_stanzas), 1, &["the archive header lists 65 key stanzas (1 to 64 are valid)"]),
    // Issue 25, part 2: a forged scrypt work factor is refused while the header is parsed,
    // before any scrypt (spec/vectors/corrupt-passphrase-work-factor-40: "the password
    // stanza asks for a scrypt work factor of 2^40").
    row("scrypt work factor of 2^40", Input::Password(|_| include_bytes!("../../../spec/vectors/corrupt-passphrase-work-factor-40.sbak").to_vec(), VECTOR_PASSWORD), 1, &["the password stanza asks for a scrypt work factor of 2^40; 2^1 to 2^20 are accepted"]),
    row("password stanza absent: a backup taken before the password was set", Input::Password(<[u8]>::to_vec, VECTOR_PASSWORD), 1, &["this backup carries no password stanza: it was made before a backup password was set (or the password was removed); ask the operator"]),
    row("wrong backup password", Input::Password(|_| include_bytes!("../../../spec/vectors/ok-passphrase.sbak").to_vec(), "correct horse battery stapler"), 1, &["the password does not open this backup: its password stanza was made for another password"]),
    // Tar entries that would leave the target, or that are not files.
    row("tar entry with ..", Input::TarEntry(tar::EntryType::Regular, "../outside.txt", None), 1, &["\"../outside.txt\": its path contains `..`"]),
    row("tar entry with an absolute path", Input::TarEntry(tar::EntryType::Regular, "/tmp/abs-evil.txt", None), 1, &["\"/tmp/abs-evil.txt\": its path is absolute"]),
    row("tar hard link outside", Input::TarEntry(tar::EntryType::Link, "hard", Some("../outside.txt")), 1, &["it is a hard link to ../outside.txt outside the target"]),
    row("tar character device", Input::TarEntry(tar::EntryType::Char, "tty", None), 1, &["\"tty\"", "devices, FIFOs"]),
    row("tar block device", Input::TarEntry(tar::EntryType::Block, "sda", None), 1, &["\"sda\"", "devices, FIFOs"]),
    row("tar FIFO", Input::TarEntry(tar::EntryType::Fifo, "pipe", None), 1, &["\"pipe\"", "devices, FIFOs"]),
    // Configuration files.
    row("malformed YAML", Input::Config("destinations: [\n  oops"), 2, &["Invalid config - ", "line"]),
    row("destinations not a list", Input::Config("destinations: not-an-array\n"), 2, &["Invalid config - "]),
    row("missing keys", Input::Config("destinations:\n- type: s3\n  config: {bucket_name: b, access_key_id: a, secret_access_key: TOPSECRET}\nmissing_properties_message: see the docs\n"), 2, &["Invalid config - Missing values for s3: bucket_path. see the docs", "Invalid config - Missing values for service_backup: source_folder, cron_schedule. see the docs"]),
    row("unknown destination type", Input::Config("destinations:\n- type: ftp\n  config: {}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - Unknown destination type: ftp."]),
    row("bad cron minute", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"61 * * * *\"\n"), 2, &["Invalid config - ", "61"]),
    row("bad cron field count", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * *\"\n"), 2, &["Invalid config - ", "* * *"]),
    row("bad cron descriptor", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"@fortnightly\"\n"), 2, &["Invalid config - ", "@fortnightly"]),
    row("cron_jitter not a duration", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"0 3 * * *\"\ncron_jitter: 30 minutes\n"), 2, &["Invalid config - cron_jitter \"30 minutes\" is not a duration such as 1h30m or 90s: unknown unit"]),
    row("cron_jitter longer than the schedule's period", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"*/10 * * * *\"\ncron_jitter: 15m\n"), 2, &["Invalid config - cron_jitter 15m is longer than the shortest time between two runs of cron_schedule \"*/10 * * * *\" (10m)"]),
    row("backup_window malformed", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"0 3 * * *\"\nbackup_window: 10pm-6am\n"), 2, &["Invalid config - backup_window \"10pm-6am\" is not a window such as \"22:00-06:00\": \"10pm\" is not a time of day HH:MM"]),
    row("cron_jitter beside backup_window", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"0 3 * * *\"\ncron_jitter: 30m\nbackup_window: \"22:00-06:00\"\n"), 2, &["Invalid config - cron_jitter and backup_window are both set: keep one"]),
    row("catch_up not a boolean", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"0 3 * * *\"\ncatch_up: daily\n"), 2, &["Invalid config - catch_up must be true or false, not \"daily\"."]),
    row("bad verify_schedule", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nverify_schedule: \"61 * * * *\"\n"), 2, &["Invalid config - verify_schedule \"61 * * * *\" is not a valid schedule: minute field \"61\": 61 is above the maximum 59."]),
    row("relative restore_check_executable", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nverify_schedule: \"@daily\"\nrestore_check_executable: bin/check\n"), 2, &["Invalid config - restore_check_executable bin/check is a relative path: give the executable's full path."]),
    row("restore_check_executable without verify_schedule", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nrestore_check_executable: /bin/check\n"), 2, &["Invalid config - restore_check_executable is set but verify_schedule is not: it runs only in restore drills."]),
    row("azure endpoint neither a domain nor a URL", Input::Config("destinations:\n- type: azure\n  config: {storage_account: acct, storage_access_key: TOPSECRET, container: c, path: p, endpoint: \"core windows net\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - ", "endpoint must be a base domain such as core.windows.net"]),
    // Recipients of write-only agents (issue 25): a typo, a string cut short.
    row("recipient with a bad checksum", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nencryption: {recipients: [sbrec1vawa2a8dw7ynzzea9emgrumepdrxcaemz5slanek2au4sdc755hsyhl97q]}\n"), 2, &["Invalid config - encryption.recipients item 1: the recipient \"sbrec1vawa2a\"… (64 characters) is not valid: its checksum or characters are wrong"]),
    // Attack finding 4: an identity pasted as a recipient was shown whole; the identity
    // (spec/vectors/test-identities.txt) is one of the secrets that must not appear.
    row("identity given as a recipient", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nencryption: {recipients: [SB-IDENTITY-1VPSKYCMYV4NXW6RFDF4KCMTWDAC8ZUNNW36HVAMC09A8KLRA0ELSXMAPNP]}\n"), 2, &["Invalid config - encryption.recipients item 1: this is an identity (a secret key), not a recipient: give its recipient string (keygen --recipient prints it)"]),
    row("identity in lower case given as a recipient", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nencryption: {recipients: [sb-identity-1vpskycmyv4nxw6rfdf4kcmtwdac8zunnw36hvamc09a8klra0elsxmapnp]}\n"), 2, &["Invalid config - encryption.recipients item 1: this is an identity (a secret key), not a recipient"]),
    // Attack finding 13: the same recipient twice was accepted.
    row("the same recipient twice", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nencryption: {recipients: [sbrec1vawa2a8dw7ynzzea9emgrumepdrxcaemz5slanek2au4sdc755hsyhl97j, sbrec1vawa2a8dw7ynzzea9emgrumepdrxcaemz5slanek2au4sdc755hsyhl97j]}\n"), 2, &["Invalid config - encryption.recipients item 2 repeats item 1 (recipient id ", "); list each recipient once."]),
    row("recipient of the wrong length", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nencryption: {recipients: [sbrec1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc52847yu]}\n"), 2, &["Invalid config - encryption.recipients item 1: the recipient \"sbrec1qypqxp\"… (44 characters) is not valid: it holds a key of 20 bytes, not 32"]),
    row("not UTF-8", Input::RawConfig(b"destinations: \xff\xfe\n"), 2, &["Invalid config - "]),
    // Keys that no section knows: each named by its path, with the close key it may mean.
    row("typo retension", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nretension: {keep_last: 1}\n"), 2, &["Invalid config - unknown key retension; did you mean retention?"]),
    row("typo compresion", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\ncompresion: zstd\n"), 2, &["Invalid config - unknown key compresion; did you mean compression?"]),
    row("typo state_dirr", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nstate_dirr: \"{d}/state\"\n"), 2, &["Invalid config - unknown key state_dirr; did you mean state_dir?"]),
    row("health kafka without a tenant", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nhealth: {kafka: {brokers: ['127.0.0.1:9092'], sasl: {username: u, password: TOPSECRET}}}\n"), 2, &["Invalid config - health.kafka is set but health.tenant_name is not: the topic is <topic_prefix><tenant_name>."]),
    row("health kafka broker with a password", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nhealth: {tenant_name: t, kafka: {brokers: ['admin:TOPSECRET@kafka-0:9092']}}\n"), 2, &["Invalid config - health.kafka.brokers: the address of broker kafka-0:9092 holds user information (user:password@); give only host:port and put the credentials in health.kafka.sasl."]),
    row("health interval of no time", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nhealth: {stdout: true, interval: 0s}\n"), 2, &["Invalid config - health.interval must be a time from 1s to 24h such as 300, 90s, 5m or 1h, not \"0s\"."]),
    row("typo encyption", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nencyption: {key_file: \"{d}/backup.key\"}\n"), 2, &["Invalid config - unknown key encyption; did you mean encryption?"]),
    row("typo previous_keyfiles", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nencryption: {key_file: \"{d}/backup.key\", previous_keyfiles: [\"{d}/backup.key\"]}\n"), 2, &["Invalid config - unknown key encryption.previous_keyfiles; did you mean previous_key_files?"]),
    row("typo parachute_treshold", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\napi: {listen: \"127.0.0.1:8443\", bearer_tokens_file: \"{d}/tokens\", metrics: {parachute_treshold: 90}}\n"), 2, &["Invalid config - unknown key api.metrics.parachute_treshold; did you mean parachute_threshold?"]),
    row("typo api tls_cert", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\napi: {listen: \"127.0.0.1:8443\", bearer_tokens_file: \"{d}/tokens\", tls_cert: \"{d}/tls.crt\"}\n"), 2, &["Invalid config - unknown key api.tls_cert; the keys here are listen, bearer_tokens_file, tls,"]),
    row("typo in a destination's config", Input::Config("destinations:\n- type: s3\n  config: {bucket_nme: b, bucket_path: p, access_key_id: a, secret_access_key: TOPSECRET}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - s3 destination 1: unknown key destinations[0].config.bucket_nme; did you mean bucket_name?", "Invalid config - Missing values for s3: bucket_name. Provide these missing fields in your manifest."]),
    row("unknown destination type close to one", Input::Config("destinations:\n- type: s4\n  config: {bucket_name: b}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - Unknown destination type: s4."]),
    // An attacker's review: a YAML tag does not hide a key from the checks, no parser
    // message quotes a value, an endpoint holds no credentials, no key forges a line.
    row("tagged retention with a typo", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n!x retention: {keep_lst: 1}\n"), 2, &["Invalid config - unknown key retention.keep_lst; did you mean keep_last?"]),
    row("tagged encryption with a typo", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n!!str encryption: {key_fil: \"{d}/backup.key\"}\n"), 2, &["Invalid config - unknown key encryption.key_fil; did you mean key_file?"]),
    row("tagged retention in a destination", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\n  !x retention: {keep_lst: 1, bogus: 2}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["unknown key destinations[0].retention.keep_lst; did you mean keep_last?", "unknown key destinations[0].retention.bogus"]),
    row("tagged duplicate of a plain key", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n!x source_folder: \"{d}/other\"\n"), 2, &["Invalid config - the key source_folder is given twice (a YAML tag does not make it another key)."]),
    row("tagged key in alerts", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: {!x product_nme: p}\n"), 2, &["Invalid config - unknown key alerts.product_nme; did you mean product_name?"]),
    row("a webhook without url", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: {webhook: {headers: {Authorization: TOPSECRET}}}\n"), 2, &["Invalid config - Missing values for alerts.webhook: url."]),
    // Attack finding 10: a webhook URL's user, password and query were shown; a user and
    // password were accepted.
    row("a webhook url with a password", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: {webhook: {url: \"https://u:TOPSECRET@hooks.example/x?token=TOPSECRET\"}}\n"), 2, &["Invalid config - alerts.webhook.url must not hold a user name or password (\"https://…@hooks.example/x…\"): give credentials in headers or in their own keys"]),
    row("a webhook url of another scheme with a password", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: {webhook: {url: \"ftp://u:TOPSECRET@hooks.example/x?token=TOPSECRET\"}}\n"), 2, &["Invalid config - alerts.webhook.url must be an http:// or https:// URL, not \"ftp://…@hooks.example/x…\""]),
    row("a webhook url with port 99999", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: {webhook: {url: \"https://hooks.example:99999/x\"}}\n"), 2, &["Invalid config - alerts.webhook.url is not a valid URL (invalid port number): \"https://hooks.example:99999/x\""]),
    row("a webhook url that is not http", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: {webhook: {url: \"ftp://hooks.example\"}}\n"), 2, &["Invalid config - alerts.webhook.url must be an http:// or https:// URL, not \"ftp://hooks.example\"."]),
    row("a webhook header value with a control character", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: {webhook: {url: \"https://h\", headers: {Authorization: \"TOPSECRET\\x01\"}}}\n"), 2, &["Invalid config - alerts.webhook.headers.Authorization must be a non-empty text of visible characters (its value is not shown)."]),
    row("an alerts timeout out of range", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: {config: {timeout_seconds: 0}}\n"), 2, &["Invalid config - alerts.config.timeout_seconds must be a whole number of seconds from 1 to 3600, not 0."]),
    row("notifications without the cloud controller", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: {config: {notifications: {service_url: \"https://n\", cf_org: o, cf_space: s, client_id: c, client_secret: TOPSECRET}}}\n"), 2, &["Invalid config - Missing values for alerts.config: cloud_controller (the space to notify is found through it)."]),
    row("secret between escaped quotes in a YAML error", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nencryption: {key: !!int 'x\"TOPSECRET\"y'}\n"), 2, &["Invalid config - the file is not valid YAML: invalid value (a value does not fit its YAML tag) at line 6 column 19."]),
    row("secret after a backtick in a YAML error", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nencryption: {key: !!bool 'x`TOPSECRET'}\n"), 2, &["Invalid config - the file is not valid YAML: invalid value", "line 6"]),
    row("secret after an escaped quote in a YAML error", Input::Config("destinations:\n- type: s3\n  config: {secret_access_key: !!float \"abc\\\"TOPSECRET\"}\n"), 2, &["Invalid config - the file is not valid YAML: invalid value", "line 3"]),
    row("credentials in an s3 endpoint_url", Input::Config("destinations:\n- type: s3\n  config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: s, endpoint_url: \"http://u:TOPSECRET@127.0.0.1:1/\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - s3 destination 1: endpoint_url must not hold a user name or password"]),
    row("a query in an s3 endpoint_url", Input::Config("destinations:\n- type: s3\n  config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: s, endpoint_url: \"http://127.0.0.1:1/?token=TOPSECRET\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - s3 destination 1: endpoint_url must not have a query or fragment"]),
    row("azure access key beside a sas token", Input::Config("destinations:\n- type: azure\n  config: {storage_account: a, storage_access_key: TOPSECRET, sas_token: \"sv=1&sig=TOPSECRET\", container: c, path: p}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - azure destination 1: storage_access_key and sas_token are exclusive: set one of them"]),
    row("azure managed identity beside a key", Input::Config("destinations:\n- type: azure\n  config: {storage_account: a, credentials_source: managed_identity, storage_access_key: TOPSECRET, container: c, path: p}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - azure destination 1: storage_access_key cannot stand beside credentials_source: managed_identity"]),
    row("static keys with s3 credentials from the environment", Input::Config("destinations:\n- type: s3\n  config: {bucket_name: b, bucket_path: p, credentials_source: env_or_instance_profile, access_key_id: a, secret_access_key: TOPSECRET}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - s3 destination 1: access_key_id comes with credentials_source env_or_instance_profile", "use one or the other (remove access_key_id and secret_access_key, or set credentials_source: static)"]),
    row("an unknown s3 credentials_source", Input::Config("destinations:\n- type: s3\n  config: {bucket_name: b, bucket_path: p, credentials_source: instance_profile}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - s3 destination 1: credentials_source must be static or env_or_instance_profile, not \"instance_profile\""]),
    row("an unknown s3 server_side_encryption", Input::Config("destinations:\n- type: s3\n  config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: TOPSECRET, server_side_encryption: aes256}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - s3 destination 1: server_side_encryption must be AES256 or aws:kms, not \"aes256\""]),
    row("an s3 kms_key_id without aws:kms", Input::Config("destinations:\n- type: s3\n  config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: TOPSECRET, server_side_encryption: AES256, kms_key_id: alias/backups}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - s3 destination 1: kms_key_id needs server_side_encryption: aws:kms, not AES256"]),
    row("a gcs key with tokens from the metadata server", Input::Config("destinations:\n- type: gcs\n  config: {credentials_source: metadata, service_account_json: TOPSECRET, project_id: p, bucket_name: b}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - gcs destination 1: service_account_json comes with credentials_source metadata", "use one or the other"]),
    row("credentials in an azure endpoint", Input::Config("destinations:\n- type: azure\n  config: {storage_account: a, storage_access_key: k, container: c, path: p, endpoint: \"http://u:TOPSECRET@127.0.0.1:1/a\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - azure destination 1: endpoint must not hold a user name or password"]),
    row("a key forging a line", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n\"x\\nInvalid config - forged line\\e[31mRED\": 1\n"), 2, &["Invalid config - unknown key \"x\\nInvalid config - forged line\\u{1b}[31mRED\"."]),
    row("flow nesting too deep", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\nalerts: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"), 2, &["Invalid config - the file nests [ and { more than 64 deep."]),
    row("a key with a trailing space", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n\"retention \": {keep_last: 1}\n"), 2, &["Invalid config - unknown key \"retention \"; did you mean retention?"]),
    row("an empty key", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n\"\": 1\n"), 2, &["Invalid config - unknown key \"\""]),
    // A mistyped command is not taken for the daemon's configuration path.
    row("mistyped command alone", Input::Args(&["lst"]), 2, &["unknown command 'lst'; did you mean 'list'?"]),
    row("mistyped command with a config", Input::Args(&["bakup", "config.yml"]), 2, &["unknown command 'bakup'; did you mean 'backup'?"]),
    row("key file too short", Input::KeyFile("c2hvcnQ=\n"), 2, &["5 bytes long, not 32"]),
    row("key file not base64", Input::KeyFile("%%% not base64\n"), 2, &["not valid base64"]),
    row("key file readable by others", Input::KeyFileMode(0o644), 2, &["bad.key", "other users may read or write it (mode 0644)"]),
    row("key file writable by others", Input::KeyFileMode(0o602), 2, &["other users may read or write it (mode 0602)"]),
    row("key file empty", Input::KeyFile(""), 2, &["bad.key", "0 bytes long"]),
    // The HTTP API (one daemon for all rows; `{id}` is a real backup's id).
    row("API bad JSON", api("POST", "/backups/restore", Auth::Good, JSON, b"{\"instance_id\": "), 400, &["invalidBody", "not valid JSON"]),
    row("API JSON of the wrong shape", api("POST", "/backups/restore", Auth::Good, JSON, b"[\"inst-1\", {id}]"), 400, &["invalidBody", "must be a JSON object"]),
    row("API JSON fields of the wrong type", api("POST", "/backups/restore", Auth::Good, JSON, b"{\"instance_id\": [\"inst-1\"], \"backup_id\": {id}}"), 412, &["instance_id is missing"]),
    row("API JSON body not UTF-8", api("POST", "/backups/restore", Auth::Good, JSON, b"\xff\xfe"), 400, &["invalidBody", "not valid JSON"]),
    row("API bad form body", api("POST", "/backups/restore", Auth::Good, FORM, b"instance_id=\xff\xfe&backup_id={id}"), 400, &["invalidBody", "not UTF-8"]),
    row("API restore without backup_id", api("POST", "/backups/restore", Auth::Good, FORM, b"instance_id=inst-1"), 412, &["backup_id is missing"]),
    row("API unknown backup id", api("POST", "/backups/restore", Auth::Good, FORM, b"instance_id=inst-1&backup_id=999"), 412, &["there is no backup with id 999"]),
    row("API non-numeric backup id", api("POST", "/backups/restore", Auth::Good, JSON, b"{\"instance_id\": \"inst-1\", \"backup_id\": \"1; drop\"}"), 412, &["there is no backup with id 1; drop"]),
    row("API non-numeric id in the path", api("GET", "/backups/abc/download", Auth::Good, None, b""), 412, &["there is no backup with id abc"]),
    row("API download of an unknown id", api("GET", "/backups/999/download", Auth::Good, None, b""), 412, &["there is no backup with id 999"]),
    row("API wrong instance id in the body", api("POST", "/backups/restore", Auth::Good, FORM, b"instance_id=other&backup_id={id}"), 412, &["instance other does not exist here"]),
    // Another instance in the path: 412 {"msg"} on every route, as the dashboard API answers.
    row("API wrong instance id in the path", api("POST", "/service-instances/other/backups/restore", Auth::Good, FORM, b"instance_id=inst-1&backup_id={id}"), 412, &["{\"msg\":\"instance other does not exist here\"}"]),
    row("API wrong instance id for a download", api("GET", "/service-instances/other/backups/{id}/download", Auth::Good, None, b""), 412, &["{\"msg\":\"instance other does not exist here\"}"]),
    row("API wrong instance id for metrics", api("GET", "/v1/instances/other/metrics", Auth::Good, None, b""), 412, &["{\"msg\":\"instance other does not exist here\"}"]),
    row("API wrong instance id for one backup", api("GET", "/service-instances/other/backups/{id}", Auth::Good, None, b""), 412, &["instance other does not exist here"]),
    row("API wrong instance id for a new backup", api("POST", "/service-instances/other/backups", Auth::Good, JSON, b"{}"), 412, &["instance other does not exist here"]),
    // Path tricks: collapsed slashes keep the instance check; dots and encoded slashes are refused.
    row("API double slash before another instance", api("GET", "//service-instances//other//backups/{id}/download", Auth::Good, None, b""), 412, &["instance other does not exist here"]),
    row("API .. out of this instance into another", api("GET", "/service-instances/inst-1/../other/backups/{id}/download", Auth::Good, None, b""), 400, &["invalidPath", "`..` segment"]),
    row("API .. out of another instance into this one", api("POST", "/service-instances/other/../inst-1/backups/restore", Auth::Good, FORM, b"instance_id=inst-1&backup_id={id}"), 400, &["invalidPath", "`..` segment"]),
    row("API encoded dots", api("GET", "/service-instances/inst-1/%2E%2e/other/backups", Auth::Good, None, b""), 400, &["invalidPath", "`..` segment"]),
    row("API mixed encoded dots", api("GET", "/service-instances/inst-1/.%2E/other/backups", Auth::Good, None, b""), 400, &["invalidPath", "`..` segment"]),
    row("API a . segment", api("GET", "/service-instances/./inst-1/backups", Auth::Good, None, b""), 400, &["invalidPath", "`..` segment"]),
    row("API encoded slash %2F", api("GET", "/service-instances/inst-1%2F..%2Fother/backups/{id}/download", Auth::Good, None, b""), 400, &["invalidPath", "encoded slash"]),
    row("API encoded slash %2f", api("POST", "/service-instances/other%2f..%2finst-1/backups/restore", Auth::Good, FORM, b"instance_id=inst-1&backup_id={id}"), 400, &["invalidPath", "encoded slash"]),
    row("API encoded backslash", api("GET", "/service-instances/inst-1%5C..%5Cother/backups", Auth::Good, None, b""), 400, &["invalidPath", "backslash"]),
    row("API double-encoded dots", api("GET", "/service-instances/%252e%252e/backups", Auth::Good, None, b""), 412, &["does not exist here"]),
    row("API bad percent escape", api("GET", "/backups/%zz/download", Auth::Good, None, b""), 400, &["invalidPath", "two hex digits"]),
    row("API path trick without a token", api("GET", "/service-instances/inst-1/../other/backups", Auth::Missing, None, b""), 401, &["unauthorized"]),
    // Paging of the list.
    row("API list limit 0", api("GET", "/backups?limit=0", Auth::Good, None, b""), 400, &["invalidQuery", "limit must be a whole number of at least 1"]),
    row("API list limit not a number", api("GET", "/backups?limit=ten", Auth::Good, None, b""), 400, &["invalidQuery", "limit must be"]),
    row("API list before neither id nor time", api("GET", "/backups?before=yesterday", Auth::Good, None, b""), 400, &["invalidQuery", "before must be a task id"]),
    row("API one backup of an unknown id", api("GET", "/backups/999", Auth::Good, None, b""), 412, &["there is no backup with id 999"]),
    row("API missing token", api("POST", "/backups/restore", Auth::Missing, FORM, b"instance_id=inst-1&backup_id={id}"), 401, &["unauthorized", "no Authorization header"]),
    row("API missing token for a backup", api("POST", "/backups", Auth::Missing, JSON, b"{}"), 401, &["unauthorized", "no Authorization header"]),
    row("API missing token for a download", api("GET", "/backups/{id}/download", Auth::Missing, None, b""), 401, &["unauthorized"]),
    row("API wrong token", api("POST", "/backups/restore", Auth::Header("Bearer wrong-token-7c1d"), FORM, b"instance_id=inst-1&backup_id={id}"), 401, &["unauthorized", "not valid"]),
    row("API wrong scheme", api("POST", "/backups", Auth::Scheme("Basic"), JSON, b"{}"), 401, &["unauthorized", "must be `Bearer <token>`"]),
    row("API token without a scheme", api("GET", "/backups/{id}/download", Auth::Scheme(""), None, b""), 401, &["unauthorized", "must be `Bearer <token>`"]),
    row("API oversized restore body", api("POST", "/backups/restore", Auth::Good, FORM, OVERSIZED), 413, &["payloadTooLarge", "65536 bytes"]),
    row("API oversized backup body", api("POST", "/backups", Auth::Good, JSON, OVERSIZED), 413, &["payloadTooLarge"]),
    row("API wrong method", api("DELETE", "/backups", Auth::Good, None, b""), 405, &["methodNotAllowed"]),
    row("API wrong method for a restore", api("PUT", "/backups/restore", Auth::Good, FORM, b"instance_id=inst-1&backup_id={id}"), 405, &["methodNotAllowed"]),
    row("API wrong method without a token", api("DELETE", "/backups/{id}/download", Auth::Missing, None, b""), 401, &["unauthorized"]),
    row("API unknown path", api("GET", "/backup", Auth::Good, None, b""), 404, &["notFound", "no such route"]),
    row("API unknown path without a token", api("POST", "/backups/{id}/restore", Auth::Missing, FORM, b"instance_id=inst-1&backup_id={id}"), 401, &["unauthorized"]),
    // Dashboard sessions (cookie authentication). A session id this daemon never issued is
    // what another agent's cookie is to it (sessions live in each agent's memory); an
    // expired cookie is a row of `src/api/web/tests.rs`, where the lifetime is injected.
    row("API cookie from another agent", api("GET", "/backups", Auth::Cookie("q7Yb0cXvM2sPp9kLwE4rT1uZ8nA5dF6gH3jK0lQ2xWc"), None, b""), 401, &["unauthorized", "session cookie is unknown"]),
    row("API cookie from another agent for a restore", api("POST", "/backups/restore", Auth::Cookie("q7Yb0cXvM2sPp9kLwE4rT1uZ8nA5dF6gH3jK0lQ2xWc"), FORM, b"instance_id=inst-1&backup_id={id}"), 401, &["unauthorized", "session cookie is unknown"]),
    row("API POST with a cookie and no CSRF token", api("POST", "/backups", Auth::Session(None), JSON, b"{}"), 403, &["csrfTokenMissing", "X-CSRF-Token"]),
    row("API restore with a cookie and no CSRF token", api("POST", "/backups/restore", Auth::Session(None), FORM, b"instance_id=inst-1&backup_id={id}"), 403, &["csrfTokenMissing"]),
    row("API POST with a cookie and a wrong CSRF token", api("POST", "/backups", Auth::Session(Some("not-the-token")), JSON, b"{}"), 403, &["csrfTokenInvalid"]),
    row("API cookie for another instance's path", api("GET", "/service-instances/other/backups", Auth::Session(None), None, b""), 412, &["instance other does not exist here"]),
    row("API bad metrics quantity", api("GET", "/metrics?quantity=-1", Auth::Good, None, b""), 400, &["invalidQuantity"]),
    row("API parachute threshold -1", api("PUT", "/v1/instances/inst-1/metrics/parachute", Auth::Good, JSON, b"{\"max_disk_threshold\": -1}"), 400, &["invalidThreshold", "max_disk_threshold must be a whole number from 0 (off) to 100"]),
    row("API parachute threshold 101", api("PUT", "/v1/instances/inst-1/metrics/parachute", Auth::Good, JSON, b"{\"max_disk_threshold\": 101}"), 400, &["invalidThreshold", "from 0 (off) to 100"]),
    row("API parachute threshold abc", api("PUT", "/metrics/parachute", Auth::Good, JSON, b"{\"max_disk_threshold\": \"abc\"}"), 400, &["invalidThreshold", "from 0 (off) to 100"]),
    row("API parachute threshold abc in a form", api("POST", "/metrics/parachute", Auth::Good, FORM, b"max_disk_threshold=abc"), 400, &["invalidThreshold"]),
    row("API parachute threshold without a token", api("PUT", "/metrics/parachute", Auth::Missing, JSON, b"{\"max_disk_threshold\": 50}"), 401, &["unauthorized"]),
];

/// Runs `row` in `env` (an API row against the daemon of `api`, started on first use);
/// returns what went wrong, if anything.
fn check(
    env: &Env,
    good: &[u8],
    other: &[u8],
    api: &OnceCell<ApiAgent>,
    row: &Row,
) -> Result<(), String> {
    let d = env.dir.path().display().to_string();
    // The identity of the identity rows, in either case (its first characters, the
    // human-readable part, are no secret).
    let secrets = [
        env.key_text(),
        "TOPSECRET".to_string(),
        "1VPSKYCMYV4NXW6RFDF4KCMTWDAC8ZUNNW36HVAMC09A8KLRA0ELSXMAPNP".to_string(),
        "1vpskycmyv4nxw6rfdf4kcmtwdac8zunnw36hvamc09a8klra0elsxmapnp".to_string(),
    ];
    let mut runs = Vec::new();
    match &row.input {
        Input::Api {
            method,
            path,
            auth,
            content_type,
            body,
        } => {
            return api.get_or_init(ApiAgent::start).check(
                row,
                method,
                path,
                *auth,
                *content_type,
                body,
            );
        }
        Input::Archive(change) => runs.extend(refused_archive(env, &change(good, other), None)),
        Input::WrongKey => {
            env.run(&["keygen", "--output", "other.key"]).expect(0);
            runs.extend(refused_archive(env, good, Some("other.key")));
            std::fs::remove_file(env.path("other.key")).unwrap();
        }
        Input::WrongIdentity => {
            env.run(&["keygen", "--recipient", "other.identity"])
                .expect(0);
            runs.extend(refused_archive_with(
                env,
                good,
                &["--identity", "other.identity"],
            ));
            std::fs::remove_file(env.path("other.identity")).unwrap();
        }
        Input::Password(archive, password) => {
            std::fs::write(env.path("bad.archive"), archive(good)).unwrap();
            common::write_private(&env.path("pw.txt"), format!("{password}\n"));
            runs.push(env.run(&[
                "decrypt",
                "--passphrase-file",
                "pw.txt",
                "--extract",
                "t",
                "bad.archive",
            ]));
            // restore --file and decrypt --output, the target left as it was.
            runs.extend(refused_archive_with(
                env,
                &archive(good),
                &["--passphrase-file", "pw.txt"],
            ));
            std::fs::remove_file(env.path("pw.txt")).unwrap();
        }
        Input::TarEntry(kind, name, link) => {
            let bytes = plain_tar_gz(|b| {
                b.append(
                    &raw_entry(tar::EntryType::Regular, "fine.txt", None, b"ok"),
                    &b"ok"[..],
                )
                .unwrap();
                let data: &[u8] = if *kind == tar::EntryType::Regular {
                    b"evil"
                } else {
                    b""
                };
                b.append(&raw_entry(*kind, name, *link, data), data)
                    .unwrap();
            });
            // `decrypt` does not look into a plain .tar.gz: only `restore` is checked.
            let restore = refused_archive(env, &bytes, None).remove(0);
            runs.push(restore);
            if env.path("outside.txt").exists() || Path::new("/tmp/abs-evil.txt").exists() {
                return Err("an entry escaped the target".into());
            }
        }
        Input::Config(yaml) => {
            std::fs::write(env.path("bad.yml"), yaml.replace("{d}", &d)).unwrap();
            runs.push(env.run(&["validate", "bad.yml"]));
            runs.push(env.run(&["backup", "bad.yml"]));
            runs.push(env.run(&["restore", "bad.yml", "--target", "t"]));
        }
        Input::Args(args) => runs.push(env.run(args)),
        Input::RawConfig(bytes) => {
            std::fs::write(env.path("bad.yml"), bytes).unwrap();
            runs.push(env.run(&["validate", "bad.yml"]));
            runs.push(env.run(&["backup", "bad.yml"]));
        }
        Input::KeyFileMode(mode) => {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::copy(env.path("backup.key"), env.path("bad.key")).unwrap();
            std::fs::set_permissions(env.path("bad.key"), std::fs::Permissions::from_mode(*mode))
                .unwrap();
            let yaml = format!(
                "{}encryption:\n  key_file: {d}/bad.key\n",
                GOOD_CONFIG.replace("{d}", &d)
            );
            std::fs::write(env.path("bad.yml"), yaml).unwrap();
            std::fs::write(env.path("bad.archive"), good).unwrap();
            runs.push(env.run(&["validate", "bad.yml"]));
            runs.push(env.run(&["backup", "bad.yml"]));
            runs.push(env.run(&[
                "decrypt",
                "--key-file",
                "bad.key",
                "--output",
                "out.tar.gz",
                "bad.archive",
            ]));
            std::fs::remove_file(env.path("bad.key")).unwrap();
        }
        Input::KeyFile(text) => {
            std::fs::write(env.path("bad.archive"), good).unwrap();
            std::fs::write(env.path("bad.key"), text).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(env.path("bad.key"), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            let yaml = format!(
                "{}encryption:\n  key_file: {d}/bad.key\n",
                GOOD_CONFIG.replace("{d}", &d)
            );
            std::fs::write(env.path("bad.yml"), yaml).unwrap();
            runs.push(env.run(&["validate", "bad.yml"]));
            runs.push(env.run(&["backup", "bad.yml"]));
            runs.push(env.run(&[
                "decrypt",
                "--key-file",
                "bad.key",
                "--output",
                "out.tar.gz",
                "bad.archive",
            ]));
            let _ = std::fs::remove_file(env.path("bad.key"));
        }
    }
    for run in &runs {
        if run.code != row.code {
            return Err(format!(
                "exit code {} instead of {}: {}",
                run.code, row.code, run.stderr
            ));
        }
        for w in row.words {
            if !run.stderr.contains(w) {
                return Err(format!("{w:?} is not in: {}", run.stderr));
            }
        }
        if run.stderr.contains("panicked") {
            return Err(format!("a panic: {}", run.stderr));
        }
        if let Some(s) = secrets.iter().find(|s| run.all().contains(s.as_str())) {
            return Err(format!("the secret {s:?} leaked"));
        }
    }
    // Nothing written: no decrypt output, no stored backup, no restore target.
    for path in ["out.tar.gz", "t"] {
        if env.path(path).exists() {
            return Err(format!("{path} was left behind"));
        }
    }
    let stored = walk_files(&env.path("backups"));
    if stored.len() != 4 {
        return Err(format!("the stored backups changed: {stored:?}"));
    }
    Ok(())
}

/// Restores `bytes` as a downloaded archive into a target that already holds a file, with
/// --force, and decrypts it to a file; checks that the target is untouched and no output
/// is left, and returns both runs.
fn refused_archive(env: &Env, bytes: &[u8], key: Option<&str>) -> Vec<common::Run> {
    refused_archive_with(env, bytes, &["--key-file", key.unwrap_or("backup.key")])
}

/// [`refused_archive`] with these key arguments (`--key-file K` or `--identity FILE`).
fn refused_archive_with(env: &Env, bytes: &[u8], keys: &[&str]) -> Vec<common::Run> {
    std::fs::write(env.path("bad.archive"), bytes).unwrap();
    let target = env.path("target");
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("precious.txt"), b"keep me").unwrap();
    let restore = env.run(
        &[
            &["restore", "--file", "bad.archive"][..],
            keys,
            &["--allow-unencrypted", "--target", "target", "--force"],
        ]
        .concat(),
    );
    assert_eq!(
        restore.stderr.lines().count(),
        1,
        "one line per problem: {}",
        restore.stderr
    );
    assert_eq!(
        tree(&target),
        vec![("precious.txt".to_string(), b"keep me".to_vec())],
        "target changed"
    );
    let decrypt = env.run(
        &[
            &["decrypt"][..],
            keys,
            &["--output", "out.tar.gz", "bad.archive"],
        ]
        .concat(),
    );
    vec![restore, decrypt]
}

#[test]
fn every_bad_input_of_the_table_is_refused() {
    let (env, archive) = env_with_big_backup();
    common::secret("TOPSECRET");
    let good = std::fs::read(&archive).unwrap();
    std::fs::write(env.path("source/more.txt"), b"a second backup").unwrap();
    env.run(&["backup", "config.yml"]).expect(0);
    let list = env.run(&["list", "config.yml", "--json"]);
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    let other = std::fs::read(env.archive_of(&items[0])).unwrap();
    assert_ne!(good, other);
    assert_eq!(
        walk_files(&env.path("backups")).len(),
        4,
        "two archives, two manifests"
    );
    let api = OnceCell::new();
    let mut failures = Vec::new();
    for row in ROWS {
        if let Err(why) = check(&env, &good, &other, &api, row) {
            failures.push(format!("{}: {why}", row.name));
        }
    }
    if let Some(agent) = api.get() {
        failures.extend(agent.finish().err());
    }
    println!("{} bad inputs checked", ROWS.len());
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}

#[test]
fn a_previous_key_opens_what_the_current_one_cannot() {
    let (env, archive) = env_with_big_backup();
    env.run(&["keygen", "--output", "other.key"]).expect(0);
    let archive = archive.to_str().unwrap();
    env.run(&[
        "restore",
        "--file",
        archive,
        "--key-file",
        "other.key",
        "--key-file",
        "backup.key",
        "--target",
        "t",
    ])
    .expect(0);
}

#[test]
fn a_damaged_stored_backup_fails_restore_and_verify() {
    let (env, archive) = env_with_big_backup();
    let manifest_path = archive.to_str().unwrap().replace(".tar.gz.enc", ".json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let wrong = manifest.replace(m["sha256"].as_str().unwrap(), &"0".repeat(64));
    std::fs::write(&manifest_path, wrong).unwrap();
    let out = env.run(&["verify", "config.yml"]);
    out.expect(1);
    assert!(
        out.stderr.contains("but its manifest says"),
        "{}",
        out.stderr
    );
    let out = env.run(&["restore", "config.yml", "--target", "t"]);
    out.expect(1);
    assert!(!env.path("t").exists());
}

fn plain_tar_gz(
    build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>),
) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    build(&mut b);
    b.into_inner().unwrap().finish().unwrap()
}

fn raw_entry(kind: tar::EntryType, name: &str, link: Option<&str>, data: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

#[test]
fn a_missing_or_unreadable_source_makes_no_backup() {
    let env = Env::new();
    std::fs::rename(env.path("source"), env.path("moved")).unwrap();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    assert!(out.stderr.contains("source"), "{}", out.stderr);
    assert!(
        // The source folder is read by the upload: the original's walk failed there too.
        out.stdout.contains("Upload backup completed with error"),
        "{}",
        out.stdout
    );
    std::fs::rename(env.path("moved"), env.path("source")).unwrap();
    assert!(
        walk_files(&env.path("backups")).is_empty(),
        "a failed backup left files"
    );
    let _ = std::fs::remove_dir_all(env.path("backups"));

    // A file the agent cannot read: as root, run the agent as nobody.
    use std::os::unix::fs::PermissionsExt as _;
    for dir in [
        env.dir.path(),
        &env.path("source"),
        &env.path("source/sub"),
        &env.path("source/sub/deeper"),
    ] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    if is_root() {
        // The key stays 0600 (a key others may read is refused): nobody owns it.
        std::os::unix::fs::chown(env.path("backup.key"), Some(65534), Some(65534)).unwrap();
    }
    // The task database of the runs above belongs to root: give this run its own, the
    // agent's alone (a state_dir of another user, or one others may write, is refused).
    std::fs::create_dir(env.path("state")).unwrap();
    std::fs::set_permissions(env.path("state"), std::fs::Permissions::from_mode(0o700)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(env.path("state"), Some(65534), Some(65534)).unwrap();
    }
    env.write_config(&format!("state_dir: {}\n", env.path("state").display()));
    std::fs::write(env.path("source/secret.db"), b"unreadable").unwrap();
    std::fs::set_permissions(
        env.path("source/secret.db"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let bin = common::binary();
    let mut cmd = if is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    let out = common::Run::from(
        cmd.args(["backup", "config.yml"])
            .current_dir(env.dir.path())
            .output()
            .unwrap(),
    );
    out.expect(1);
    assert!(
        out.stderr.contains("secret.db") && out.stderr.contains("Permission denied"),
        "{}",
        out.stderr
    );
    let list = env.run(&["list", "config.yml", "--json"]);
    assert_eq!(list.stdout.trim(), "[]", "no backup may be visible");
    let leftovers: Vec<_> = walk_files(&env.path("backups"));
    assert!(leftovers.is_empty(), "nothing may be stored: {leftovers:?}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.flat_map(|e| {
        let p = e.unwrap().path();
        if p.is_dir() { walk_files(&p) } else { vec![p] }
    })
    .collect()
}

#[test]
fn a_non_empty_target_needs_force() {
    let env = Env::new();
    env.backup();
    std::fs::create_dir(env.path("busy")).unwrap();
    std::fs::write(env.path("busy/old.txt"), b"old").unwrap();
    let out = env.run(&["restore", "config.yml", "--target", "busy"]);
    out.expect(2);
    assert!(
        out.stderr.contains("is not empty") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert!(env.path("busy/old.txt").exists());
    env.run(&["restore", "config.yml", "--target", "busy", "--force"])
        .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("busy")));
}

#[test]
fn a_plain_archive_is_refused_when_a_key_is_configured() {
    let env = Env::new();
    let d = env.dir.path().display();
    let yaml = format!(
        "destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\nsource_folder: {d}/source\ncron_schedule: \"@daily\"\n"
    );
    std::fs::write(env.path("plain.yml"), yaml).unwrap();
    env.run(&["backup", "plain.yml"]).expect(0);
    // The same destination, now read with a key configured: the plain backup may have been
    // swapped in by someone who can write to the destination.
    let out = env.run(&["restore", "config.yml", "--target", "t"]);
    out.expect(1);
    assert!(
        out.stderr
            .contains("not encrypted although a key is configured")
            && out.stderr.contains("--allow-unencrypted"),
        "{}",
        out.stderr
    );
    assert!(!env.path("t").exists());
    env.run(&[
        "restore",
        "config.yml",
        "--target",
        "t",
        "--allow-unencrypted",
    ])
    .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("t")));
}

/// The API rows' token; declared a secret, so that the suite's check fails if it shows.
const TOKEN: &str = "tok-BadInput-8e2f4a6c";
/// The instance id the API daemon serves.
const INSTANCE: &str = "inst-1";

/// One `service-backup run` with the API on a free port, a backup made, and a restore
/// target holding a file that no refused request may touch; killed when dropped.
struct ApiAgent {
    env: Env,
    child: Child,
    port: u16,
    backup_id: i64,
}

/// What the daemon answered: the status and the body.
struct Answer {
    status: u16,
    /// The status line and headers.
    head: String,
    body: String,
}

impl ApiAgent {
    fn start() -> Self {
        common::secret(TOKEN);
        let env = Env::new();
        let d = env.dir.path().display().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        common::write_private(&env.path("tokens"), format!("{TOKEN}\n"));
        // A schedule that never fires during the test: only requests make tasks.
        env.write_config(&format!(
            "cron_schedule: \"0 0 1 1 *\"\ninstance_id: {INSTANCE}\n\
             restore:\n  target_folder: {d}/restored\n\
             api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {d}/tokens\n"
        ));
        std::fs::create_dir(env.path("restored")).unwrap();
        std::fs::write(env.path("restored/precious.txt"), b"keep me").unwrap();
        env.run(&["backup", "config.yml"]).expect(0);
        let child = Command::new(common::binary())
            .args(["run", "config.yml"])
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(env.path("daemon.log")).unwrap())
            .stderr(std::fs::File::create(env.path("daemon.err")).unwrap())
            .spawn()
            .unwrap();
        let mut agent = Self {
            env,
            child,
            port,
            backup_id: 0,
        };
        let start = Instant::now();
        loop {
            let health = agent.try_request("GET", "/health", &[], b"");
            if health.as_ref().is_ok_and(|a| a.status == 200) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the API daemon did not answer /health: {}",
                agent.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let listing: serde_json::Value = serde_json::from_str(&agent.listing()).unwrap();
        let backup = &listing["backups"][0];
        assert_eq!(backup["backup_agent_task"]["status"], "done", "{listing}");
        agent.backup_id = backup["id"].as_i64().unwrap();
        agent
    }

    /// Sends one HTTP/1.1 request and reads the answer until the daemon closes.
    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(40)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (name, value) in headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        // A body refused for its size may be answered before it is all sent.
        let _ = stream.write_all(&[head.as_bytes(), body].concat());
        let mut raw = Vec::new();
        let read = stream.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return Err(read.err().unwrap_or_else(|| {
                std::io::Error::other(format!("not an HTTP answer: {text:?}"))
            }));
        };
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
        Ok(Answer {
            status,
            head: head.to_string(),
            body: body.to_string(),
        })
    }

    /// `GET /backups` with the token: every task the API knows.
    fn listing(&self) -> String {
        let answer = self
            .try_request("GET", "/backups", &[Self::bearer()], b"")
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    /// Opens a dashboard session with the token: its `Cookie` header value.
    fn session(&self) -> String {
        let answer = self
            .try_request(
                "GET",
                "/service-instances/inst-1/",
                &[Self::bearer(), ("Accept", "application/json".to_string())],
                b"",
            )
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        let cookie = answer
            .head
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .unwrap_or_else(|| panic!("no cookie in {}", answer.head));
        cookie.split(';').next().unwrap().to_string()
    }

    fn bearer() -> (&'static str, String) {
        ("Authorization", format!("Bearer {TOKEN}"))
    }

    /// What the daemon printed so far.
    fn output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.env.path(f)).unwrap_or_default();
        format!("{}\n{}", read("daemon.log"), read("daemon.err"))
    }

    /// Sends the row's request; checks the status, the body's words, and that nothing was
    /// created, restored or printed that should not be.
    fn check(
        &self,
        row: &Row,
        method: &str,
        path: &str,
        auth: Auth,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let id = self.backup_id.to_string();
        let path = path.replace("{id}", &id);
        let body = replace_id(body, id.as_bytes());
        let mut headers = Vec::new();
        match auth {
            Auth::Good => headers.push(Self::bearer()),
            Auth::Missing => {}
            Auth::Header(value) => headers.push(("Authorization", value.to_string())),
            Auth::Scheme(scheme) => headers.push((
                "Authorization",
                format!("{scheme} {TOKEN}").trim().to_string(),
            )),
            Auth::Session(csrf) => {
                headers.push(("Cookie", self.session()));
                if let Some(c) = csrf {
                    headers.push(("X-CSRF-Token", c.to_string()));
                }
            }
            Auth::Cookie(value) => {
                headers.push(("Cookie", format!("sb_session_{INSTANCE}={value}")));
            }
        }
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct.to_string()));
        }
        let before = self.listing();
        let threshold_before = self.threshold();
        let answer = self
            .try_request(method, &path, &headers, &body)
            .map_err(|e| format!("{method} {path}: no answer: {e}"))?;
        if i32::from(answer.status) != row.code {
            return Err(format!(
                "{method} {path}: status {} instead of {}: {}",
                answer.status, row.code, answer.body
            ));
        }
        let json: serde_json::Value = serde_json::from_str(&answer.body)
            .map_err(|_| format!("{method} {path}: the body is not JSON: {}", answer.body))?;
        let shape_ok = if answer.status == 412 {
            json["msg"].is_string()
        } else {
            json["error"].is_string() && json["description"].is_string()
        };
        if !shape_ok {
            return Err(format!(
                "{method} {path}: not an error body of the spec: {json}"
            ));
        }
        for w in row.words {
            if !answer.body.contains(w) {
                return Err(format!("{method} {path}: {w:?} is not in {}", answer.body));
            }
        }
        if answer.body.contains(TOKEN) {
            return Err(format!("{method} {path}: the answer shows the token"));
        }
        let after = self.listing();
        if after != before {
            return Err(format!(
                "{method} {path}: the tasks changed:\nbefore {before}\nafter  {after}"
            ));
        }
        if tree(&self.env.path("restored"))
            != vec![("precious.txt".to_string(), b"keep me".to_vec())]
        {
            return Err(format!("{method} {path}: the restore target changed"));
        }
        if self.threshold() != threshold_before {
            return Err(format!("{method} {path}: the parachute threshold changed"));
        }
        Ok(())
    }

    /// `GET /metrics/parachute` with the token: the threshold in force.
    fn threshold(&self) -> String {
        let answer = self
            .try_request("GET", "/metrics/parachute", &[Self::bearer()], b"")
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    /// After every API row: the daemon still runs, printed no panic and no token, and the
    /// stored backup is still there; then it is stopped.
    fn finish(&self) -> Result<(), String> {
        let listing = self.listing();
        let output = self.output();
        common::printed(&output);
        if output.contains("panicked") {
            return Err(format!("API: the daemon panicked: {output}"));
        }
        for secret in [TOKEN, "wrong-token-7c1d"] {
            if output.contains(secret) {
                return Err(format!("API: the daemon printed {secret:?}"));
            }
        }
        let listed = self.env.run(&["list", "config.yml", "--json"]);
        let items: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
        if items.len() != 1 {
            return Err(format!("API: the stored backups changed: {listing}"));
        }
        Ok(())
    }
}

impl Drop for ApiAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `body` with every `{id}` replaced by `id`.
fn replace_id(body: &[u8], id: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.windows(4).position(|w| w == b"{id}") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(id);
        rest = &rest[at + 4..];
    }
    out.extend_from_slice(rest);
    out
}

// Issue 20, findings 7 and 11: a restore's staging and swap, and the modes of state_dir.

/// Every entry of `root` (itself first) with its kind, mode, owner and content, so that
/// two snapshots are equal only if the trees are byte for byte the same.
fn snapshot(root: &Path) -> Vec<(String, u32, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt as _;
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u32, u32, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let content = if meta.is_file() {
                std::fs::read(&p).unwrap()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .display()
                    .to_string()
                    .into_bytes()
            } else {
                vec![]
            };
            out.push((rel, meta.mode(), meta.uid(), content));
            if meta.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let meta = std::fs::metadata(root).unwrap();
    let mut out = vec![(String::new(), meta.mode(), meta.uid(), vec![])];
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Fails loudly when not root: these rows mount filesystems and switch users.
fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root (the suite runs as root): it mounts a tmpfs or runs the agent as nobody"
    );
}

#[test]
fn a_mount_point_inside_the_target_is_refused_and_the_target_is_left_as_it_was() {
    require_root("this row");
    let env = Env::new();
    let name = env.backup()["name"].as_str().unwrap().to_string();
    let target = env.path("target");
    std::fs::create_dir_all(target.join("sub")).unwrap();
    std::fs::write(target.join("a.txt"), b"old a").unwrap();
    std::fs::write(target.join("sub/z.txt"), b"old z").unwrap();
    // A filesystem mounted deep in the target, holding data of its own.
    let _disk = common::host::Tmpfs::mount(&target.join("sub/data"), "4m");
    std::fs::write(target.join("sub/data/table.db"), b"on the other disk").unwrap();
    let before = snapshot(&target);
    let around = names(env.dir.path());

    let out = env.restore_into(&name, &target, &["--force"]);
    out.expect(2);
    let mount = target.join("sub/data");
    assert!(
        out.stderr.contains("holds the mount point")
            && out.stderr.contains(mount.to_str().unwrap())
            && out.stderr.contains("unmount it"),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&target), before, "the target changed");
    assert_eq!(
        names(env.dir.path()),
        around,
        "something was left beside it"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mounts.contains(mount.to_str().unwrap()), "the mount moved");
    // The refused restore is a failed task, with the reason.
    let tasks = env.run(&["tasks", "config.yml", "--json"]);
    let tasks: Vec<serde_json::Value> = serde_json::from_str(&tasks.stdout).unwrap();
    let restore = tasks.iter().rev().find(|t| t["kind"] == "restore").unwrap();
    assert_eq!(restore["status"], "failed", "{restore}");
    assert!(
        restore["reason"]
            .as_str()
            .unwrap()
            .contains("holds the mount point"),
        "{restore}"
    );
}

/// Runs the binary as nobody (uid and gid 65534, no other groups) in the env's folder.
fn as_nobody(env: &Env, args: &[&str]) -> common::Run {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::binary())
        .args(args)
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    common::Run::from(out)
}

#[test]
fn a_read_only_folder_in_the_target_leaves_it_as_it_was_for_a_user_who_cannot_move_it() {
    require_root("this row");
    let env = Env::new();
    // Everything the agent needs belongs to nobody, who runs it.
    chmod(env.dir.path(), 0o755);
    std::fs::create_dir(env.path("state")).unwrap();
    std::fs::create_dir_all(env.path("backups")).unwrap();
    for p in ["state", "backups", "backup.key"] {
        std::os::unix::fs::chown(env.path(p), Some(65534), Some(65534)).unwrap();
    }
    env.write_config(&format!("state_dir: {}\n", env.path("state").display()));
    let backup = as_nobody(&env, &["backup", "config.yml"]);
    backup.expect(0);
    let name = env.run(&["list", "config.yml", "--json"]).stdout;
    let items: Vec<serde_json::Value> = serde_json::from_str(&name).unwrap();
    let name = items[0]["name"].as_str().unwrap().to_string();

    // The target is nobody's, with a read-only folder (which nobody cannot move to
    // another folder: that changes its `..`) between two files, in `parent`.
    let target_in = |parent: &str| {
        let target = env.path(&format!("{parent}/target"));
        std::fs::create_dir_all(target.join("ro")).unwrap();
        std::fs::write(target.join("a.txt"), b"old a").unwrap();
        std::fs::write(target.join("ro/kept.txt"), b"old ro").unwrap();
        std::fs::write(target.join("z.txt"), b"old z").unwrap();
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&target)
            .status()
            .unwrap();
        assert!(status.success());
        chmod(&target.join("ro"), 0o555);
        chmod(&target, 0o750);
        target
    };

    // A parent nobody cannot write: the restore is staged inside the target, and the
    // entries moved one by one; the read-only folder stops it, and every move is undone.
    let locked = target_in("locked");
    let before = snapshot(&locked);
    let out = as_nobody(
        &env,
        &[
            "restore",
            "config.yml",
            "--backup",
            &name,
            "--target",
            locked.to_str().unwrap(),
            "--force",
        ],
    );
    out.expect(1);
    assert!(
        out.stderr.contains("was left as it was")
            && out.stderr.contains("Permission denied")
            && out.stderr.contains("ro"),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&locked), before, "the target changed");
    assert_eq!(names(&env.path("locked")), ["target"]);

    // A parent nobody can write: the target is swapped whole, keeping its mode and owner;
    // the old content that cannot be deleted is kept beside it, and the log says where.
    let open = target_in("open");
    std::os::unix::fs::chown(env.path("open"), Some(65534), Some(65534)).unwrap();
    let out = as_nobody(
        &env,
        &[
            "restore",
            "config.yml",
            "--backup",
            &name,
            "--target",
            open.to_str().unwrap(),
            "--force",
        ],
    );
    out.expect(0);
    assert_eq!(tree(&open), tree(&env.path("source")));
    assert_eq!(
        snapshot(&open)[0],
        before[0],
        "the target's own mode and owner"
    );
    let left: Vec<String> = names(&env.path("open"))
        .into_iter()
        .filter(|n| n != "target")
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(".service-backup-replaced-target-"),
        "{left:?}"
    );
    assert!(
        out.all().contains(&left[0]) && out.all().contains("delete the folder by hand"),
        "{}",
        out.all()
    );
    assert_eq!(
        std::fs::read(env.path(&format!("open/{}/ro/kept.txt", left[0]))).unwrap(),
        b"old ro"
    );
}

#[test]
fn the_previous_content_left_by_a_stopped_restore_survives_the_next_restores() {
    let env = Env::new();
    let name = env.backup()["name"].as_str().unwrap().to_string();
    let target = env.path("target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("old.txt"), b"old").unwrap();
    // What stopped restores leave: the target's previous content beside it (swapped
    // away, not yet deleted) or inside it (an earlier version's layout), and a staging
    // folder with part of an extraction.
    let kept_beside = env.path(".service-backup-replaced-target-0123456789ab");
    let kept_inside = target.join(".service-backup-replaced-abcdef012345");
    let stale = env.path(".service-backup-restore-target-00000000aaaa");
    for dir in [&kept_beside, &kept_inside, &stale] {
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::write(
            dir.join("db/table"),
            format!("the only copy, in {}", dir.display()),
        )
        .unwrap();
    }
    // The target is half replaced: every restore is refused, naming the kept folder,
    // until it is dealt with; nothing changes meanwhile.
    // The task database records the refused restores.
    let outside_state = || {
        let mut all = tree(env.dir.path());
        all.retain(|(p, _)| !p.starts_with("service-backup.sqlite3"));
        all
    };
    for kept in [&kept_inside, &kept_beside] {
        let before = outside_state();
        for run in 0..2 {
            let out = env.restore_into(&name, &target, &["--force"]);
            out.expect(2);
            assert!(
                out.stderr.contains("is half replaced")
                    && out.stderr.contains(kept.to_str().unwrap())
                    && out
                        .stderr
                        .contains("move back what you need, delete it, then restore again"),
                "run {run}: {}",
                out.stderr
            );
            assert_eq!(outside_state(), before, "run {run}: something changed");
        }
        std::fs::remove_dir_all(kept).unwrap();
    }
    env.restore_into(&name, &target, &["--force"]).expect(0);
    assert!(!stale.exists(), "the stale staging folder is removed");
    assert_eq!(tree(&target), tree(&env.path("source")));
}

#[test]
fn a_restore_keeps_the_target_s_own_mode_and_owner() {
    require_root("this row");
    let env = Env::new();
    let name = env.backup()["name"].as_str().unwrap().to_string();
    let target = env.path("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("old.txt"), b"old").unwrap();
    std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
    chmod(&target, 0o2750);
    let before = snapshot(&target)[0].clone();
    env.restore_into(&name, &target, &["--force"]).expect(0);
    assert_eq!(snapshot(&target)[0], before);
    assert_eq!(tree(&target), tree(&env.path("source")));
    let around: Vec<String> = names(env.dir.path())
        .into_iter()
        .filter(|n| n.starts_with(".service-backup-"))
        .collect();
    assert!(around.is_empty(), "{around:?}");
}

#[test]
fn state_dir_and_the_task_database_are_the_agent_s_alone_under_umask_022() {
    use std::os::unix::fs::MetadataExt as _;
    let env = Env::new();
    let state = env.path("state/deeper");
    env.write_config(&format!(
        "state_dir: {}\ncron_schedule: \"0 0 1 1 *\"\n",
        state.display()
    ));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    let umask_022 = |args: &[&str]| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("umask 022; exec \"$0\" \"$@\"")
            .arg(common::binary())
            .args(args)
            .current_dir(env.dir.path());
        c
    };
    let out = common::Run::from(umask_022(&["backup", "config.yml"]).output().unwrap());
    out.expect(0);
    assert_eq!(mode(&state), 0o700, "state_dir");
    assert_eq!(
        mode(&env.path("state")),
        0o755,
        "its parent, as the umask makes it"
    );
    for file in ["service-backup.sqlite3", "backup.lock"] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    // The journals exist while the daemon has the database open.
    let mut daemon = umask_022(&["run", "config.yml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let journals = ["-wal", "-shm"].map(|s| state.join(format!("service-backup.sqlite3{s}")));
    while !journals.iter().all(|j| j.exists()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no -wal and -shm files in {}",
            state.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for j in &journals {
        assert_eq!(mode(j), 0o600, "{}", j.display());
    }
    daemon.kill().unwrap();
    let out = common::Run::from(daemon.wait_with_output().unwrap());
    assert!(!out.all().contains("panicked"), "{}", out.all());

    // A database made readable by others is made the agent's again, and a state_dir
    // others may read is reported.
    chmod(&state.join("service-backup.sqlite3"), 0o644);
    chmod(&state, 0o755);
    let out = env.run(&["tasks", "config.yml"]);
    out.expect(0);
    assert_eq!(mode(&state.join("service-backup.sqlite3")), 0o600);
    assert!(
        out.all().contains("state_dir may be read by other users")
            && out.all().contains("chmod 700"),
        "{}",
        out.all()
    );
}

// ---- Issue 20, finding 5: an archive swapped in from another backup ----

/// One HTTP/1.1 request with the token; the status and the body as JSON.
fn swap_request(port: u16, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Authorization: Bearer {SWAP_TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    // A download's body is binary: only the status and a JSON body matter here.
    let answer = String::from_utf8_lossy(&raw);
    let status = answer[9..12].parse().unwrap();
    let text = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(text).unwrap_or_default())
}

const SWAP_TOKEN: &str = "tok-swap-5e0c2b7d91";

/// Three backups of three versions of the source, in two local destinations (`disk` and
/// `spare`); returns the env and the `list --json` items, oldest first.
fn three_backups_in_two_destinations(api_port: u16) -> (Env, Vec<serde_json::Value>) {
    let env = Env::new();
    let d = env.dir.path().display().to_string();
    common::secret(SWAP_TOKEN);
    common::write_private(&env.path("tokens"), format!("{SWAP_TOKEN}\n"));
    let yaml = format!(
        "destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n\
         - type: local\n  name: spare\n  config:\n    path: {d}/spare\n\
         source_folder: {d}/source\ncron_schedule: \"0 0 1 1 *\"\ninstance_id: inst-1\n\
         encryption:\n  key_file: {d}/backup.key\n\
         restore:\n  target_folder: {d}/restored\n\
         api:\n  listen: 127.0.0.1:{api_port}\n  bearer_tokens_file: {d}/tokens\n"
    );
    std::fs::write(env.path("config.yml"), yaml).unwrap();
    for version in 1..=3 {
        std::fs::write(
            env.path("source/version.txt"),
            format!("version {version}\n"),
        )
        .unwrap();
        env.run(&["backup", "config.yml"]).expect(0);
    }
    let list = env.run(&["list", "config.yml", "--json", "--destination", "disk"]);
    list.expect(0);
    let mut items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    items.reverse();
    assert_eq!(items.len(), 3);
    (env, items)
}

/// The attack of finding 5 in destination folder `root`: archive 1 copied over archive 3,
/// and manifest 3's `sha256` and `stored_bytes` fixed to match it.
fn swap_archive(root: &Path, items: &[serde_json::Value]) {
    let archive = |i: usize| root.join(items[i]["key"].as_str().unwrap());
    let first = std::fs::read(archive(0)).unwrap();
    std::fs::write(archive(2), &first).unwrap();
    let manifest_path =
        archive(2).with_file_name(format!("{}.json", items[2]["name"].as_str().unwrap()));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    use sha2::Digest as _;
    manifest["sha256"] = sha2::Sha256::digest(&first)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into();
    manifest["stored_bytes"] = first.len().into();
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

/// Copies the files of backup `item` from destination folder `from` to `to`.
fn copy_backup(from: &Path, to: &Path, item: &serde_json::Value) {
    let key = item["key"].as_str().unwrap();
    let name = item["name"].as_str().unwrap();
    let manifest = Path::new(key).with_file_name(format!("{name}.json"));
    for rel in [Path::new(key), manifest.as_path()] {
        std::fs::copy(from.join(rel), to.join(rel)).unwrap();
    }
}

fn wait_for_restore(port: u16, id: i64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (status, list) = swap_request(port, "GET", "/backups", "");
        assert_eq!(status, 200, "{list}");
        let task = list["restores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["backup_agent_tasks"][0].clone());
        if let Some(t) = task
            && (t["status"] == "done" || t["status"] == "failed")
        {
            return t;
        }
        assert!(
            start.elapsed() < Duration::from_mins(1),
            "restore {id} did not finish: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_archive_swapped_in_from_another_backup_is_refused_as_corrupt() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (env, items) = three_backups_in_two_destinations(port);
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    // The good copies of backup 3, kept aside for the second half.
    let good = env.path("good");
    for dest in ["backups", "spare"] {
        let key = Path::new(items[2]["key"].as_str().unwrap());
        std::fs::create_dir_all(good.join(dest).join(key.parent().unwrap())).unwrap();
        copy_backup(&env.path(dest), &good.join(dest), &items[2]);
        swap_archive(&env.path(dest), &items);
    }
    let target = env.path("restored");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("precious.txt"), b"keep me").unwrap();
    let untouched = tree(&target);
    let mismatch = format!(
        "the archive belongs to backup {} (instance inst-1",
        names[0]
    );

    // The CLI: refused as corrupt in both destinations, the target unchanged.
    let cli = env.restore_into(names[2], &target, &["--force"]);
    cli.expect(1);
    assert!(
        cli.stderr.contains(&mismatch)
            && cli
                .stderr
                .contains(&format!("but its manifest names backup {}", names[2])),
        "{}",
        cli.stderr
    );
    assert_eq!(
        tree(&target),
        untouched,
        "the CLI restore changed the target"
    );
    // verify says the same.
    let verify = env.run(&["verify", "config.yml", "--backup", names[2]]);
    verify.expect(1);
    assert!(verify.all().contains(&mismatch), "{}", verify.all());

    // The API: POST /backups/restore {"backup_id": 3} fails with the reason.
    let mut daemon = Command::new(common::binary())
        .args(["run", "config.yml"])
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(env.path("daemon.log")).unwrap())
        .stderr(std::fs::File::create(env.path("daemon.err")).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the API did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, list) = swap_request(port, "GET", "/backups", "");
    let third = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backup_agent_task"]["backup_name"] == names[2])
        .unwrap_or_else(|| panic!("backup 3 is not listed: {list}"))["id"]
        .as_i64()
        .unwrap();
    assert_eq!(third, 3, "{list}");
    let restore = |expect: &str| {
        let (status, body) = swap_request(
            port,
            "POST",
            "/backups/restore",
            &format!("{{\"instance_id\": \"inst-1\", \"backup_id\": {third}}}"),
        );
        assert_eq!(status, 200, "{body}");
        let task = wait_for_restore(port, body["restore_id"].as_i64().unwrap());
        assert_eq!(task["status"], expect, "{task}");
        task
    };
    let failed = restore("failed");
    assert!(
        failed["reason"].as_str().unwrap_or("").contains(&mismatch),
        "{failed}"
    );
    assert_eq!(
        tree(&target),
        untouched,
        "the API restore changed the target"
    );
    // The download of the swapped backup is refused too.
    let (status, body) = swap_request(port, "GET", &format!("/backups/{third}/download"), "");
    assert_ne!(status, 200, "the swapped archive was served: {body}");

    // A good copy in the second destination: both restores take it and succeed.
    copy_backup(&good.join("spare"), &env.path("spare"), &items[2]);
    restore("done");
    assert_eq!(
        std::fs::read(target.join("version.txt")).unwrap(),
        b"version 3\n",
        "the API restore did not restore backup 3"
    );
    std::fs::remove_dir_all(&target).unwrap();
    let cli = env.restore_into(names[2], &target, &[]);
    cli.expect(0);
    assert_eq!(
        std::fs::read(target.join("version.txt")).unwrap(),
        b"version 3\n"
    );
    let (status, _) = swap_request(port, "GET", &format!("/backups/{third}/download"), "");
    assert_eq!(status, 200, "the good copy in spare is not served");
    let _ = daemon.kill();
    let _ = daemon.wait();
    let logs = std::fs::read_to_string(env.path("daemon.log")).unwrap();
    common::printed(&logs);
    assert!(!logs.contains(SWAP_TOKEN));
}

/// A downloaded archive given to `restore --file` or `decrypt` under the name of another
/// backup than the one its header binds is refused; under its own name, or any name that
/// is not a backup's, it opens.
#[test]
fn a_downloaded_archive_under_another_backups_name_is_refused() {
    let env = Env::new();
    let first = env.backup();
    std::fs::write(env.path("source/version.txt"), b"two\n").unwrap();
    let second = env.backup();
    let name = |i: &serde_json::Value| i["name"].as_str().unwrap().to_string();
    let renamed = env.path(&format!("{}.tar.gz.enc", name(&second)));
    std::fs::copy(env.archive_of(&first), &renamed).unwrap();
    let key = env.path("backup.key");
    let key = key.to_str().unwrap();
    let want = format!(
        "the archive belongs to backup {}, but its file is named for backup {}",
        name(&first),
        name(&second)
    );
    for (args, target) in [
        (
            vec![
                "restore",
                "--file",
                renamed.to_str().unwrap(),
                "--key-file",
                key,
                "--target",
            ],
            "r1",
        ),
        (vec!["decrypt", "--key-file", key, "--extract"], "r2"),
    ] {
        let target = env.path(target);
        let mut args = args.clone();
        args.push(target.to_str().unwrap());
        if args[0] == "decrypt" {
            args.push(renamed.to_str().unwrap());
        }
        let out = env.run(&args);
        out.expect(1);
        assert!(out.stderr.contains(&want), "{args:?}: {}", out.stderr);
        assert!(
            !target.exists() || tree(&target).is_empty(),
            "{args:?} wrote files"
        );
    }
    let out = env.run(&[
        "decrypt",
        "--key-file",
        key,
        "--output",
        "plain.tgz",
        renamed.to_str().unwrap(),
    ]);
    out.expect(1);
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    assert!(!env.path("plain.tgz").exists());
    // Under its own name, and under a name that is no backup's, it restores.
    let own = env.path(&format!("{}.tar.gz.enc", name(&first)));
    let other = env.path("download.bin");
    for file in [&own, &other] {
        std::fs::copy(env.archive_of(&first), file).unwrap();
        let target = env.path(&format!(
            "t-{}",
            file.file_name().unwrap().to_str().unwrap()
        ));
        env.run(&[
            "restore",
            "--file",
            file.to_str().unwrap(),
            "--key-file",
            key,
            "--target",
            target.to_str().unwrap(),
        ])
        .expect(0);
    }
}

// ---------------------------------------------------------------------------------------
// Issue 20 (14, 15): the API's configuration and the files it trusts.
// ---------------------------------------------------------------------------------------

/// A configuration of the API: its `api` lines (`{d}` the working folder, `{port}` a free
/// port), a change made to the files once written, and, when it is refused, the words of
/// the message (`validate` and `run` exit 2, and nothing listens on the port).
struct ApiConfigRow {
    name: &'static str,
    api: &'static str,
    prepare: fn(&Path),
    refused: Option<&'static [&'static str]>,
}

const TOKENS: &str = "  bearer_tokens_file: {d}/api-tokens\n";
const PLAIN_ANY: &str = "api:\n  listen: 0.0.0.0:{port}\n  bearer_tokens_file: {d}/api-tokens\n";
const PLAIN_LOCAL: &str =
    "api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {d}/api-tokens\n";
const WITH_TLS: &str = "api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {d}/api-tokens\n  tls: {cert_file: \"{d}/api.crt\", key_file: \"{d}/api.key\"}\n";

fn chmod_in(dir: &Path, name: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
}

fn unchanged(_: &Path) {}

const API_CONFIG_ROWS: &[ApiConfigRow] = &[
    ApiConfigRow {
        name: "plain HTTP on every address",
        api: PLAIN_ANY,
        prepare: unchanged,
        refused: Some(&[
            "api.listen 0.0.0.0:",
            "reachable from other machines",
            "set api.tls",
            "api.allow_plaintext: true",
        ]),
    },
    ApiConfigRow {
        name: "plain HTTP on every IPv6 address",
        api: "api:\n  listen: '[::]:{port}'\n  bearer_tokens_file: {d}/api-tokens\n",
        prepare: unchanged,
        refused: Some(&["api.listen [::]:", "api.allow_plaintext: true"]),
    },
    ApiConfigRow {
        name: "plain HTTP on a host name",
        api: "api:\n  listen: backup.example.com:{port}\n  bearer_tokens_file: {d}/api-tokens\n",
        prepare: unchanged,
        refused: Some(&[
            "api.listen backup.example.com:",
            "api.allow_plaintext: true",
        ]),
    },
    ApiConfigRow {
        name: "tokens file readable by others",
        api: PLAIN_LOCAL,
        prepare: |d| chmod_in(d, "api-tokens", 0o644),
        refused: Some(&[
            "api.bearer_tokens_file",
            "other users may read or write it (mode 0644)",
            "chmod 600",
        ]),
    },
    ApiConfigRow {
        name: "tokens file writable by its group",
        api: PLAIN_LOCAL,
        prepare: |d| chmod_in(d, "api-tokens", 0o660),
        refused: Some(&[
            "api.bearer_tokens_file",
            "its group may write it (mode 0660)",
            "chmod 600",
        ]),
    },
    ApiConfigRow {
        name: "tokens file through a link to a file readable by others",
        api: PLAIN_LOCAL,
        prepare: |d| {
            std::fs::rename(d.join("api-tokens"), d.join("real-tokens")).unwrap();
            chmod_in(d, "real-tokens", 0o604);
            std::os::unix::fs::symlink("real-tokens", d.join("api-tokens")).unwrap();
        },
        refused: Some(&["api.bearer_tokens_file", "(mode 0604)"]),
    },
    ApiConfigRow {
        name: "tokens file is a FIFO",
        api: PLAIN_LOCAL,
        prepare: |d| {
            std::fs::remove_file(d.join("api-tokens")).unwrap();
            nix::unistd::mkfifo(
                &d.join("api-tokens"),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .unwrap();
        },
        refused: Some(&["api.bearer_tokens_file", "it is not a regular file"]),
    },
    ApiConfigRow {
        name: "TLS key readable by others",
        api: WITH_TLS,
        prepare: |d| chmod_in(d, "api.key", 0o644),
        refused: Some(&["api.tls.key_file", "(mode 0644)", "chmod 600"]),
    },
    ApiConfigRow {
        name: "configuration writable by others",
        api: PLAIN_LOCAL,
        prepare: |d| chmod_in(d, "api.yml", 0o666),
        refused: Some(&[
            "the configuration file",
            "may change it (mode 0666)",
            "chmod go-w",
        ]),
    },
    ApiConfigRow {
        name: "configuration writable by its group",
        api: PLAIN_LOCAL,
        prepare: |d| chmod_in(d, "api.yml", 0o664),
        refused: Some(&["(mode 0664)", "chmod go-w"]),
    },
    ApiConfigRow {
        name: "no connection allowed",
        api: "api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {d}/api-tokens\n  max_connections: 0\n",
        prepare: unchanged,
        refused: Some(&["api.max_connections must be a whole number from 1 to 16384, not 0"]),
    },
    ApiConfigRow {
        name: "plain HTTP on 127.0.0.1",
        api: PLAIN_LOCAL,
        prepare: unchanged,
        refused: None,
    },
    ApiConfigRow {
        name: "plain HTTP on ::1",
        api: "api:\n  listen: '[::1]:{port}'\n  bearer_tokens_file: {d}/api-tokens\n",
        prepare: unchanged,
        refused: None,
    },
    ApiConfigRow {
        name: "plain HTTP on localhost",
        api: "api:\n  listen: localhost:{port}\n  bearer_tokens_file: {d}/api-tokens\n",
        prepare: unchanged,
        refused: None,
    },
    ApiConfigRow {
        name: "plain HTTP on every address, allowed",
        api: "api:\n  listen: 0.0.0.0:{port}\n  allow_plaintext: true\n  bearer_tokens_file: {d}/api-tokens\n",
        prepare: unchanged,
        refused: None,
    },
    ApiConfigRow {
        name: "TLS on every address",
        api: "api:\n  listen: 0.0.0.0:{port}\n  tls: {cert_file: \"{d}/api.crt\", key_file: \"{d}/api.key\"}\n",
        prepare: unchanged,
        refused: None,
    },
    ApiConfigRow {
        name: "tokens and TLS key readable by the group",
        api: WITH_TLS,
        prepare: |d| {
            chmod_in(d, "api-tokens", 0o640);
            chmod_in(d, "api.key", 0o640);
        },
        refused: None,
    },
];

/// Runs `service-backup run api.yml`, which must exit within 20 s; returns how.
fn run_briefly(env: &Env, port: u16) -> (common::Run, bool) {
    let mut child = common::piped(env.dir.path())
        .args(["run", "api.yml"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`run` did not exit: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    (
        common::Run::from(child.wait_with_output().unwrap()),
        listening,
    )
}

#[test]
fn api_configurations_that_expose_secrets_are_refused_before_anything_listens() {
    let env = Env::new();
    let d = env.dir.path().display().to_string();
    let mut failures = Vec::new();
    for row in API_CONFIG_ROWS {
        for f in ["api-tokens", "real-tokens", "api.key", "api.crt", "api.yml"] {
            let _ = std::fs::remove_file(env.path(f));
        }
        common::write_private(&env.path("api-tokens"), "tok-Row-1f2e\n");
        // The key is checked for its mode long before it is parsed: any text will do.
        common::write_private(&env.path("api.key"), "not a key\n");
        std::fs::write(env.path("api.crt"), "not a certificate\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let api = row
            .api
            .replace("{d}", &d)
            .replace("{port}", &port.to_string());
        let api = if api.contains("bearer_tokens_file") {
            api
        } else {
            api.replacen("  tls:", &format!("{}  tls:", TOKENS.replace("{d}", &d)), 1)
        };
        std::fs::write(
            env.path("api.yml"),
            format!("{}{api}", GOOD_CONFIG.replace("{d}", &d)),
        )
        .unwrap();
        (row.prepare)(env.dir.path());
        let validate = env.run(&["validate", "api.yml"]);
        let Some(words) = row.refused else {
            if validate.code != 0 {
                failures.push(format!("{}: refused: {}", row.name, validate.stderr));
            }
            let warned = validate
                .stdout
                .contains("warning: api.allow_plaintext is set");
            let exposed = row.api.contains("0.0.0.0") && !row.api.contains("tls:");
            if warned != exposed {
                failures.push(format!(
                    "{}: warning {warned}: {}",
                    row.name, validate.stdout
                ));
            }
            continue;
        };
        let (run, listening) = run_briefly(&env, port);
        for (what, out) in [("validate", &validate), ("run", &run)] {
            if out.code != 2 {
                failures.push(format!(
                    "{} ({what}): exit {}: {}",
                    row.name,
                    out.code,
                    out.all()
                ));
            }
            if let Some(w) = words.iter().find(|w| !out.stderr.contains(*w)) {
                failures.push(format!(
                    "{} ({what}): {w:?} is not in {}",
                    row.name, out.stderr
                ));
            }
            if out.all().contains("tok-Row-1f2e") {
                failures.push(format!("{} ({what}): the token shows", row.name));
            }
        }
        if listening {
            failures.push(format!("{}: something listens on the port", row.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- Extraction (issue 20: symlink chains, extension entries, archives larger than their
// manifest, `./` entries). Each archive is restored with `restore --file` into a target
// holding a file, and checked with `verify --file`.

/// The folder of the test with every path in it and its content (links as their targets),
/// to show that a refused restore changed nothing, inside the target or beside it.
fn ext_snapshot(env: &Env) -> Vec<(String, Vec<u8>)> {
    tree(env.dir.path())
}

/// Restores `bytes` (a plain .tar.gz) as a downloaded archive into `target` (holding
/// `precious.txt`) with --force, and verifies it; both must fail with exit 1 and `words`,
/// and nothing in the test's folder may change.
fn refused_extraction(env: &Env, bytes: &[u8], words: &[&str]) {
    std::fs::write(env.path("bad.tar.gz"), bytes).unwrap();
    let _ = std::fs::remove_dir_all(env.path("target"));
    std::fs::create_dir(env.path("target")).unwrap();
    std::fs::write(env.path("target/precious.txt"), b"keep me").unwrap();
    let before = ext_snapshot(env);
    let restore = env.run(&[
        "restore",
        "--file",
        "bad.tar.gz",
        "--target",
        "target",
        "--force",
    ]);
    let verify = env.run(&["verify", "--file", "bad.tar.gz"]);
    for run in [&restore, &verify] {
        run.expect(1);
        for w in words {
            assert!(run.stderr.contains(w), "{w:?} is not in: {}", run.stderr);
        }
    }
    assert_eq!(
        ext_snapshot(env),
        before,
        "a refused archive changed the folder"
    );
    assert_eq!(
        tree(&env.path("target")),
        vec![("precious.txt".to_string(), b"keep me".to_vec())]
    );
}

#[test]
fn a_symlink_chain_out_of_the_target_is_restored_as_it_is_but_never_written_through() {
    let env = Env::new();
    // The report's archive: `s -> .`, then `up` through `s` eight times and up eight
    // times (`readlink -f target/up` is `/`), then `escape` through `up`, and links that
    // are absolute or leave the target. A symlink's target is only text: each is made as
    // it is, as tar does.
    let links = [
        ("s", "."),
        ("up", "s/s/s/s/s/s/s/s/../../../../../../../.."),
        ("escape", "up/etc/passwd"),
        ("etc", "/etc"),
        ("sub/a", "d/../.."),
        ("sub/d", "."),
    ];
    let archive = |through: Option<&str>| {
        plain_tar_gz(|b| {
            b.append(
                &raw_entry(tar::EntryType::Regular, "fine.txt", None, b"ok"),
                &b"ok"[..],
            )
            .unwrap();
            for (name, to) in links {
                b.append(
                    &raw_entry(tar::EntryType::Symlink, name, Some(to), b""),
                    &b""[..],
                )
                .unwrap();
            }
            if let Some(path) = through {
                b.append(
                    &raw_entry(tar::EntryType::Regular, path, None, b"owned"),
                    &b"owned"[..],
                )
                .unwrap();
            }
        })
    };
    std::fs::write(env.path("links.tar.gz"), archive(None)).unwrap();
    env.run(&["verify", "--file", "links.tar.gz"]).expect(0);
    env.run(&["restore", "--file", "links.tar.gz", "--target", "restored"])
        .expect(0);
    let mut want: Vec<(String, Vec<u8>)> = links
        .iter()
        .map(|(at, to)| ((*at).to_string(), to.as_bytes().to_vec()))
        .collect();
    want.push(("fine.txt".to_string(), b"ok".to_vec()));
    want.push(("sub/".to_string(), vec![]));
    want.sort();
    assert_eq!(tree(&env.path("restored")), want);
    // A file through any of them is refused, and nothing is written anywhere.
    for (through, link) in [
        ("escape/owned", "escape"),
        ("up/owned", "up"),
        ("sub/d/x", "sub/d"),
    ] {
        let why = format!(
            "refusing archive entry \"{through}\": its path passes through the symlink {link}"
        );
        refused_extraction(
            &env,
            &archive(Some(through)),
            &[&why, "nothing was restored"],
        );
    }
}

#[test]
fn an_extension_entry_over_64_kib_is_refused() {
    let env = Env::new();
    // A GNU long name of 100 KiB (the report's was 1.5 GiB: see tests/memory_bombs.rs).
    let name = vec![b'n'; 100 * 1024];
    let bytes = plain_tar_gz(|b| {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(name.len() as u64);
        h.set_cksum();
        b.append(&h, &name[..]).unwrap();
        b.append(
            &raw_entry(tar::EntryType::Regular, "short", None, b"x"),
            &b"x"[..],
        )
        .unwrap();
    });
    refused_extraction(
        &env,
        &bytes,
        &[
            "the archive is corrupt: its tar stream holds a GNU long name entry of 102400 bytes, over the limit of 65536 bytes",
        ],
    );
}

#[test]
fn an_archive_holding_more_than_its_manifest_says_is_refused() {
    let env = Env::new();
    let item = env.backup();
    let archive = env.archive_of(&item);
    let manifest_path = archive.to_str().unwrap().replace(".tar.gz.enc", ".json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let real = manifest["plain_bytes"].as_u64().unwrap();
    // The archive is untouched (its hash still matches): only the size recorded is lower,
    // as for an archive grown into a disk bomb beside a manifest that does not say so.
    manifest["plain_bytes"] = (real - 1).into();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    std::fs::create_dir(env.path("target")).unwrap();
    std::fs::write(env.path("target/precious.txt"), b"keep me").unwrap();
    // The task records of the agent's state change; the target, the stored backup and
    // the source may not.
    let watched = || ["target", "backups", "source"].map(|d| tree(&env.path(d)));
    let before = watched();
    let words = format!(
        "its files hold more than the {} bytes its manifest records",
        real - 1
    );
    let restore = env.run(&["restore", "config.yml", "--target", "target", "--force"]);
    let verify = env.run(&["verify", "config.yml"]);
    for run in [&restore, &verify] {
        run.expect(1);
        assert!(run.stderr.contains(&words), "{}", run.stderr);
    }
    assert!(
        watched() == before,
        "a refused restore changed the target or the backup"
    );
    // The size recorded back: the same backup restores.
    manifest["plain_bytes"] = real.into();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    env.run(&["restore", "config.yml", "--target", "target", "--force"])
        .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("target")));
}

#[test]
fn an_archive_of_tar_c_dir_dot_restores() {
    let env = Env::new();
    let made = Command::new("tar")
        .args(["-C", "source", "-czf", "dot.tar.gz", "."])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let listing = Command::new("tar")
        .args(["-tzf", "dot.tar.gz"])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).lines().next() == Some("./"),
        "tar writes `./` first: {listing:?}"
    );
    env.run(&["verify", "--file", "dot.tar.gz"]).expect(0);
    let out = env.run(&["restore", "--file", "dot.tar.gz", "--target", "t"]);
    out.expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("t")));
}

// ---- Data after the tar end-of-archive marker (issue 20, attacker review) ----

#[test]
fn data_after_the_tar_end_marker_is_refused_before_it_is_all_read() {
    let env = Env::new();
    // The report's archive held 20 GiB of zeros after the end marker and verified "valid"
    // after decompressing them all; 64 MiB show the same.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "a.txt", &b"hello"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    std::fs::write(env.path("tail.tar.gz"), gz.finish().unwrap()).unwrap();

    let verify = env.run(&["verify", "--file", "tail.tar.gz"]);
    let restore = env.run(&["restore", "--file", "tail.tar.gz", "--target", "t"]);
    for run in [&verify, &restore] {
        run.expect(1);
        assert!(
            run.stderr.contains(
                "the archive is corrupt: more than 1 MiB of data follow its tar end-of-archive marker; refusing it"
            ),
            "{}",
            run.stderr
        );
    }
    assert!(!env.path("t").exists(), "the target was left");
}

// A restore staged inside the target (a mount point, or a parent the agent cannot write)
// SIGKILLed while it moved the old entries aside, then run again with --force: the retry
// moved the still-visible old files into its own folder and deleted them.

#[test]
fn a_restore_into_a_target_a_killed_restore_half_moved_aside_is_refused() {
    let env = Env::new();
    let target = env.path("target");
    // The state the kill leaves: part of the old files moved aside, the rest in place.
    let aside = target.join(".service-backup-replaced-0123456789ab");
    std::fs::create_dir_all(&aside).unwrap();
    for i in 0..60 {
        let dir = if i < 25 { &aside } else { &target };
        std::fs::write(dir.join(format!("old_{i:05}")), format!("old {i}")).unwrap();
    }
    let bytes = plain_tar_gz(|b| {
        b.append(
            &raw_entry(tar::EntryType::Regular, "new.txt", None, b"new"),
            &b"new"[..],
        )
        .unwrap();
    });
    std::fs::write(env.path("new.tar.gz"), bytes).unwrap();
    let before = tree(env.dir.path());
    let name = env.backup()["name"].as_str().unwrap().to_string();
    let before_backup = tree(env.dir.path());
    for out in [
        env.run(&[
            "restore",
            "--file",
            "new.tar.gz",
            "--target",
            "target",
            "--force",
        ]),
        env.restore_into(&name, &target, &["--force"]),
    ] {
        out.expect(2);
        assert!(
            out.stderr.contains("is half replaced")
                && out.stderr.contains(aside.to_str().unwrap())
                && out.stderr.contains("compare"),
            "{}",
            out.stderr
        );
    }
    // Every original file, byte for byte, where the killed restore left it.
    let mut left = tree(env.dir.path());
    left.retain(|(p, _)| p.starts_with("target/"));
    let mut was = before;
    was.retain(|(p, _)| p.starts_with("target/"));
    assert_eq!(left, was);
    assert_eq!(left.iter().filter(|(p, _)| !p.ends_with('/')).count(), 60);
    let mut all = tree(env.dir.path());
    // The task database records the refused restore.
    all.retain(|(p, _)| !p.starts_with("service-backup.sqlite3"));
    let mut expected = before_backup;
    expected.retain(|(p, _)| !p.starts_with("service-backup.sqlite3"));
    assert_eq!(all, expected);
}

// `restore --force` into a folder that is, holds or lies inside the agent's own files
// (state_dir, key, configuration, a local destination's backups) deleted them, exit 0.

#[test]
fn a_restore_target_holding_the_agent_s_own_files_is_refused() {
    let env = Env::new();
    env.write_config(&format!("state_dir: {}/state\n", env.dir.path().display()));
    let name = env.backup()["name"].as_str().unwrap().to_string();
    std::fs::write(
        env.path("plain.tar.gz"),
        plain_tar_gz(|b| {
            b.append(
                &raw_entry(tar::EntryType::Regular, "new.txt", None, b"new"),
                &b"new"[..],
            )
            .unwrap();
        }),
    )
    .unwrap();
    let before = tree(env.dir.path());
    let rows: [(&[&str], &str); 6] = [
        (&["--target", "state"], "is the state_dir"),
        (
            &["--target", "state/../state/sub/x"],
            "lies inside the state_dir",
        ),
        (&["--target", "."], "holds the state_dir"),
        (
            &["--target", "backups"],
            "is the folder of destination disk",
        ),
        (&["--target", "backup.key"], "is the encryption key file"),
        (
            &["--file", "plain.tar.gz", "--target", "."],
            "holds the state_dir",
        ),
    ];
    for (extra, words) in rows {
        let mut args = vec!["restore", "config.yml", "--backup", &name, "--force"];
        if extra[0] == "--file" {
            args.truncate(2);
            args.push("--force");
        }
        args.extend_from_slice(extra);
        let out = env.run(&args);
        out.expect(2);
        assert!(
            out.stderr.contains(words)
                && out.stderr.contains("would delete it")
                && out.stderr.contains("restore into a folder apart"),
            "{extra:?}: {}",
            out.stderr
        );
        assert_eq!(tree(env.dir.path()), before, "{extra:?} changed something");
    }
    // With the default state_dir (the configuration's folder), its files are protected,
    // not every folder beside them.
    env.write_config("");
    let before = tree(env.dir.path());
    let out = env.restore_into(&name, Path::new("."), &["--force"]);
    out.expect(2);
    assert!(
        out.stderr.contains("holds the agent's state"),
        "{}",
        out.stderr
    );
    assert_eq!(tree(env.dir.path()), before);
    env.restore_into(&name, &env.path("elsewhere"), &[])
        .expect(0);
}

// A state_dir other users can write was trusted: a known_hosts planted in it pinned the
// attacker's server for every host, and links planted under the lock's name were followed.

#[test]
fn a_state_dir_others_can_write_is_refused_and_planted_links_are_not_followed() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new();
    env.write_config(&format!("state_dir: {}/state\n", env.dir.path().display()));
    let state = env.path("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    for args in [
        &["backup", "config.yml"][..],
        &["restore", "config.yml", "--target", "t"][..],
    ] {
        let out = env.run(args);
        out.expect(2);
        assert!(
            out.stderr
                .contains("is not the agent's alone: others may write to it (mode 0777)")
                && out.stderr.contains("chmod 700"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(!env.path("backups").exists(), "nothing is uploaded");
    assert!(!env.path("t").exists());
    assert!(std::fs::read_dir(&state).unwrap().next().is_none());
    if is_root() {
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        let out = env.run(&["backup", "config.yml"]);
        out.expect(2);
        assert!(
            out.stderr.contains("belongs to another user (uid 65534"),
            "{}",
            out.stderr
        );
        std::os::unix::fs::chown(&state, Some(0), Some(0)).unwrap();
    }
    // A state_dir of the agent's own with a link planted as its lock.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pointed = env.path("made-by-the-link");
    std::os::unix::fs::symlink(&pointed, state.join("backup.lock")).unwrap();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    assert!(
        out.stderr.contains("open the backup lock") && out.stderr.contains("backup.lock"),
        "{}",
        out.stderr
    );
    assert!(
        !pointed.exists(),
        "a file was created where the link points"
    );
    assert!(!env.path("backups").exists(), "nothing is uploaded");
    std::fs::remove_file(state.join("backup.lock")).unwrap();
    env.run(&["backup", "config.yml"]).expect(0);
}

/// Row "KMS key id unknown to the store". moto 5.2 accepts any `SSEKMSKeyId` on `PutObject`
/// and `CreateMultipartUpload` and stores it as given (checked here: a put under
/// 00000000-1111-2222-3333-444444444444 succeeds), where Amazon S3 refuses the write; the
/// agent asks KMS (`GenerateDataKey`, what S3 asks for each write) before the first write, so
/// both stores fail the same way, at `check` and at the backup, and nothing is written.
#[test]
fn an_s3_kms_key_id_unknown_to_the_store_fails_check_and_backup_and_writes_nothing() {
    use service_backup_core::destination::Destination as _;
    let endpoint = service_backup_testkit::env("SB_TEST_S3_ENDPOINT");
    let bucket = service_backup_testkit::unique("unknown-kms");
    let env = Env::new();
    let unknown = "arn:aws:kms:us-east-1:123456789012:key/00000000-1111-2222-3333-444444444444";
    let d = env.dir.path().display();
    let yaml = format!(
        "destinations:\n- type: s3\n  config:\n    bucket_name: {bucket}\n    bucket_path: p\n    \
         access_key_id: AKIAUNKNOWNKMS000001\n    secret_access_key: unknown-kms-secret\n    \
         endpoint_url: {endpoint}\n    region: us-east-1\n    server_side_encryption: aws:kms\n    \
         kms_key_id: {unknown}\nsource_folder: {d}/source\ncron_schedule: \"@daily\"\n\
         encryption:\n  key_file: {d}/backup.key\n"
    );
    std::fs::write(env.path("config.yml"), yaml).unwrap();
    let words = [
        format!(
            "s3 bucket {bucket}: the KMS key {unknown} of server_side_encryption aws:kms cannot be used: NotFoundException"
        ),
        "set kms_key_id to the id, ARN or alias of an enabled KMS key in region us-east-1".into(),
    ];
    let check = env.run(&["check", "config.yml"]);
    check.expect(1);
    let backup = env.run(&["backup", "config.yml"]);
    backup.expect(1);
    for out in [&check, &backup] {
        for word in &words {
            assert!(out.all().contains(word), "{word}\n{}", out.all());
        }
    }
    let mut settings = service_backup_s3::S3Settings::new(
        &bucket,
        "AKIAUNKNOWNKMS000001",
        service_backup_core::secret::Secret::new("unknown-kms-secret"),
    );
    settings.endpoint_url = Some(endpoint);
    let store = service_backup_s3::S3Destination::new(&settings).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (objects, uploads) =
        runtime.block_on(async { (store.list("").await, store.list_incomplete("").await) });
    // The check happens before the first write: not even the bucket was created.
    for listed in [objects.map(|o| o.len()), uploads.map(|u| u.len())] {
        match listed {
            Ok(n) => assert_eq!(n, 0, "something was written"),
            Err(e) => assert!(e.to_string().contains("NoSuchBucket"), "{e}"),
        }
    }
}
