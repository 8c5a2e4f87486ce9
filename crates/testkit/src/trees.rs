//! Sample source trees to back up, and a tree's content to compare a restore with.

use std::path::Path;

/// A small tree with text, binary, an empty file, a subfolder and a symlink.
pub fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    dump_file(&root.join("dump.sql"), 42, 10_000);
    noise_file(&root.join("sub/blob.bin"), 200_000, 11);
    std::fs::write(root.join("sub/deeper/empty"), b"").unwrap();
    std::os::unix::fs::symlink("sub/blob.bin", root.join("link")).unwrap();
}

/// A database dump's text (it compresses well): `copies` times one insert of `value`.
pub fn dump_file(path: &Path, value: u32, copies: usize) {
    let line = format!("INSERT INTO t VALUES ({value});\n");
    std::fs::write(path, line.repeat(copies)).unwrap();
}

/// `len` bytes of a multiplicative hash shifted right by `shift`: binary data that
/// compresses little.
pub fn noise_file(path: &Path, len: u32, shift: u32) {
    let noise: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> shift) as u8)
        .collect();
    std::fs::write(path, noise).unwrap();
}

/// Sorted (path, content) pairs of a tree; links as their targets.
pub fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.push((rel + "/", vec![]));
                walk(root, &p, out);
            } else if meta.file_type().is_symlink() {
                out.push((
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes(),
                ));
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = vec![];
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A source folder of `mib` MiB of incompressible data in one file (`dump.bin`): the
/// archive is as large as the source.
pub fn noisy_source(root: &Path, mib: usize) {
    std::fs::create_dir_all(root).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let data: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(root.join("dump.bin"), data).unwrap();
}

/// Every file below `root` (hidden ones too), relative, sorted; none when `root` is missing.
pub fn files_below(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// `len` bytes that do not compress (xorshift64 from `seed`, which must not be 0), quickly.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    out.truncate(len);
    out
}
