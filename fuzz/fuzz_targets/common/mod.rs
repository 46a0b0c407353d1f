//! Helpers shared by the fuzz targets: split points drawn from the input itself.

#![allow(dead_code)]

/// A small deterministic generator (xorshift64), seeded from the input, so that a crash
/// file reproduces the same split points.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `bytes` (never the all-zero state).
    pub fn from_bytes(bytes: &[u8]) -> Rng {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for &b in bytes {
            seed = (seed ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(seed | 1)
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Cuts `data` into consecutive pieces whose lengths follow `rng`: mostly small (1..=8
/// bytes, where state machines are most likely to go wrong at a boundary), sometimes
/// larger, sometimes empty. The pieces always join back to `data`.
pub fn pieces<'a>(data: &'a [u8], rng: &mut Rng) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = match rng.below(8) {
            0 => 0,
            1..=5 => 1 + rng.below(8),
            6 => 1 + rng.below(64),
            _ => 1 + rng.below(4096),
        }
        .min(rest.len());
        let (piece, tail) = rest.split_at(n);
        out.push(piece);
        rest = tail;
    }
    out
}

/// Byte-level `find`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
