//! The compressions an archive's tar stream may have: gzip, the default, and zstd.

use std::ops::RangeInclusive;

/// How the tar stream of an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// gzip, levels 1 to 9: what every `tar xz` reads. The default.
    #[default]
    Gzip,
    /// Zstandard, levels 1 to 19: several times faster than gzip at a like ratio. Opt-in.
    Zstd,
}

/// The first bytes of a gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The first bytes of a zstd frame.
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Algorithm {
    /// Every algorithm, the default first.
    pub const ALL: [Self; 2] = [Self::Gzip, Self::Zstd];

    /// The name used in the configuration and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }

    /// The algorithm of a configuration or manifest name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The levels a configuration may ask for.
    pub fn levels(self) -> RangeInclusive<u32> {
        match self {
            Self::Gzip => 1..=9,
            Self::Zstd => 1..=19,
        }
    }

    /// The level used when the configuration names none.
    pub fn default_level(self) -> u32 {
        match self {
            Self::Gzip => 6,
            Self::Zstd => 3,
        }
    }

    /// The ending of a plain archive's name: `.tar.gz` or `.tar.zst`.
    pub fn tar_ext(self) -> &'static str {
        match self {
            Self::Gzip => ".tar.gz",
            Self::Zstd => ".tar.zst",
        }
    }

    /// The algorithm whose stream starts with `first`, if any.
    pub fn sniff(first: &[u8]) -> Option<Self> {
        if first.starts_with(&GZIP_MAGIC) {
            Some(Self::Gzip)
        } else if first.starts_with(&ZSTD_MAGIC) {
            Some(Self::Zstd)
        } else {
            None
        }
    }

    /// Bytes [`Algorithm::sniff`] needs to tell every algorithm apart.
    pub const SNIFF_LEN: usize = ZSTD_MAGIC.len();
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Algorithm;

    #[test]
    fn names_round_trip_and_streams_are_told_apart() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
            assert!(a.levels().contains(&a.default_level()));
        }
        assert_eq!(Algorithm::from_name("xz"), None);
        assert_eq!(Algorithm::sniff(&[0x1f, 0x8b, 8]), Some(Algorithm::Gzip));
        assert_eq!(
            Algorithm::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Algorithm::Zstd)
        );
        assert_eq!(Algorithm::sniff(&[0x28, 0xb5]), None);
        assert_eq!(Algorithm::sniff(b"ustar"), None);
    }
}
