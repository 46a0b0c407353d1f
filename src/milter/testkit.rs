//! Test support for the milter codec and its users: a deterministic PRNG and random split
//! points. Compiled for tests only.

/// Deterministic xorshift64 for the property tests (no crate needed).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next value.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Cuts `data` into pieces of random length (often tiny, sometimes empty or large).
pub(crate) fn pieces<'a>(data: &'a [u8], rng: &mut Rng) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = match rng.below(8) {
            0 => 0,
            1..=5 => 1 + rng.below(6),
            6 => 1 + rng.below(64),
            _ => 1 + rng.below(2048),
        }
        .min(rest.len());
        let (piece, tail) = rest.split_at(n);
        out.push(piece);
        rest = tail;
    }
    out
}
