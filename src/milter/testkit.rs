//! Test support for the milter codec and its users: a deterministic PRNG, random split
//! points and random commands (the MTA side of the protocol is `Command::encode`).
//! Compiled for tests only.

use super::command::{Command, Family};

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

/// A random string (at most `max` characters) over an alphabet with multi-byte characters, never NUL.
pub(crate) fn rand_text(rng: &mut Rng, max: usize) -> String {
    const ALPHABET: &[&str] = &[
        "a", "Z", "0", "<", ">", "@", " ", "=", "{", "é", "ß", "€", "😀",
    ];
    (0..rng.below(max + 1))
        .map(|_| ALPHABET[rng.below(ALPHABET.len())])
        .collect()
}

/// Random bytes, at most `max` of them, NUL among them only when `nul`.
pub(crate) fn rand_bytes(rng: &mut Rng, max: usize, nul: bool) -> Vec<u8> {
    (0..rng.below(max + 1))
        .map(|_| rng.next() as u8)
        .filter(|&b| nul || b != 0)
        .collect()
}

/// A random command of any kind, as an MTA could send it (so that it round-trips).
pub(crate) fn rand_command(rng: &mut Rng) -> Command {
    match rng.below(15) {
        0 => Command::Optneg {
            version: rng.next() as u32,
            actions: rng.next() as u32,
            protocol: rng.next() as u32,
        },
        1 => Command::Macros {
            stage: b"CHMRTLNBEU"[rng.below(10)],
            pairs: (0..rng.below(5))
                .map(|_| (rand_text(rng, 12), rand_text(rng, 30)))
                .collect(),
        },
        2 => {
            let family = [Family::Inet, Family::Inet6, Family::Unix, Family::Unknown][rng.below(4)];
            let (port, address) = match family {
                Family::Inet | Family::Inet6 => (rng.next() as u16, rand_text(rng, 40)),
                Family::Unix => (0, rand_text(rng, 40)),
                Family::Unknown => (0, String::new()),
            };
            Command::Connect {
                hostname: rand_text(rng, 30),
                family,
                port,
                address,
            }
        }
        3 => Command::Helo(rand_text(rng, 40)),
        4 => Command::Mail {
            sender: rand_text(rng, 40),
            args: (0..rng.below(4)).map(|_| rand_text(rng, 20)).collect(),
        },
        5 => Command::Rcpt {
            rcpt: rand_text(rng, 40),
            args: (0..rng.below(4)).map(|_| rand_text(rng, 20)).collect(),
        },
        6 => Command::Data,
        7 => Command::Header {
            name: rand_text(rng, 20),
            value: rand_bytes(rng, 200, false),
        },
        8 => Command::EndOfHeaders,
        9 => Command::Body(rand_bytes(rng, 3000, true)),
        10 => Command::EndOfMessage(rand_bytes(rng, 50, true)),
        11 => Command::Abort,
        12 => Command::Quit,
        13 => Command::QuitNewConnection,
        _ => Command::Unknown(rand_bytes(rng, 60, false)),
    }
}
