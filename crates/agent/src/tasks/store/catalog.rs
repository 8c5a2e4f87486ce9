//! The catalog table: what this agent has seen in each destination (one row per manifest
//! key), so that lists, downloads, restores and prunes pick backups without listing the
//! store, and refreshes read only what is new.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension as _, params};
use service_backup_core::Result;
use service_backup_core::catalog::BackupEntry;
use service_backup_core::catalog::refresh::{Found, Refreshed};
use service_backup_core::layout;
use service_backup_core::manifest::Manifest;

use super::{Store, db_error};

/// When a destination's catalog was last refreshed, and last listed whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshes {
    /// The start of the last refresh that succeeded.
    pub refreshed_at: DateTime<Utc>,
    /// The start of the last full refresh that succeeded.
    pub full_at: Option<DateTime<Utc>>,
}

/// How many backups a destination's catalog holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Read, with their archives.
    pub sound: u64,
    /// Unreadable or without their archives.
    pub damaged: u64,
    /// Listed, not read yet.
    pub unread: u64,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Store {
    /// The manifest keys of `destination` from `first` to `last` (both included) already
    /// read (sound or damaged) that a refresh need not read again. With `reread_of` (a full
    /// refresh), the damaged ones and the sound ones of that instance are read again, so
    /// that a backup repaired in the store comes back and a manifest rewritten since is
    /// taken as it is now.
    pub fn catalog_read_between(
        &self,
        destination: &str,
        first: &str,
        last: &str,
        reread_of: Option<&str>,
    ) -> Result<HashSet<String>> {
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT manifest_key FROM catalog WHERE destination = ?1
                 AND manifest_key >= ?2 AND manifest_key <= ?3 AND state != 'unread'
                 AND (?4 IS NULL OR (state = 'sound' AND instance_id IS NOT ?4))",
            )
            .map_err(db)?;
        let keys = stmt
            .query_map(params![destination, first, last, reread_of], |r| {
                r.get::<_, String>(0)
            })
            .map_err(db)?
            .collect::<rusqlite::Result<HashSet<String>>>()
            .map_err(db)?;
        Ok(keys)
    }

    /// When `destination` was last refreshed, if ever.
    pub fn catalog_refreshes(&self, destination: &str) -> Result<Option<Refreshes>> {
        let row: Option<(String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT refreshed_at, full_at FROM catalog_refreshes WHERE destination = ?1",
                params![destination],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(row.and_then(|(at, full)| {
            Some(Refreshes {
                refreshed_at: parse_stamp(&at)?,
                full_at: full.as_deref().and_then(parse_stamp),
            })
        }))
    }

    /// When a prune last looked at the leftovers of `destination` and left none it could
    /// remove, if ever.
    pub fn catalog_leftovers_at(&self, destination: &str) -> Result<Option<DateTime<Utc>>> {
        let at: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT leftovers_at FROM catalog_refreshes WHERE destination = ?1",
                params![destination],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(at.flatten().as_deref().and_then(parse_stamp))
    }

    /// Records that a prune looked at the leftovers of `destination` at `at` and left none
    /// it could remove (the destination has been refreshed: its row exists).
    pub fn catalog_leftovers_checked(&self, destination: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE catalog_refreshes SET leftovers_at = ?2 WHERE destination = ?1",
                params![destination, stamp(at)],
            )
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(())
    }

    /// Whether the catalog of `destination` holds manifests of `instance` listed and not
    /// read (a refresh for another instance sharing this database left them).
    pub fn catalog_unread_of(&self, destination: &str, instance: &str) -> Result<bool> {
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let part = format!("-{}-", layout::instance_part(instance));
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name FROM catalog WHERE destination = ?1 AND state = 'unread'
                 AND instr(name, ?2) > 0",
            )
            .map_err(db)?;
        let mut rows = stmt.query(params![destination, part]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let name: String = row.get(0).map_err(db)?;
            if layout::name_is_of_instance(&name, instance) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records this instance's sound backups in the catalogs `destinations` that no task
    /// made as `done` backup tasks with trigger `discovered` (oldest first, so that ids grow
    /// with time; as [`Store::backup_id_for`] does one by one), and returns when the oldest
    /// of those catalogs was refreshed (`None` if one never was): one transaction, one
    /// statement for the backups, whatever their number.
    pub fn catalog_discover(
        &self,
        destinations: &[String],
        instance: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let tx = self.conn.unchecked_transaction().map_err(db)?;
        let mut oldest: Option<Option<DateTime<Utc>>> = None;
        {
            let mut stmt = tx
                .prepare("SELECT refreshed_at FROM catalog_refreshes WHERE destination = ?1")
                .map_err(db)?;
            for destination in destinations {
                let at: Option<String> = stmt
                    .query_row(params![destination], |r| r.get(0))
                    .optional()
                    .map_err(db)?;
                let at = at.as_deref().and_then(parse_stamp);
                oldest = Some(match oldest {
                    None => at,
                    Some(prev) => prev.zip(at).map(|(a, b)| a.min(b)),
                });
            }
        }
        let keys = serde_json::to_string(destinations).unwrap_or_else(|_| "[]".into());
        // Times as the tasks table writes them (RFC 3339, milliseconds, Z); sizes beyond
        // SQLite's integers clamped.
        tx.prepare(
            "INSERT INTO tasks (kind, state, trigger, backup_name, created_at, updated_at,
                started_at, finished_at, size_in_bytes, stored_bytes)
             SELECT 'backup', 'done', 'discovered', name, started, finished, started, finished,
                plain, stored
             FROM (
                SELECT c.name AS name,
                    strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(c.manifest, '$.started_at')) AS started,
                    strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(c.manifest, '$.finished_at')) AS finished,
                    CAST(MIN(json_extract(c.manifest, '$.plain_bytes'), 9223372036854775807) AS INTEGER) AS plain,
                    CAST(MIN(json_extract(c.manifest, '$.stored_bytes'), 9223372036854775807) AS INTEGER) AS stored
                FROM catalog c
                WHERE c.destination IN (SELECT value FROM json_each(?1))
                    AND c.state = 'sound' AND c.instance_id = ?2
                    AND json_valid(c.manifest)
                    AND NOT EXISTS (SELECT 1 FROM tasks t
                        WHERE t.kind = 'backup' AND t.backup_name = c.name)
                GROUP BY c.name
             )
             WHERE started IS NOT NULL AND finished IS NOT NULL
             ORDER BY started, name",
        )
        .and_then(|mut stmt| stmt.execute(params![keys, instance]))
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(oldest.flatten())
    }

    /// Records part of what the refresh `generation` of `destination` found (some folders),
    /// in one transaction: the rows listed are marked seen by it.
    pub fn catalog_write_batch(
        &self,
        destination: &str,
        found: &Refreshed,
        generation: i64,
    ) -> Result<()> {
        self.write(destination, found, Some(generation))
    }

    /// Ends the refresh `generation` of `destination`, started at `started`: drops the rows
    /// of the range it listed (everything, or the keys after `listed_after`) that it did not
    /// see (rows written since it started are kept: another refresh, or a new backup, wrote
    /// them), and records when it ran.
    pub fn catalog_finish(
        &self,
        destination: &str,
        listed_after: Option<&str>,
        generation: i64,
        started: DateTime<Utc>,
    ) -> Result<()> {
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let tx = self.conn.unchecked_transaction().map_err(db)?;
        tx.execute(
            "DELETE FROM catalog WHERE destination = ?1 AND manifest_key > ?2
             AND (seen_in IS NULL OR seen_in != ?3) AND last_seen < ?4",
            params![
                destination,
                listed_after.unwrap_or(""),
                generation,
                stamp(started)
            ],
        )
        .map_err(db)?;
        let full = listed_after.is_none().then(|| stamp(started));
        tx.execute(
            "INSERT INTO catalog_refreshes (destination, refreshed_at, full_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (destination) DO UPDATE SET refreshed_at = ?2,
                full_at = COALESCE(?3, catalog_refreshes.full_at)",
            params![destination, stamp(started), full],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    /// Writes what `found` found; with `generation` (a refresh's), also marks the rows
    /// listed as seen by it.
    fn write(&self, destination: &str, found: &Refreshed, generation: Option<i64>) -> Result<()> {
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let tx = self.conn.unchecked_transaction().map_err(db)?;
        let seen = stamp(Utc::now());
        if let Some(generation) = generation {
            let mut touch = tx
                .prepare(
                    "UPDATE catalog SET last_seen = ?3, seen_in = ?4
                     WHERE destination = ?1 AND manifest_key = ?2",
                )
                .map_err(db)?;
            for key in &found.present {
                touch
                    .execute(params![destination, key, seen, generation])
                    .map_err(db)?;
            }
        }
        {
            let mut lost = tx
                .prepare(
                    "UPDATE catalog SET state = 'damaged', problem = 'its archive is missing', last_seen = ?3
                     WHERE destination = ?1 AND manifest_key = ?2",
                )
                .map_err(db)?;
            for key in &found.lost_archive {
                lost.execute(params![destination, key, seen]).map_err(db)?;
            }
            let mut upsert = tx
                .prepare(
                    "INSERT OR REPLACE INTO catalog (destination, manifest_key, name, state, instance_id,
                        started_at, archive_key, archive_size, manifest, problem, last_seen, seen_in)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(db)?;
            // Listed, not read (or not readable now): a row read before keeps what was read,
            // so that a store failing a read again never hides a backup it knew.
            let mut unread = tx
                .prepare(
                    "INSERT INTO catalog (destination, manifest_key, name, state, last_seen, seen_in)
                     VALUES (?1, ?2, ?3, 'unread', ?4, ?5)
                     ON CONFLICT (destination, manifest_key) DO UPDATE SET
                        last_seen = excluded.last_seen, seen_in = excluded.seen_in",
                )
                .map_err(db)?;
            for listed in &found.changed {
                let (state, entry, problem) = match &listed.found {
                    Found::Sound(entry) => ("sound", Some(&**entry), None),
                    Found::Damaged { problem } => ("damaged", None, Some(problem.as_str())),
                    Found::Unread => {
                        unread
                            .execute(params![
                                destination,
                                listed.manifest_key,
                                listed.name,
                                seen,
                                generation
                            ])
                            .map_err(db)?;
                        continue;
                    }
                };
                upsert
                    .execute(params![
                        destination,
                        listed.manifest_key,
                        listed.name,
                        state,
                        entry.map(|e| e.manifest.instance_id.as_str()),
                        entry.map(|e| stamp(e.manifest.started_at)),
                        entry.map(|e| e.archive_key.as_str()),
                        entry.map(|e| i64::try_from(e.archive_size).unwrap_or(i64::MAX)),
                        entry.map(|e| String::from_utf8_lossy(&e.manifest.to_json()).into_owned()),
                        problem,
                        seen,
                        generation,
                    ])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// Records a backup this agent just stored in `destination`.
    pub fn catalog_add(&self, destination: &str, entry: &BackupEntry) -> Result<()> {
        let refreshed = Refreshed {
            changed: vec![service_backup_core::catalog::refresh::Listed {
                manifest_key: entry.manifest_key.clone(),
                name: entry.manifest.name.clone(),
                found: Found::Sound(Box::new(entry.clone())),
            }],
            ..Refreshed::default()
        };
        // Only the row: the destination's refresh times stay those of its last refresh.
        self.write(destination, &refreshed, None)
    }

    /// Forgets the backup whose manifest is `manifest_key` in `destination` (deleted).
    pub fn catalog_remove(&self, destination: &str, manifest_key: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM catalog WHERE destination = ?1 AND manifest_key = ?2",
                params![destination, manifest_key],
            )
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(())
    }

    /// The sound backups of `destination` (of `instance` only, when given), newest first.
    pub fn catalog_entries(
        &self,
        destination: &str,
        instance: Option<&str>,
    ) -> Result<Vec<BackupEntry>> {
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT manifest_key, archive_key, archive_size, manifest FROM catalog
                 WHERE destination = ?1 AND state = 'sound' AND (?2 IS NULL OR instance_id = ?2)
                 ORDER BY started_at DESC, name DESC",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![destination, instance], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (manifest_key, archive_key, size, json) = row.map_err(db)?;
            // A row this agent wrote parses; one that does not is left out, as a damaged
            // manifest is, until the next full refresh reads it again.
            let Ok(manifest) = Manifest::from_json(json.as_bytes()) else {
                continue;
            };
            out.push(BackupEntry {
                manifest,
                manifest_key,
                archive_key,
                archive_size: u64::try_from(size).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Hands `each` every sound backup of the catalogs `destinations` (of `instance` only,
    /// when given), newest first across them, a backup held by several in the order given,
    /// with the index of its destination: one row at a time, so that a list of a whole
    /// fleet is never held. The rows stop when `each` returns `false`.
    pub fn catalog_each(
        &self,
        destinations: &[String],
        instance: Option<&str>,
        mut each: impl FnMut(usize, BackupEntry) -> bool,
    ) -> Result<()> {
        if destinations.is_empty() {
            return Ok(());
        }
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let values: Vec<String> = (0..destinations.len())
            .map(|i| format!("(?{}, {i})", i + 2))
            .collect();
        let sql = format!(
            "WITH d(destination, ord) AS (VALUES {})
             SELECT d.ord, c.manifest_key, c.archive_key, c.archive_size, c.manifest
             FROM catalog c JOIN d ON c.destination = d.destination
             WHERE c.state = 'sound' AND (?1 IS NULL OR c.instance_id = ?1)
             ORDER BY c.started_at DESC, c.name DESC, d.ord",
            values.join(", ")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(db)?;
        let params = std::iter::once(&instance as &dyn rusqlite::ToSql)
            .chain(destinations.iter().map(|d| d as &dyn rusqlite::ToSql));
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let ord: i64 = row.get(0).map_err(db)?;
            let json: String = row.get(4).map_err(db)?;
            // A row that does not parse is left out, as in `catalog_entries`.
            let Ok(manifest) = Manifest::from_json(json.as_bytes()) else {
                continue;
            };
            let size: i64 = row.get(3).map_err(db)?;
            let entry = BackupEntry {
                manifest,
                manifest_key: row.get(1).map_err(db)?,
                archive_key: row.get(2).map_err(db)?,
                archive_size: u64::try_from(size).unwrap_or(0),
            };
            if !each(usize::try_from(ord).unwrap_or(0), entry) {
                break;
            }
        }
        Ok(())
    }

    /// The sound backup `name` of `destination`, if the catalog holds it.
    pub fn catalog_entry(&self, destination: &str, name: &str) -> Result<Option<BackupEntry>> {
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let row: Option<(String, String, i64, String)> = self
            .conn
            .query_row(
                "SELECT manifest_key, archive_key, archive_size, manifest FROM catalog
                 WHERE destination = ?1 AND name = ?2 AND state = 'sound'",
                params![destination, name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(db)?;
        Ok(row.and_then(|(manifest_key, archive_key, size, json)| {
            Some(BackupEntry {
                manifest: Manifest::from_json(json.as_bytes()).ok()?,
                manifest_key,
                archive_key,
                archive_size: u64::try_from(size).unwrap_or(0),
            })
        }))
    }

    /// The manifest key of backup `name` in `destination` when the catalog listed it and
    /// found it neither damaged nor gone, read or not (another instance's is listed, not read).
    pub fn catalog_key_of(&self, destination: &str, name: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT manifest_key FROM catalog
                 WHERE destination = ?1 AND name = ?2 AND state != 'damaged'
                 ORDER BY manifest_key LIMIT 1",
                params![destination, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error(&self.path, &e))
    }

    /// How many backups of instances other than `instance` the catalog of `destination`
    /// holds (read or not).
    pub fn catalog_others(&self, destination: &str, instance: &str) -> Result<usize> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM catalog WHERE destination = ?1 AND state != 'damaged'
                 AND (instance_id IS NULL OR instance_id != ?2)",
                params![destination, instance],
                |r| r.get(0),
            )
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// How many backups the catalog of `destination` holds, by state.
    pub fn catalog_counts(&self, destination: &str) -> Result<Counts> {
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let mut stmt = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM catalog WHERE destination = ?1 GROUP BY state")
            .map_err(db)?;
        let mut counts = Counts::default();
        for row in stmt
            .query_map(params![destination], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(db)?
        {
            let (state, n) = row.map_err(db)?;
            let n = u64::try_from(n).unwrap_or(0);
            match state.as_str() {
                "sound" => counts.sound = n,
                "damaged" => counts.damaged = n,
                _ => counts.unread = n,
            }
        }
        Ok(counts)
    }

    /// Makes every catalog's refresh times (the last and the last full) `by` older, as if that much time had passed.
    #[cfg(test)]
    pub fn catalog_age_for_tests(&self, by: std::time::Duration) -> Result<()> {
        let by = chrono::Duration::from_std(by).unwrap_or_default();
        let db = |e: rusqlite::Error| db_error(&self.path, &e);
        let rows: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT destination, refreshed_at FROM catalog_refreshes")
                .map_err(db)?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?
        };
        for (dest, at) in rows {
            let Some(at) = parse_stamp(&at) else { continue };
            self.conn
                .execute(
                    "UPDATE catalog_refreshes SET refreshed_at = ?2, full_at = ?2 WHERE destination = ?1",
                    params![dest, stamp(at - by)],
                )
                .map_err(db)?;
        }
        Ok(())
    }
}
