//! Remote paths: `[path/][deployment/]YYYY/MM/DD/<backup>.{tar.gz.enc,tar.gz,json}`, or
//! `.tar.zst.enc` and `.tar.zst` for zstd archives; and the small probe objects of
//! `service-backup check`, `[path/][deployment/]service-backup-check-<time>-probe-<hex>.probe`.

use chrono::{DateTime, Datelike as _, NaiveDate, NaiveDateTime, Utc};

use crate::compression::Algorithm;
use crate::error::Result;

/// Ending of an encrypted archive object, after that of its plain form.
pub const ENCRYPTION_EXT: &str = ".enc";
/// Every ending an archive object may have.
pub const ARCHIVE_EXTS: [&str; 4] = [".tar.gz.enc", ".tar.gz", ".tar.zst.enc", ".tar.zst"];
/// Ending of a manifest object.
pub const MANIFEST_EXT: &str = ".json";
/// How the name of a `check` probe object starts.
pub const PROBE_STEM: &str = "service-backup-check-";
/// Ending of a `check` probe object: neither an archive's nor a manifest's, so that no
/// listing, retention or prune (nor its clean-up of interrupted uploads) takes a probe
/// for a backup.
pub const PROBE_EXT: &str = ".probe";

/// Where the backups of one agent configuration live in a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    base: String,
}

impl Layout {
    /// The layout under `path` (the bucket path, container path or directory), with the
    /// deployment name as a further level when given.
    pub fn new(path: &str, deployment: Option<&str>) -> Self {
        let parts: Vec<&str> = path
            .split('/')
            .chain(deployment.into_iter().flat_map(|d| d.split('/')))
            // `..` has no meaning in an object key and would escape a local destination.
            .filter(|p| !p.is_empty() && *p != "." && *p != "..")
            .collect();
        Self {
            base: parts.join("/"),
        }
    }

    /// The prefix every key of this layout starts with (empty, or ending in `/`).
    pub fn prefix(&self) -> String {
        if self.base.is_empty() {
            String::new()
        } else {
            format!("{}/", self.base)
        }
    }

    /// The directory of one day's backups, ending in `/`.
    pub fn day_prefix(&self, date: NaiveDate) -> String {
        format!(
            "{}{:04}/{:02}/{:02}/",
            self.prefix(),
            date.year(),
            date.month(),
            date.day()
        )
    }

    /// The key of a backup's archive.
    pub fn archive_key(
        &self,
        date: NaiveDate,
        name: &str,
        compression: Algorithm,
        encrypted: bool,
    ) -> String {
        let ext = archive_ext(compression, encrypted);
        format!("{}{name}{ext}", self.day_prefix(date))
    }

    /// The key of a backup's manifest.
    pub fn manifest_key(&self, date: NaiveDate, name: &str) -> String {
        format!("{}{name}{MANIFEST_EXT}", self.day_prefix(date))
    }

    /// The backup name of a manifest key of this layout, or `None` for any other key.
    pub fn parse_manifest_key(&self, key: &str) -> Option<String> {
        self.parse_key(key, &[MANIFEST_EXT])
    }

    /// The backup name of an archive key of this layout, or `None` for any other key.
    pub fn parse_archive_key(&self, key: &str) -> Option<String> {
        self.parse_key(key, &ARCHIVE_EXTS)
    }

    fn parse_key(&self, key: &str, endings: &[&str]) -> Option<String> {
        let rest = key.strip_prefix(&self.prefix())?;
        let mut parts = rest.split('/');
        let (y, m, d, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let date_ok = y.len() == 4 && m.len() == 2 && d.len() == 2;
        let date = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        let name = endings.iter().find_map(|e| file.strip_suffix(e))?;
        (date_ok && date.is_some() && is_backup_name(name)).then(|| name.to_string())
    }

    /// The key of a new `check` probe: `[path/][deployment/]service-backup-check-<time>-<token>.probe`,
    /// beside the day folders rather than in one, where only backups live.
    pub fn probe_key(&self, started: DateTime<Utc>) -> Result<String> {
        Ok(format!(
            "{}{}{}",
            self.probe_stem(),
            backup_name(started, "probe")?,
            PROBE_EXT
        ))
    }

    /// The prefix every probe key of this layout starts with.
    pub fn probe_stem(&self) -> String {
        format!("{}{PROBE_STEM}", self.prefix())
    }

    /// When the probe `key` of this layout was written, or `None` for any other key.
    pub fn probe_time(&self, key: &str) -> Option<DateTime<Utc>> {
        let name = key
            .strip_prefix(&self.probe_stem())?
            .strip_suffix(PROBE_EXT)?;
        let stamp = NaiveDateTime::parse_from_str(name.get(..16)?, "%Y%m%dT%H%M%SZ").ok()?;
        name_is_of_instance(name, "probe").then(|| stamp.and_utc())
    }

    /// The key of a sibling object (the archive) named in a manifest at `manifest_key`.
    pub fn sibling(manifest_key: &str, file_name: &str) -> String {
        match manifest_key.rfind('/') {
            Some(i) => format!("{}{file_name}", &manifest_key[..=i]),
            None => file_name.to_string(),
        }
    }
}

/// The ending of an archive's name: `.tar.gz.enc`, `.tar.gz`, `.tar.zst.enc` or `.tar.zst`.
pub fn archive_ext(compression: Algorithm, encrypted: bool) -> String {
    let tar = compression.tar_ext();
    if encrypted {
        format!("{tar}{ENCRYPTION_EXT}")
    } else {
        tar.to_string()
    }
}

/// A new backup name: sortable by time, unique across agents writing one prefix,
/// e.g. `20261122T031500Z-redis-0-3f9a1c2e`.
pub fn backup_name(started: DateTime<Utc>, instance_id: &str) -> Result<String> {
    Ok(format!(
        "{}-{}-{}",
        started.format("%Y%m%dT%H%M%SZ"),
        instance_part(instance_id),
        crate::random::hex_token(4)?
    ))
}

/// Whether the backup `name` was made by `instance_id`, judging by the name alone (for
/// objects without a manifest).
pub fn name_is_of_instance(name: &str, instance_id: &str) -> bool {
    let part = instance_part(instance_id);
    let Some(rest) = name.get(17..) else {
        return false;
    };
    let Some((middle, random)) = rest.rsplit_once('-') else {
        return false;
    };
    name.as_bytes().get(16) == Some(&b'-')
        && middle == part
        && random.len() == 8
        && random.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An instance id as it appears in backup names.
pub fn instance_part(instance_id: &str) -> String {
    let instance: String = instance_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if instance.is_empty() {
        "agent".to_string()
    } else {
        instance
    }
}

/// Whether `name` is a plausible backup name (no path separators, not hidden).
pub fn is_backup_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn keys_follow_the_documented_layout() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let with = Layout::new("/redis/prod/", Some("redis-deploy"));
        let bare = Layout::new("", None);
        for (layout, compression, encrypted, key) in [
            (
                &with,
                Algorithm::Gzip,
                true,
                "redis/prod/redis-deploy/2026/11/02/n.tar.gz.enc",
            ),
            (
                &with,
                Algorithm::Zstd,
                true,
                "redis/prod/redis-deploy/2026/11/02/n.tar.zst.enc",
            ),
            (&bare, Algorithm::Gzip, false, "2026/11/02/n.tar.gz"),
            (&bare, Algorithm::Zstd, false, "2026/11/02/n.tar.zst"),
        ] {
            assert_eq!(layout.archive_key(day, "n", compression, encrypted), key);
            assert_eq!(layout.parse_archive_key(key), Some("n".into()), "{key}");
        }
        assert_eq!(
            with.manifest_key(day, "n"),
            "redis/prod/redis-deploy/2026/11/02/n.json"
        );
        assert_eq!(Layout::new("../a/./b/..", None).prefix(), "a/b/");
        assert_eq!(bare.prefix(), "");
    }

    #[test]
    fn manifest_keys_parse_back_and_others_do_not() {
        let layout = Layout::new("p", None);
        let day = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        assert_eq!(
            layout.parse_manifest_key(&layout.manifest_key(day, "abc-1")),
            Some("abc-1".into())
        );
        for other in [
            "p/2026/01/31/abc.tar.gz.enc",
            "p/2026/1/31/abc.json",
            "q/2026/01/31/abc.json",
            "p/2026/02/30/abc.json",
            "p/2026/01/31/x/abc.json",
            "p/2026/01/31/.abc.json",
        ] {
            assert_eq!(layout.parse_manifest_key(other), None, "{other}");
        }
    }

    #[test]
    fn probes_are_neither_archives_nor_manifests_nor_leftovers_of_a_backup() {
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 1, 2, 3).unwrap();
        for layout in [Layout::new("redis/prod", Some("d")), Layout::new("", None)] {
            let key = layout.probe_key(at).unwrap();
            assert!(key.starts_with(&layout.prefix()), "{key}");
            assert!(
                key.starts_with(&format!(
                    "{}service-backup-check-20261206T010203Z-probe-",
                    layout.prefix()
                )),
                "{key}"
            );
            assert!(key.ends_with(".probe"), "{key}");
            assert_eq!(layout.parse_manifest_key(&key), None, "{key}");
            assert_eq!(layout.parse_archive_key(&key), None, "{key}");
            // Prune takes the name of an incomplete upload from these endings alone.
            assert!(
                !ARCHIVE_EXTS
                    .iter()
                    .chain([&MANIFEST_EXT])
                    .any(|e| key.ends_with(e)),
                "{key}"
            );
            assert_eq!(layout.probe_time(&key), Some(at));
            assert_ne!(key, layout.probe_key(at).unwrap());
        }
        let layout = Layout::new("p", None);
        for other in [
            "p/2026/12/06/20261206T010203Z-probe-0badcafe.json",
            "p/service-backup-check-20261206T010203Z-probe-0badcafe.json",
            "q/service-backup-check-20261206T010203Z-probe-0badcafe.probe",
            "p/service-backup-check-notatime-probe-0badcafe.probe",
        ] {
            assert_eq!(layout.probe_time(other), None, "{other}");
        }
    }

    #[test]
    fn names_sort_by_time_and_are_safe() {
        let t1 = Utc.with_ymd_and_hms(2026, 11, 22, 3, 15, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 11, 22, 3, 15, 1).unwrap();
        let a = backup_name(t1, "redis/0 main").unwrap();
        let b = backup_name(t2, "redis/0 main").unwrap();
        assert!(a.starts_with("20261122T031500Z-redis-0-main-"), "{a}");
        assert!(a < b);
        assert!(is_backup_name(&a));
        assert_ne!(a, backup_name(t1, "redis/0 main").unwrap());
        assert!(name_is_of_instance(&a, "redis/0 main"));
        assert!(name_is_of_instance(&a, "redis-0-main"));
        assert!(!name_is_of_instance(&a, "redis/0"));
        assert!(!name_is_of_instance(&a, "main"));
        assert!(!name_is_of_instance("x", "main"));
        let layout = Layout::new("p", None);
        let day = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        for encrypted in [true, false] {
            let key = layout.archive_key(day, &a, Algorithm::Gzip, encrypted);
            assert_eq!(layout.parse_archive_key(&key), Some(a.clone()));
            assert_eq!(layout.parse_manifest_key(&key), None);
        }
    }
}
