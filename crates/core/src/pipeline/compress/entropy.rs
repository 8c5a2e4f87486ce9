//! The entropy judgement: which pieces of a block are worth compressing, from the order-0
//! entropy of their bytes.

/// Bytes of a block judged compressible or not as one piece.
pub(super) const PIECE_SIZE: usize = 4 * 1024;

/// The shortest run of incompressible pieces that is stored rather than compressed. A
/// member boundary costs about what compressing 4 KiB of noise does, so 8 KiB is where
/// storing starts to pay.
pub(super) const MIN_STORED_PIECES: usize = 2;

/// A piece whose bytes carry at least this many bits of entropy each is incompressible.
pub const STORED_ENTROPY_BITS: f64 = 7.9;

/// Bytes at the start of a piece looked at first: below [`PROBE_ENTROPY_BITS`] there, the
/// piece is compressed without counting the rest.
pub(super) const PROBE_SIZE: usize = 1024;

/// Entropy of a probe below which its piece is plainly compressible. Noise measures about
/// 7.8 bits per byte over 1 KiB (the estimate runs low on few bytes) and text 4 to 6, so
/// the probe settles text and leaves noise, and anything in between, to the whole piece.
/// A piece misjudged this way is only compressed for nothing; the output is the same
/// valid gzip either way.
pub(super) const PROBE_ENTROPY_BITS: f64 = 7.0;

/// Cuts `data` into runs `(start, end, stored)`: stored runs are at least
/// [`MIN_STORED_PIECES`] incompressible pieces long; everything else is compressed.
pub(super) fn runs(data: &[u8]) -> Vec<(usize, usize, bool)> {
    let incompressible: Vec<bool> = data.chunks(PIECE_SIZE).map(incompressible).collect();
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    let mut i = 0;
    while i < incompressible.len() {
        let mut j = i;
        while j < incompressible.len() && incompressible[j] == incompressible[i] {
            j += 1;
        }
        let stored = incompressible[i] && j - i >= MIN_STORED_PIECES;
        let (start, end) = (i * PIECE_SIZE, (j * PIECE_SIZE).min(data.len()));
        match runs.last_mut() {
            Some(last) if last.2 == stored => last.1 = end,
            _ => runs.push((start, end, stored)),
        }
        i = j;
    }
    runs
}

/// Whether `piece` is judged incompressible: its entropy is at least
/// [`STORED_ENTROPY_BITS`], unless its first [`PROBE_SIZE`] bytes already show it is not.
pub(super) fn incompressible(piece: &[u8]) -> bool {
    let mut counts = [[0u32; 256]; 4];
    if piece.len() > 2 * PROBE_SIZE {
        let (probe, rest) = piece.split_at(PROBE_SIZE);
        count(probe, &mut counts);
        if entropy_of(&counts, probe.len()) < PROBE_ENTROPY_BITS {
            return false;
        }
        count(rest, &mut counts);
    } else {
        count(piece, &mut counts);
    }
    entropy_of(&counts, piece.len()) >= STORED_ENTROPY_BITS
}

/// The order-0 entropy of `piece`, in bits per byte.
#[cfg(test)]
pub(super) fn entropy_bits(piece: &[u8]) -> f64 {
    let mut counts = [[0u32; 256]; 4];
    count(piece, &mut counts);
    entropy_of(&counts, piece.len())
}

/// Adds the byte values of `bytes` to `counts`: four tables, so that runs of one byte
/// value do not wait on one counter.
fn count(bytes: &[u8], counts: &mut [[u32; 256]; 4]) {
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        counts[0][usize::from(q[0])] += 1;
        counts[1][usize::from(q[1])] += 1;
        counts[2][usize::from(q[2])] += 1;
        counts[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        counts[0][usize::from(b)] += 1;
    }
}

/// The order-0 entropy, in bits per byte, of the `n` bytes counted in `counts`.
fn entropy_of(counts: &[[u32; 256]; 4], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    // -Σ p·log2 p with p = c/n is log2 n - (Σ c·log2 c) / n; c·log2 c comes from a table
    // for the counts of a whole piece, and is computed for the rare larger ones.
    let table = c_log2_c();
    let sum: f64 = (0..256)
        .map(|v| counts[0][v] + counts[1][v] + counts[2][v] + counts[3][v])
        .map(|c| {
            table.get(c as usize).copied().unwrap_or_else(|| {
                let c = f64::from(c);
                c * c.log2()
            })
        })
        .sum();
    let n = n as f64;
    (n.log2() - sum / n).max(0.0)
}

/// `c · log2 c` for every count a piece can hold (0 for 0).
fn c_log2_c() -> &'static [f64; PIECE_SIZE + 1] {
    static TABLE: std::sync::OnceLock<Box<[f64; PIECE_SIZE + 1]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        // Built on the heap: the array is too large for a thread's stack.
        let mut table: Box<[f64; PIECE_SIZE + 1]> = vec![0.0; PIECE_SIZE + 1]
            .into_boxed_slice()
            .try_into()
            .expect("the length is the array's");
        for (c, slot) in table.iter_mut().enumerate().skip(1) {
            let c = c as f64;
            *slot = c * c.log2();
        }
        table
    })
}
