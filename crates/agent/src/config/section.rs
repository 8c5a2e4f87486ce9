//! Reading a loose YAML mapping key by key, collecting problems instead of stopping; a
//! key the section does not know is one of them.
//!
//! Messages name the key and the kind of value found, and quote a value only where the
//! caller asks for it; a secret's value is never quoted.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use service_backup_core::secret::Secret;

/// Problems found so far, each a bare sentence without the `Invalid config - ` prefix.
pub(super) type Problems = Vec<String>;

/// The kind of a YAML value, in words, for messages.
pub(super) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(tagged) => kind_of(&tagged.value),
    }
}

/// The value without its YAML tag, if any.
pub(super) fn untagged(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => untagged(&tagged.value),
        other => other,
    }
}

/// The text of a scalar (strings, numbers, booleans), or `None` for collections and null.
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match untagged(value) {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A mapping being read. Messages about a key start with `label` (`s3 destination 1: `),
/// then the key's place below the label (`api.tls.`); an unknown key is named by its full
/// path from the top (`destinations[0].config.`).
pub(super) struct Section<'a> {
    map: Option<&'a Mapping>,
    label: String,
    rel: String,
    path: String,
    known: &'static [&'static str],
}

impl<'a> Section<'a> {
    /// A section over `map` (an absent section reads as empty), its messages starting with
    /// `label`.
    pub(super) fn new(map: Option<&'a Mapping>, label: impl Into<String>) -> Self {
        Self {
            map,
            label: label.into(),
            rel: String::new(),
            path: String::new(),
            known: &[],
        }
    }

    /// The same section, found at `path` (such as `destinations[0].config.`) from the top.
    pub(super) fn at(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The same section knowing `keys`: each other key of the mapping is a problem. Every
    /// reader declares its keys this way before reading any.
    pub(super) fn known(mut self, keys: &'static [&'static str], problems: &mut Problems) -> Self {
        if let Some(map) = self.map {
            check_mapping(
                map,
                keys,
                &self.label,
                &format!("{}{}", self.path, self.rel),
                problems,
            );
        }
        self.known = keys;
        self
    }

    /// The key as it appears in messages.
    pub(super) fn name(&self, key: &str) -> String {
        format!("{}{}{key}", self.label, self.rel)
    }

    /// The value of `key`, or `None` when absent or null.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        debug_assert!(
            self.known.contains(&key),
            "{key} is read in {:?} but is not among its known keys",
            self.rel
        );
        let value = untagged(self.map?.get(key)?);
        (!value.is_null()).then_some(value)
    }

    /// Whether `key` is present at all, even empty.
    pub(super) fn has(&self, key: &str) -> bool {
        debug_assert!(self.known.contains(&key), "{key} is not a known key");
        self.map.is_some_and(|m| m.get(key).is_some())
    }

    /// A text value; empty text counts as absent. Collections are a problem.
    pub(super) fn text(&self, key: &str, problems: &mut Problems) -> Option<String> {
        let value = self.get(key)?;
        match scalar_text(value) {
            Some(text) if text.trim().is_empty() => None,
            Some(text) => Some(text),
            None => {
                problems.push(format!(
                    "{} must be a string, not {}",
                    self.name(key),
                    kind_of(value)
                ));
                None
            }
        }
    }

    /// A secret value; messages about it never quote it.
    pub(super) fn secret(&self, key: &str, problems: &mut Problems) -> Option<Secret> {
        self.text(key, problems).map(Secret::new)
    }

    /// A path value, as written.
    pub(super) fn path(&self, key: &str, problems: &mut Problems) -> Option<PathBuf> {
        self.text(key, problems).map(PathBuf::from)
    }

    /// A path of a file read at start-up, resolved against `base` when relative.
    pub(super) fn file(
        &self,
        key: &str,
        base: Option<&Path>,
        problems: &mut Problems,
    ) -> Option<PathBuf> {
        self.path(key, problems).map(|p| resolve(base, p))
    }

    /// A boolean; YAML 1.1 words (`yes`, `on`…) are accepted as the original's parser did.
    pub(super) fn flag(&self, key: &str, default: bool, problems: &mut Problems) -> bool {
        let Some(value) = self.get(key) else {
            return default;
        };
        if let Value::Bool(b) = value {
            return *b;
        }
        let word = scalar_text(value).unwrap_or_default().to_ascii_lowercase();
        match word.as_str() {
            "true" | "yes" | "y" | "on" => true,
            "false" | "no" | "n" | "off" => false,
            _ => {
                problems.push(format!(
                    "{} must be true or false, not {}",
                    self.name(key),
                    shown(value)
                ));
                default
            }
        }
    }

    /// A nested mapping knowing `keys`; anything else but null is a problem.
    pub(super) fn section(
        &self,
        key: &str,
        keys: &'static [&'static str],
        problems: &mut Problems,
    ) -> Option<Section<'a>> {
        let value = self.get(key)?;
        match value {
            Value::Mapping(map) => Some(
                Section {
                    map: Some(map),
                    label: self.label.clone(),
                    rel: format!("{}{key}.", self.rel),
                    path: self.path.clone(),
                    known: &[],
                }
                .known(keys, problems),
            ),
            other => {
                problems.push(format!(
                    "{} must be a mapping of settings, not {}",
                    self.name(key),
                    kind_of(other)
                ));
                None
            }
        }
    }

    /// The keys among `keys` that are absent or empty, in the order given.
    pub(super) fn missing(&self, keys: &[&'static str]) -> Vec<&'static str> {
        keys.iter()
            .copied()
            .filter(|key| {
                self.get(key)
                    .is_none_or(|v| scalar_text(v).is_some_and(|t| t.trim().is_empty()))
            })
            .collect()
    }
}

/// The document with every mapping key in one form: a YAML tag on a key is dropped
/// (`!x retention:` is `retention:`), a key that is not text is refused with its place
/// and left out, and a key given twice once tags are gone is refused. Every later check
/// and lookup reads this form, so none can see a key the others miss. `name` is where
/// `value` is from the top (empty for the top).
pub(super) fn plain_keys(value: Value, name: &str, problems: &mut Problems) -> Value {
    match value {
        Value::Mapping(map) => {
            let prefix = if name.is_empty() {
                String::new()
            } else {
                format!("{name}.")
            };
            let mut plain = Mapping::with_capacity(map.len());
            for (key, value) in map {
                let Value::String(key) = untagged(&key) else {
                    let place = if name.is_empty() {
                        "the top level"
                    } else {
                        name
                    };
                    problems.push(format!(
                        "a key at {} must be text, not {}",
                        escaped(place),
                        kind_of(&key)
                    ));
                    continue;
                };
                let full = format!("{prefix}{key}");
                if plain.contains_key(key.as_str()) {
                    problems.push(format!(
                        "the key {} is given twice (a YAML tag does not make it another key)",
                        key_shown(&full)
                    ));
                    continue;
                }
                let value = plain_keys(value, &full, problems);
                plain.insert(Value::String(key.clone()), value);
            }
            Value::Mapping(plain)
        }
        Value::Sequence(items) => Value::Sequence(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| plain_keys(item, &format!("{name}[{i}]"), problems))
                .collect(),
        ),
        Value::Tagged(mut tagged) => {
            tagged.value = plain_keys(std::mem::take(&mut tagged.value), name, problems);
            Value::Tagged(tagged)
        }
        scalar => scalar,
    }
}

/// Text from the file as shown in a message, escaped so that no key or value can start a
/// line of its own, send a terminal escape or reorder what is shown.
pub(super) fn escaped(text: &str) -> String {
    crate::escape::escape_unsafe(text)
}

/// A key's path as shown in a message: as it is when it is plain, else quoted and
/// escaped, so that an empty key or a trailing space can be seen.
pub(super) fn key_shown(path: &str) -> String {
    let plain = !path.is_empty()
        && !path.ends_with('.')
        && path
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
    if plain {
        path.to_string()
    } else {
        format!("{path:?}")
    }
}

/// Reports each key of `map` that is not in `known`: `<label>unknown key <path><key>`, with
/// the closest known key when one is close.
pub(super) fn check_mapping(
    map: &Mapping,
    known: &[&str],
    label: &str,
    path: &str,
    problems: &mut Problems,
) {
    for key in map.keys() {
        let text = scalar_text(key);
        if text.as_deref().is_some_and(|k| known.contains(&k)) {
            continue;
        }
        let shown = text.as_deref().map_or_else(
            || format!("{path}({})", kind_of(key)),
            |k| key_shown(&format!("{path}{}", shorten(k))),
        );
        let hint = text.as_deref().and_then(|k| closest(k, known)).map_or_else(
            || {
                if known.len() <= 8 {
                    format!("; the keys here are {}", known.join(", "))
                } else {
                    String::new()
                }
            },
            |close| format!("; did you mean {close}?"),
        );
        problems.push(format!("{label}unknown key {shown}{hint}"));
    }
}

/// The known key closest to `key`, if it is close enough to be a typo of it.
pub(super) fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let key = key.trim().to_ascii_lowercase();
    known
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(&key, candidate), *candidate))
        // One edit, or edits on under a third of the name: a typo, not another word that
        // shares a prefix (`keep_everything` is not `keep_weekly`).
        .filter(|(edits, candidate)| {
            *edits <= 1 || *edits * 10 < 3 * candidate.len().max(key.len())
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, candidate)| candidate)
}

/// A key name cut to a length that fits a message line.
fn shorten(key: &str) -> &str {
    match key.char_indices().nth(64) {
        Some((end, _)) => &key[..end],
        None => key,
    }
}

/// A non-secret value as shown in a message: the scalar quoted, else its kind.
pub(super) fn shown(value: &Value) -> String {
    match scalar_text(value) {
        Some(text) if matches!(untagged(value), Value::String(_)) => format!("\"{text}\""),
        Some(text) => text,
        None => kind_of(value).to_string(),
    }
}

/// `path` resolved against `base` when relative and a base is known.
pub(super) fn resolve(base: Option<&Path>, path: PathBuf) -> PathBuf {
    match base {
        Some(base) if path.is_relative() && !base.as_os_str().is_empty() => base.join(path),
        _ => path,
    }
}
