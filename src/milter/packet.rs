//! Milter packet framing: `u32` big-endian length, command byte, data.
//!
//! Owns: cutting a byte stream from the MTA into `Packet`s under a size limit (`Framer`), and
//! writing one framed packet (`write`). Must not: look inside a packet's data (that is
//! `command.rs` for what the MTA sends and `response.rs` for what we send), or do I/O.
//!
//! The length counts the command byte and the data, so the smallest valid length is 1. A
//! length of 0 or above the limit is a framing error after which the stream cannot be
//! resynchronised: the session must close the connection.

/// Default packet limit (the length field: command byte plus data). Postfix sends body chunks
/// of at most 65535 octets, but a header packet carries the whole field, which Postfix bounds
/// only by `header_size_limit` (102400 by default); 256 KiB covers both with room to spare.
pub const DEFAULT_MAX: usize = 256 * 1024;

/// Octets of the length prefix.
const LEN_BYTES: usize = 4;

/// One packet: a command (or response) byte and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The command byte (`SMFIC_*` from the MTA, `SMFIR_*` from us).
    pub code: u8,
    /// The data after the command byte, possibly empty.
    pub data: Vec<u8>,
}

/// Why the stream cannot be framed any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length of 0: a packet without even a command byte.
    #[error("milter packet of length 0")]
    Empty,
    /// A length above the framer's limit.
    #[error("milter packet of {0} octets exceeds the limit")]
    TooLarge(u32),
}

/// Splits buffered input into packets of at most `max` octets (command byte plus data).
///
/// The framer keeps no bytes of its own: the caller appends what it reads to a buffer and
/// calls `next` until it returns `Ok(None)`; complete packets are drained from the buffer, a
/// partial one stays there. After `Ok(None)` the buffer holds less than `max + 4` octets, so
/// memory is bounded by the limit whatever the peer sends.
#[derive(Debug, Clone)]
pub struct Framer {
    max: usize,
}

impl Framer {
    /// A framer refusing packets longer than `max` octets (command byte plus data).
    pub fn new(max: usize) -> Framer {
        Framer { max }
    }

    /// The limit this framer enforces.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes the next complete packet out of `buf`, `Ok(None)` when it is not complete yet.
    /// An error means the length prefix at the start of `buf` is unusable; `buf` is left as
    /// it was, and the connection must be closed.
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Result<Option<Packet>, FrameError> {
        let Some(prefix) = buf.first_chunk::<LEN_BYTES>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix);
        if len == 0 {
            return Err(FrameError::Empty);
        }
        // Compare as u64: a u32 length never wraps there, whatever the width of usize.
        if u64::from(len) > self.max as u64 {
            return Err(FrameError::TooLarge(len));
        }
        // `len` <= `max`, which is a usize, so the conversion cannot fail.
        let len = usize::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
        if buf.len() < LEN_BYTES + len {
            // Checked against the limit first, so a partial packet never exceeds it.
            return Ok(None);
        }
        let code = buf[LEN_BYTES];
        let data = buf[LEN_BYTES + 1..LEN_BYTES + len].to_vec();
        buf.drain(..LEN_BYTES + len);
        Ok(Some(Packet { code, data }))
    }
}

/// Appends one framed packet (`code` and `data`) to `out`.
///
/// Data longer than `u32::MAX - 1` octets cannot be framed; it is cut there, so the length
/// prefix always matches the bytes written (nothing we send comes near: replies are short).
pub fn write(code: u8, data: &[u8], out: &mut Vec<u8>) {
    let data = &data[..data.len().min(u32::MAX as usize - 1)];
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    out.reserve(LEN_BYTES + 1 + data.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.push(code);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::testkit::{Rng, pieces};

    fn framed(code: u8, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write(code, data, &mut out);
        out
    }

    #[test]
    fn writes_length_code_and_data() {
        assert_eq!(framed(b'c', b""), [0, 0, 0, 1, b'c']);
        assert_eq!(
            framed(b'h', b"X\0y\0"),
            [0, 0, 0, 5, b'h', b'X', 0, b'y', 0]
        );
        let mut out = vec![9];
        write(b'a', b"", &mut out);
        assert_eq!(out, [9, 0, 0, 0, 1, b'a'], "appends, keeps what was there");
    }

    #[test]
    fn reads_postfix_optneg_bytes() {
        // From the Postfix 3.7.11 capture (recipes/POSTFIX.md).
        let mut buf = vec![
            0, 0, 0, 0x0d, b'O', 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff,
        ];
        let p = Framer::new(DEFAULT_MAX).next(&mut buf).unwrap().unwrap();
        assert_eq!(p.code, b'O');
        assert_eq!(p.data, [0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff]);
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_input_waits_and_keeps_the_bytes() {
        let whole = framed(b'H', b"client.example\0");
        let mut f = Framer::new(64);
        for cut in 0..whole.len() {
            let mut buf = whole[..cut].to_vec();
            assert_eq!(f.next(&mut buf), Ok(None), "cut {cut}");
            assert_eq!(buf, &whole[..cut], "partial input untouched");
            buf.extend_from_slice(&whole[cut..]);
            let p = f.next(&mut buf).unwrap().unwrap();
            assert_eq!(
                (p.code, p.data.as_slice()),
                (b'H', &b"client.example\0"[..])
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn several_packets_in_one_buffer() {
        let mut buf = framed(b'A', b"");
        buf.extend(framed(b'B', b"body"));
        buf.extend(&framed(b'Q', b"")[..3]);
        let mut f = Framer::new(64);
        assert_eq!(f.next(&mut buf).unwrap().unwrap().code, b'A');
        assert_eq!(f.next(&mut buf).unwrap().unwrap().data, b"body");
        assert_eq!(f.next(&mut buf), Ok(None));
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn zero_length_is_an_error() {
        let mut buf = vec![0, 0, 0, 0, b'c'];
        assert_eq!(Framer::new(64).next(&mut buf), Err(FrameError::Empty));
    }

    #[test]
    fn length_above_max_is_an_error_before_the_data_arrives() {
        let mut f = Framer::new(10);
        let mut buf = vec![0, 0, 0, 11];
        assert_eq!(f.next(&mut buf), Err(FrameError::TooLarge(11)));
        let mut buf = vec![0xff, 0xff, 0xff, 0xff];
        assert_eq!(f.next(&mut buf), Err(FrameError::TooLarge(u32::MAX)));
        // Exactly max is fine.
        let mut buf = framed(b'B', b"123456789");
        assert_eq!(f.next(&mut buf).unwrap().unwrap().data, b"123456789");
    }

    #[test]
    fn valid_stream_frames_the_same_at_any_split() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for round in 0..200 {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..1 + rng.below(12) {
                let code = b"OCDHMRTLNBEAQKU"[rng.below(15)];
                let data: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
                write(code, &data, &mut stream);
                expected.push(Packet { code, data });
            }
            let mut f = Framer::new(301);
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for piece in pieces(&stream, &mut rng) {
                buf.extend_from_slice(piece);
                while let Some(p) = f.next(&mut buf).unwrap() {
                    got.push(p);
                }
                assert!(buf.len() < 301 + 4, "round {round}: retained {}", buf.len());
            }
            assert!(buf.is_empty());
            assert_eq!(got, expected, "round {round}");
        }
    }
}
