//! The `encryption` section: the current key (a file or inline base64), previous keys,
//! and public-key recipients (which encrypt and cannot decrypt).

use std::path::{Path, PathBuf};

use serde_norway::Value;
use service_backup_core::format::{Key, Keyring, Recipient};

use super::section::{Problems, Section, kind_of, resolve, scalar_text};

/// The keyring of `encryption`, or `None` when the section is absent or a key is unusable
/// (the problems say which). Relative key files are resolved against `base`; their paths
/// go into `files`.
pub(super) fn read_keyring(
    top: &Section<'_>,
    base: Option<&Path>,
    files: &mut Vec<PathBuf>,
    problems: &mut Problems,
) -> Option<Keyring> {
    let encryption = top.section("encryption", super::keys::ENCRYPTION, problems)?;
    let key_file = encryption.file("key_file", base, problems);
    let inline = encryption.secret("key", problems);
    let recipients = recipients(&encryption, problems);
    let current = match (key_file, inline) {
        (Some(_), Some(_)) => {
            problems.push("encryption has both key and key_file; set only one of them".to_string());
            None
        }
        // Recipients alone: a write-only agent, which holds no key that opens its backups
        // (bad recipients are problems of their own).
        (None, None) if encryption.get("recipients").is_some() => None,
        (None, None) => {
            problems.push(
                "encryption needs key_file (a key file written by `service-backup keygen`) \
                 or key (its base64 text)"
                    .to_string(),
            );
            None
        }
        (Some(path), None) => Key::from_file({
            files.push(path.clone());
            &path
        })
        .map_err(|e| problems.push(format!("encryption.key_file: {e}")))
        .ok(),
        // The core's messages about a key never contain the key.
        (None, Some(secret)) => Key::from_base64(secret.expose())
            .map_err(|e| problems.push(format!("encryption.key: {e}")))
            .ok(),
    };
    let previous = previous_keys(&encryption, base, files, problems);
    let has_key = encryption.get("key_file").is_some() || encryption.get("key").is_some();
    let mut keyring = match current {
        Some(key) => Keyring::new(key),
        None if !has_key && recipients.as_ref().is_some_and(|r| !r.is_empty()) => {
            Keyring::default()
        }
        None => return None,
    };
    for key in previous {
        keyring.add_previous(key);
    }
    for recipient in recipients? {
        keyring.add_recipient(recipient);
    }
    Some(keyring)
}

/// `recipients`: X25519 public keys that new backups are encrypted for; `None` when the
/// list is unusable (the problems say why), empty when absent.
fn recipients(encryption: &Section<'_>, problems: &mut Problems) -> Option<Vec<Recipient>> {
    let name = encryption.name("recipients");
    let Some(value) = encryption.get("recipients") else {
        return Some(Vec::new());
    };
    let Value::Sequence(items) = value else {
        problems.push(format!(
            "{name} must be a list of recipient strings (sbrec1…), not {}",
            kind_of(value)
        ));
        return None;
    };
    if items.is_empty() {
        problems.push(format!(
            "{name} is empty; list at least one recipient or leave recipients out"
        ));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        let Some(text) = scalar_text(item) else {
            problems.push(format!(
                "{name} item {} must be a recipient string (sbrec1…), not {}",
                index + 1,
                kind_of(item)
            ));
            ok = false;
            continue;
        };
        match Recipient::parse(&text) {
            // The same recipient twice would wrap the key twice for nobody more: a slip
            // (a copy-paste), refused so that the list says what is meant.
            Ok(r) if out.contains(&r) => {
                let first = items
                    .iter()
                    .position(|i| scalar_text(i).and_then(|t| Recipient::parse(&t).ok()) == Some(r))
                    .map_or(0, |i| i + 1);
                problems.push(format!(
                    "{name} item {} repeats item {first} (recipient id {}); list each recipient once",
                    index + 1,
                    r.id()
                ));
                ok = false;
            }
            Ok(r) => out.push(r),
            Err(e) => {
                problems.push(format!("{name} item {}: {e}", index + 1));
                ok = false;
            }
        }
    }
    // Each stanza is 94 bytes; the header's limit of 64 stanzas keeps two for the key and
    // the backup's context.
    if out.len() > 62 {
        problems.push(format!(
            "{name} lists {} recipients; at most 62 fit in an archive's header",
            out.len()
        ));
        ok = false;
    }
    ok.then_some(out)
}

/// `previous_key_files`: older keys, accepted for decryption only.
fn previous_keys(
    encryption: &Section<'_>,
    base: Option<&Path>,
    files: &mut Vec<PathBuf>,
    problems: &mut Problems,
) -> Vec<Key> {
    let name = encryption.name("previous_key_files");
    let Some(value) = encryption.get("previous_key_files") else {
        return Vec::new();
    };
    let Value::Sequence(items) = value else {
        problems.push(format!(
            "{name} must be a list of key files, not {}",
            kind_of(value)
        ));
        return Vec::new();
    };
    let mut keys = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Some(text) = scalar_text(item).filter(|t| !t.trim().is_empty()) else {
            problems.push(format!(
                "{name} item {} must be a key file path, not {}",
                index + 1,
                kind_of(item)
            ));
            continue;
        };
        let path = resolve(base, PathBuf::from(text));
        files.push(path.clone());
        match Key::from_file(&path) {
            Ok(key) => keys.push(key),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::super::parse;

    const GOOD: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn key_file(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(content.as_bytes()).expect("write key");
        file
    }

    fn problems_of(yaml: &str) -> Vec<String> {
        match parse(yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().to_vec(),
        }
    }

    #[test]
    fn a_good_key_file_and_previous_keys_make_a_keyring() {
        let current = key_file(&format!("{GOOD}\n"));
        let old = key_file("//////////////////////////////////////////8=");
        let yaml = format!(
            "encryption:\n  key_file: {}\n  previous_key_files: [{}]\n",
            current.path().display(),
            old.path().display()
        );
        let config = parse(&yaml).expect("valid");
        let ring = config.keyring.expect("keyring");
        assert_eq!(ring.ids().len(), 2);
    }

    #[test]
    fn an_inline_key_works_and_is_never_shown() {
        let config = parse(&format!("encryption: {{key: \"{GOOD}\"}}")).expect("valid");
        assert!(config.keyring.is_some());
        assert!(!format!("{config:?}").contains(GOOD));
    }

    #[test]
    fn key_problems_name_the_file_and_never_the_content() {
        let short = key_file("c2hvcnRzZWNyZXQ=");
        let garbage = key_file("top-secret-garbage!!");
        let missing = "/nonexistent/dir/backup.key";
        let yaml = format!(
            "encryption:\n  key_file: {}\n  previous_key_files:\n  - {}\n  - {missing}\n  - [x]\n",
            short.path().display(),
            garbage.path().display()
        );
        let problems = problems_of(&yaml);
        assert_eq!(
            problems,
            vec![
                format!(
                    "Invalid config - encryption.key_file: key file {}: the key is 11 bytes long, \
                     not 32 (a key is 32 random bytes in base64, as `service-backup keygen` \
                     writes it).",
                    short.path().display()
                ),
                format!(
                    "Invalid config - encryption.previous_key_files: key file {}: the key is not \
                     valid base64 (a key is 32 random bytes in base64, as `service-backup keygen` \
                     writes it).",
                    garbage.path().display()
                ),
                format!(
                    "Invalid config - encryption.previous_key_files: cannot read key file \
                     {missing}: No such file or directory."
                ),
                "Invalid config - encryption.previous_key_files item 3 must be a key file \
                 path, not a list."
                    .to_string(),
            ]
        );
        let all = problems.join("\n");
        assert!(!all.contains("c2hvcnRzZWNyZXQ") && !all.contains("top-secret-garbage"));
    }

    #[test]
    fn an_inline_key_of_the_wrong_shape_is_not_quoted() {
        let problems = problems_of("encryption:\n  key: not-base64-but-secret!\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("Invalid config - encryption.key: the key is not valid base64")
        );
        assert!(!problems[0].contains("not-base64-but-secret"));
    }

    #[test]
    fn neither_or_both_keys_is_a_problem() {
        assert_eq!(
            problems_of("encryption: {}\n"),
            [
                "Invalid config - encryption needs key_file (a key file written by \
              `service-backup keygen`) or key (its base64 text)."
            ]
        );
        let file = key_file(GOOD);
        let both = format!(
            "encryption: {{key: \"{GOOD}\", key_file: {}}}\nmissing_properties_message: m\n",
            file.path().display()
        );
        assert_eq!(
            problems_of(&both),
            ["Invalid config - encryption has both key and key_file; set only one of them."]
        );
        assert_eq!(
            problems_of("encryption: [a]\nmissing_properties_message: m\n"),
            ["Invalid config - encryption must be a mapping of settings, not a list."]
        );
    }

    #[test]
    fn relative_key_files_resolve_against_the_config_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("backup.key"), GOOD).expect("write key");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.path().join("backup.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        let config_path = dir.path().join("backup.yml");
        std::fs::write(&config_path, "encryption:\n  key_file: backup.key\n").expect("write");
        let config = super::super::load(&config_path).expect("valid");
        assert!(config.keyring.is_some());
        assert_eq!(config.source_path.as_deref(), Some(config_path.as_path()));
    }

    /// The recipient of spec/vectors' identity (a published test key).
    const RECIPIENT: &str = "sbrec1vawa2a8dw7ynzzea9emgrumepdrxcaemz5slanek2au4sdc755hsyhl97j";

    #[test]
    fn recipients_alone_make_a_keyring_that_encrypts_and_cannot_decrypt() {
        let config = parse(&format!("encryption:\n  recipients: [{RECIPIENT}]\n")).expect("valid");
        let ring = config.keyring.expect("keyring");
        assert!(ring.current().is_none());
        assert_eq!(ring.recipients().len(), 1);
        assert_eq!(ring.recipients()[0].to_string(), RECIPIENT);
        assert!(ring.can_encrypt() && !ring.can_decrypt());
        let both = key_file(GOOD);
        let yaml = format!(
            "encryption:\n  key_file: {}\n  recipients: [{RECIPIENT}]\n",
            both.path().display()
        );
        let ring = parse(&yaml).expect("valid").keyring.expect("keyring");
        assert!(ring.current().is_some() && ring.recipients().len() == 1);
    }

    #[test]
    fn bad_recipients_are_refused_with_their_reason() {
        // The last character changed: the Bech32m checksum fails.
        let typo = format!("{}q", &RECIPIENT[..RECIPIENT.len() - 1]);
        let problems = problems_of(&format!("encryption:\n  recipients: [{typo}]\n"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!(
                "Invalid config - encryption.recipients item 1: the recipient \"{}\"… ({} characters) is not valid: its checksum or characters are wrong",
                &typo[..12],
                typo.len()
            )),
            "{problems:?}"
        );
        // A whole recipient of 20 bytes (valid checksum, wrong length).
        let short = "sbrec1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc52847yu";
        let problems = problems_of(&format!("encryption:\n  recipients: [{short}]\n"));
        assert!(
            problems[0].contains("it holds a key of 20 bytes, not 32"),
            "{problems:?}"
        );
        // Attack finding 13: the same recipient twice was accepted.
        let problems = problems_of(&format!(
            "encryption:\n  recipients: [{RECIPIENT}, {}]\n",
            RECIPIENT.to_uppercase()
        ));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "Invalid config - encryption.recipients item 2 repeats item 1 (recipient id "
            ) && problems[0].ends_with("); list each recipient once."),
            "{problems:?}"
        );
        let problems = problems_of("encryption:\n  recipients: []\n");
        assert_eq!(
            problems,
            [
                "Invalid config - encryption.recipients is empty; list at least one recipient or leave recipients out."
            ]
        );
        let problems = problems_of("encryption:\n  recipients: sbrec1x\n");
        assert!(
            problems[0].contains("encryption.recipients must be a list of recipient strings"),
            "{problems:?}"
        );
    }
}
