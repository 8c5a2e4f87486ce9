//! `service-backup demo`: the quick start. Backs up a sample folder to a `local`
//! destination with the embedded default configuration, lists, verifies and restores it,
//! and compares the restored folder with the original.

use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use service_backup_core::catalog::{Selector, select};
use service_backup_core::format::Key;
use service_backup_core::ops::restore::{Decryption, RestoreInto, restore_backup};
use service_backup_core::progress::NoProgress;
use service_backup_core::{Error, ErrorKind};

use crate::command::{CliResult, Outcome, load_config, runtime};
use crate::context::RunContext;
use crate::destinations;
use crate::jobs::backup;
use crate::progress::{Bar, units};

/// The embedded default configuration; `DEMO_DIR` is replaced by the demo folder.
const DEMO_CONFIG: &str = include_str!("demo.yml");

/// Runs the quick start in `dir`.
pub fn run(dir: &Path) -> CliResult {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::io("resolve", dir, e))?;
    let source = dir.join("source");
    if !source.exists() {
        write_sample(&source)?;
    }
    let key_file = dir.join("backup.key");
    if !key_file.exists() {
        let key = Key::generate()?;
        write_private(&key_file, &format!("{}\n", key.to_base64().as_str()))?;
    }
    let config_file = dir.join("config.yml");
    let text = DEMO_CONFIG.replace("DEMO_DIR", &dir.display().to_string());
    std::fs::write(&config_file, text).map_err(|e| Error::io("write", &config_file, e))?;
    let restored = dir.join("restored");
    if restored.exists() {
        std::fs::remove_dir_all(&restored).map_err(|e| Error::io("remove", &restored, e))?;
    }

    println!("1. configuration  {}", config_file.display());
    let config = load_config(&config_file)?;
    let rt = runtime()?;
    let report = rt.block_on(async {
        let ctx = RunContext::open(&config).await?;
        backup::run(&config, &ctx, "manual", None, Bar::new("backup")).await
    })?;
    if !report.succeeded() {
        for p in &report.problems {
            eprintln!("error: {}", crate::escape::escape_controls(p));
        }
        return Ok(Outcome::Failed);
    }
    let mut listings = destinations::backups(&config, None)?;
    let (dest, entries) = rt.block_on(listings.next()).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "the demo configuration has no destination",
        )
    })??;
    let entry = select(&entries, &Selector::Latest)?.clone();
    let m = &entry.manifest;
    println!(
        "2. backed up      {} ({} files, {} → {} stored, key id {})",
        source.display(),
        m.file_count,
        units::bytes(m.plain_bytes),
        units::bytes(m.stored_bytes),
        m.encryption.as_ref().map_or("none", |e| e.key_id.as_str())
    );
    println!(
        "   stored as      {}",
        dir.join("backups").join(&entry.archive_key).display()
    );
    println!(
        "3. listed         {} complete backup(s) in {}",
        entries.len(),
        dest.name
    );
    let decryption = Decryption::new(config.keyring.clone());
    rt.block_on(restore_backup(
        dest.destination.clone(),
        &entry,
        &decryption,
        &RestoreInto::CheckOnly,
        std::sync::Arc::new(NoProgress),
    ))?;
    println!("4. verified       checksum, every chunk's tag, gzip and tar structure");
    let stats = rt.block_on(restore_backup(
        dest.destination.clone(),
        &entry,
        &decryption,
        &RestoreInto::Dir {
            path: restored.clone(),
            replace: false,
        },
        std::sync::Arc::new(NoProgress),
    ))?;
    println!(
        "5. restored       {} entries into {}",
        stats.extracted.entries,
        restored.display()
    );
    let differences = compare(&source, &restored)?;
    if differences.is_empty() {
        println!("6. compared       restored folder is identical to the source");
        Ok(Outcome::Success)
    } else {
        for d in differences {
            eprintln!("error: restored folder differs: {d}");
        }
        Ok(Outcome::Failed)
    }
}

fn write_sample(source: &Path) -> Result<(), Error> {
    let files: [(&str, String); 4] = [
        (
            "dump.sql",
            "INSERT INTO orders VALUES (1, 'demo', 42.0);\n".repeat(50_000),
        ),
        (
            "meta/instance.json",
            "{\"service\": \"demo\", \"version\": 1}\n".to_string(),
        ),
        (
            "meta/README",
            "A sample dump folder made by `service-backup demo`.\n".to_string(),
        ),
        ("logs/empty.log", String::new()),
    ];
    for (name, content) in files {
        let path = source.join(name);
        let parent = path.parent().expect("has a parent");
        std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
        std::fs::write(&path, content).map_err(|e| Error::io("write", &path, e))?;
    }
    let link = source.join("latest.sql");
    std::os::unix::fs::symlink("dump.sql", &link).map_err(|e| Error::io("create symlink", &link, e))
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io("write", path, e))
}

/// Differences between two trees: missing, extra or different entries.
fn compare(a: &Path, b: &Path) -> Result<Vec<String>, Error> {
    let (la, lb) = (tree(a, a)?, tree(b, b)?);
    let mut out = Vec::new();
    for (path, content) in &la {
        match lb.iter().find(|(p, _)| p == path) {
            None => out.push(format!("{} is missing", path.display())),
            Some((_, other)) if other != content => out.push(format!("{} differs", path.display())),
            Some(_) => {}
        }
    }
    for (path, _) in &lb {
        if !la.iter().any(|(p, _)| p == path) {
            out.push(format!("{} is extra", path.display()));
        }
    }
    if out.is_empty() && la.is_empty() {
        return Err(Error::new(ErrorKind::Io, "the sample folder is empty"));
    }
    Ok(out)
}

fn tree(root: &Path, dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, Error> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))? {
        let path = entry.map_err(|e| Error::io("read", dir, e))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        let rel = path
            .strip_prefix(root)
            .expect("below the root")
            .to_path_buf();
        if meta.is_dir() {
            out.extend(tree(root, &path)?);
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| Error::io("read link", &path, e))?;
            out.push((rel, target.display().to_string().into_bytes()));
        } else {
            out.push((
                rel,
                std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?,
            ));
        }
    }
    Ok(out)
}
