//! The `known_hosts` file's tests: reading, recording and matching host names.

use std::os::unix::fs::PermissionsExt as _;

use super::*;

/// An ed25519 key whose 32 key bytes are all `n`.
fn key(n: u8) -> SeenKey {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend([n; 32]);
    SeenKey::ed25519(blob)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_first_key_is_recorded_once_in_a_private_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state/known_hosts");
    let file = KnownHosts::new(path.clone());
    let host = "[10.0.0.5]:2222";
    assert!(file.lookup(host).unwrap().is_none());
    assert!(matches!(file.record(host, &key(1)).unwrap(), Recorded::New));
    assert_eq!(mode(&tmp.path().join("state")), 0o700);
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("{host} {}\n", key(1).known_hosts_text()));
    let pins = file.lookup(host).unwrap().unwrap();
    assert!(pins.accept(&key(1)) && !pins.accept(&key(2)));
    // A second recording finds the first and changes nothing.
    let Recorded::Already(pins) = file.record(host, &key(2)).unwrap() else {
        panic!("recorded twice");
    };
    assert!(pins.accept(&key(1)) && !pins.accept(&key(2)));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // Other servers are not recorded; no temporary file is left, only the lock file.
    assert!(file.lookup("[10.0.0.5]:2223").unwrap().is_none());
    let mut names: Vec<_> = std::fs::read_dir(tmp.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["known_hosts", "known_hosts.lock"]);
}

#[test]
fn lines_of_others_are_kept_and_read_as_ssh_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("known_hosts");
    let other = format!("# kept\nother.example {}", key(9).known_hosts_text());
    let text = format!(
        "{other}\n@revoked * {revoked}\n[10.0.0.5]:2222 sk-ssh-ed25519@openssh.com AAAA\n\
         other.example,!x ssh-ed25519 garbage",
        revoked = key(1).known_hosts_text()
    );
    std::fs::write(&path, &text).unwrap();
    let file = KnownHosts::new(path.clone());
    // Markers and key types the agent does not check name no key of the host.
    assert!(file.lookup("[10.0.0.5]:2222").unwrap().is_none());
    assert!(matches!(
        file.record("[10.0.0.5]:2222", &key(1)).unwrap(),
        Recorded::New
    ));
    let after = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        after,
        format!("{text}\n[10.0.0.5]:2222 {}\n", key(1).known_hosts_text())
    );
    // A line of the host that cannot be read is an error, not a missing record.
    let err = file.lookup("other.example").unwrap_err();
    assert!(err.to_string().contains("line 5"), "{err}");
    assert!(err.to_string().contains("ssh-keygen -R"), "{err}");
}

#[test]
fn a_known_hosts_others_wrote_or_a_link_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("known_hosts");
    // What a user who could write state_dir plants: a key of theirs for every host.
    let planted = format!("* {}\n", key(7).known_hosts_text());
    std::fs::write(&path, &planted).unwrap();
    let file = KnownHosts::new(path.clone());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o646)).unwrap();
    let err = file.lookup("backup.example").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("is not the agent's alone")
            && err.to_string().contains("mode 0646"),
        "{err}"
    );
    assert!(file.record("backup.example", &key(1)).is_err());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let err = file.lookup("backup.example").unwrap_err();
        assert!(err.to_string().contains("owner uid 65534"), "{err}");
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    }
    assert!(file.lookup("backup.example").unwrap().is_some());
    // Links, for the file and its lock, are not followed; nothing is created where
    // they point.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(&path, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert!(file.lookup("backup.example").is_err());
    std::fs::remove_file(&path).unwrap();
    let lock_target = tmp.path().join("made-by-the-link");
    let _ = std::fs::remove_file(lock_path(&path));
    std::os::unix::fs::symlink(&lock_target, lock_path(&path)).unwrap();
    assert!(file.record("backup.example", &key(1)).is_err());
    assert!(!lock_target.exists());
    assert!(!path.exists());
}

#[test]
fn a_file_that_cannot_be_read_or_a_name_that_cannot_be_recorded_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // A folder where the file should be: an error, never "nothing recorded".
    let file = KnownHosts::new(tmp.path().to_path_buf());
    assert!(file.lookup("host").is_err());
    assert!(file.record("host", &key(1)).is_err());
    let file = KnownHosts::new(tmp.path().join("known_hosts"));
    for name in ["a,b", "*", "a b", "!a", "h?st"] {
        let err = file.record(name, &key(1)).err().expect(name);
        assert_eq!(err.kind(), ErrorKind::Config, "{name}");
    }
    // A key whose blob names another type (the server chose its bytes) is not written.
    let mut forged = Vec::new();
    forged.extend_from_slice(&21u32.to_be_bytes());
    forged.extend_from_slice(b"ssh-ed25519\nevil ssh");
    forged.extend([1; 32]);
    let err = file
        .record("host", &SeenKey::ed25519(forged))
        .err()
        .expect("forged type");
    assert!(err.to_string().contains("cannot be recorded"), "{err}");
    assert!(!tmp.path().join("known_hosts").exists());
}

#[test]
fn concurrent_first_uses_lose_no_record_and_agree_on_one_key() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("known_hosts");
    let threads: Vec<_> = (0..16u8)
        .map(|i| {
            let file = KnownHosts::new(path.clone());
            std::thread::spawn(move || {
                // Eight servers, each first seen by two writers with different keys.
                let host = format!("[10.0.0.{}]:22", i % 8);
                file.record(&host, &key(i)).unwrap();
                file.lookup(&host).unwrap().unwrap()
            })
        })
        .collect();
    let pins: Vec<HostKeyPins> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 8, "{text}");
    for i in 0..8u8 {
        // Both writers of a server see the same single key.
        assert_eq!(pins[usize::from(i)], pins[usize::from(i) + 8]);
        let accepted = [i, i + 8]
            .into_iter()
            .filter(|&k| pins[usize::from(i)].accept(&key(k)))
            .count();
        assert_eq!(accepted, 1);
    }
}

#[test]
fn host_names_follow_openssh() {
    assert_eq!(
        KnownHosts::host_name("Backup.Example", 22),
        "backup.example"
    );
    assert_eq!(KnownHosts::host_name("10.0.0.5", 2222), "[10.0.0.5]:2222");
    assert_eq!(KnownHosts::host_name("::1", 2222), "[::1]:2222");
}

#[test]
fn patterns_wildcards_and_negation() {
    let host = "[10.0.0.5]:2222";
    assert!(names("[10.0.0.5]:2222", host));
    assert!(names("other,[10.0.0.5]:2222", host));
    assert!(names("[10.0.0.*]:2222", host));
    assert!(names("[10.0.0.?]:2222", host));
    assert!(names("*", host));
    assert!(!names("*,![10.0.0.5]:2222", host));
    assert!(!names("10.0.0.5", host));
    assert!(!names("[10.0.0.5]:22", host));
    assert!(!names("[10.0.0.5]:22222", host));
    assert!(names("BACKUP.example", "backup.example"));
}

#[test]
fn hashed_names_as_ssh_keygen_writes_them() {
    // `ssh-keygen -H` of a line for [127.0.0.1]:2222, with this salt.
    let salt = [7u8; 20];
    let mut mac = Hmac::<Sha1>::new_from_slice(&salt).unwrap();
    mac.update(b"[127.0.0.1]:2222");
    let hash = mac.finalize().into_bytes();
    let field = format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(hash));
    assert!(names(&field, "[127.0.0.1]:2222"));
    assert!(!names(&field, "[127.0.0.1]:2223"));
    assert!(!names("|1|not base64|x", "[127.0.0.1]:2222"));
}
