//! Bytes to frames: command lines with a length limit, and the DATA / BDAT content decoder.
//!
//! Owns: line framing (`LineFramer`), dot-unstuffing and the end-of-data marker, the
//! detection of bare CR / bare LF, the removal of NUL bytes and the length of the longest
//! content line (`BodyDecoder`). Must not: decide replies or policy (what a bare line ending,
//! a NUL or a long line costs is the built-in rules' business).
//!
//! Why our own DATA decoder rather than smtp-proto's `DataReceiver`: it must report bare
//! line endings (the 2023 SMTP smuggling class of bugs) and hand out content incrementally so
//! that a size cap and a disk spool can sit behind it. Only `<CR><LF>.<CR><LF>` ends DATA;
//! the output always uses CRLF, and the relay re-stuffs dots, so the backend can never see an
//! end-of-data the gateway did not see.

/// The result of asking the framer for the next command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, including its line ending.
    Line(Vec<u8>),
    /// A line exceeded the limit; its bytes were discarded up to and including its LF.
    TooLong,
    /// No complete line buffered yet.
    NeedMore,
}

/// Splits buffered input into command lines, refusing lines longer than `max` octets.
#[derive(Debug)]
pub struct LineFramer {
    max: usize,
    /// True while discarding the rest of an over-long line.
    discarding: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max` octets including CRLF.
    pub fn new(max: usize) -> Self {
        LineFramer {
            max,
            discarding: false,
        }
    }

    /// Takes the next line out of `buf` (consumed bytes are drained).
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Frame {
        match memchr::memchr(b'\n', buf) {
            Some(pos) if self.discarding => {
                buf.drain(..=pos);
                self.discarding = false;
                Frame::TooLong
            }
            Some(pos) if pos < self.max => Frame::Line(buf.drain(..=pos).collect()),
            Some(pos) => {
                buf.drain(..=pos);
                Frame::TooLong
            }
            None if buf.len() >= self.max => {
                // Keep nothing of an over-long line: memory stays bounded by `max`.
                buf.clear();
                self.discarding = true;
                Frame::NeedMore
            }
            None => {
                if self.discarding {
                    buf.clear();
                }
                Frame::NeedMore
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// In the middle of a line.
    Text,
    /// Saw CR in the middle of a line.
    Cr,
    /// At the start of a line; `strict` when the previous line ended in CRLF.
    LineStart { strict: bool },
    /// Saw a dot at the start of a line.
    Dot { strict: bool },
    /// Saw `.` CR at the start of a strict line: LF ends the data.
    DotCr,
    /// The end-of-data marker was seen.
    Done,
}

/// Decodes message content: DATA (dot-unstuffing, end marker) or BDAT chunks (raw).
/// Output always has CRLF line endings; bare CR and bare LF are recorded and normalised.
/// NUL bytes are recorded and left out of the output: mail never carries them (no
/// BINARYMIME), and a NUL is content like any other byte until then, so dropping it can
/// never make an end of data appear. The longest output line is measured as it goes.
#[derive(Debug)]
pub struct BodyDecoder {
    st: St,
    dot_mode: bool,
    bare_line_endings: bool,
    nul_bytes: bool,
    /// Octets of the output line in progress (its CRLF not yet seen).
    line: u64,
    /// The longest output line so far, in octets without its CRLF.
    longest: u64,
}

impl BodyDecoder {
    /// A decoder for DATA content (dot-stuffed, ends with `<CR><LF>.<CR><LF>`).
    pub fn data() -> Self {
        BodyDecoder {
            st: St::LineStart { strict: true },
            dot_mode: true,
            bare_line_endings: false,
            nul_bytes: false,
            line: 0,
            longest: 0,
        }
    }

    /// A decoder for BDAT chunks (no stuffing, no end marker; the chunk sizes frame it).
    pub fn bdat() -> Self {
        BodyDecoder {
            st: St::Text,
            dot_mode: false,
            bare_line_endings: false,
            nul_bytes: false,
            line: 0,
            longest: 0,
        }
    }

    /// True once any bare CR or bare LF was seen.
    pub fn saw_bare_line_ending(&self) -> bool {
        self.bare_line_endings
    }

    /// True once any NUL byte was seen (and left out).
    pub fn saw_nul(&self) -> bool {
        self.nul_bytes
    }

    /// The longest content line so far, in octets without its CRLF (RFC 5322 §2.1.1 counts
    /// them so), as relayed: after unstuffing, without NULs.
    pub fn longest_line(&self) -> u64 {
        self.longest
    }

    /// For BDAT: a CR held back at the end of the last chunk is emitted as a bare CR.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.st == St::Cr {
            self.bare_line_endings = true;
            out.extend_from_slice(b"\r\n");
            self.st = St::Text;
            self.measure(b"\r\n");
        }
    }

    /// Decodes `input`, appending content to `out`. Returns how many input bytes were
    /// consumed and whether the end-of-data marker was reached (bytes after it are left).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let start = out.len();
        let result = self.decode_into(input, out);
        self.measure(&out[start..]);
        result
    }

    /// Line lengths in freshly decoded output. Output lines end in CRLF, and a CR is only
    /// ever written together with its LF, so the byte before each LF is its CR.
    fn measure(&mut self, mut new: &[u8]) {
        while let Some(lf) = memchr::memchr(b'\n', new) {
            let line = self.line + (lf as u64).saturating_sub(1);
            self.longest = self.longest.max(line);
            self.line = 0;
            new = &new[lf + 1..];
        }
        self.line += new.len() as u64;
        self.longest = self.longest.max(self.line);
    }

    fn decode_into(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            if self.st == St::Text {
                // Fast path: copy the run up to the next CR, LF or NUL in one go.
                let rest = &input[i..];
                let n = memchr::memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
                out.extend_from_slice(&rest[..n]);
                i += n;
                if i == input.len() {
                    break;
                }
            }
            let b = input[i];
            i += 1;
            self.step(b, out);
            if self.st == St::Done {
                return (i, true);
            }
        }
        (i, false)
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.st {
            St::Text => self.text(b, out),
            St::Cr => match b {
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.st = self.line_start(true);
                }
                _ => {
                    // Bare CR: normalise to CRLF and treat the next byte as a new line.
                    self.bare_line_endings = true;
                    out.extend_from_slice(b"\r\n");
                    self.st = self.line_start(false);
                    self.step(b, out);
                }
            },
            St::LineStart { strict } => {
                if b == b'.' {
                    self.st = St::Dot { strict };
                } else {
                    self.st = St::Text;
                    self.text(b, out);
                }
            }
            St::Dot { strict } => match b {
                b'\r' if strict => self.st = St::DotCr,
                b'\r' | b'\n' => {
                    // A lone dot after a bare line ending is content, never the end.
                    out.push(b'.');
                    self.st = St::Text;
                    self.text(b, out);
                }
                _ => {
                    // RFC 5321 §4.5.2: the first dot of a line is removed.
                    self.st = St::Text;
                    self.text(b, out);
                }
            },
            St::DotCr => {
                if b == b'\n' {
                    self.st = St::Done;
                } else {
                    out.push(b'.');
                    self.st = St::Cr;
                    self.step(b, out);
                }
            }
            St::Done => {}
        }
    }

    fn text(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            0 => self.nul_bytes = true,
            b'\r' => self.st = St::Cr,
            b'\n' => {
                self.bare_line_endings = true;
                out.extend_from_slice(b"\r\n");
                self.st = self.line_start(false);
            }
            _ => out.push(b),
        }
    }

    fn line_start(&self, strict: bool) -> St {
        if self.dot_mode {
            St::LineStart { strict }
        } else {
            St::Text
        }
    }
}

/// Dot-stuffs CRLF-normalised content for sending with DATA (RFC 5321 §4.5.2).
/// `at_line_start` carries the state between chunks; start with `true`.
pub fn dot_stuff(chunk: &[u8], at_line_start: &mut bool, out: &mut Vec<u8>) {
    for &b in chunk {
        if *at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        *at_line_start = b == b'\n';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], split: usize) -> (Vec<u8>, bool, bool, usize) {
        let mut d = BodyDecoder::data();
        let mut out = Vec::new();
        let (a, done_a) = d.decode(&input[..split], &mut out);
        if done_a {
            return (out, true, d.saw_bare_line_ending(), a);
        }
        let (b, done) = d.decode(&input[split..], &mut out);
        (out, done, d.saw_bare_line_ending(), a + b)
    }

    #[test]
    fn unstuffs_and_ends_at_crlf_dot_crlf_at_every_split() {
        let input = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
        for split in 0..input.len() {
            let (out, done, bare, used) = decode_all(input, split);
            assert!(done, "split {split}");
            assert!(!bare);
            assert_eq!(out, b"Subject: x\r\n\r\n.leading dot\r\n");
            assert_eq!(&input[used..], b"QUIT\r\n");
        }
    }

    #[test]
    fn empty_message_ends_at_once() {
        let (out, done, _, used) = decode_all(b".\r\n", 0);
        assert!(done && out.is_empty() && used == 3);
    }

    #[test]
    fn smuggling_sequences_never_end_data() {
        for evil in [
            &b"a\n.\r\nMAIL FROM:<x>\r\n"[..],
            b"a\r\n.\nX\r\n",
            b"a\n.\nX\r\n",
            b"a\r.\r\nX",
        ] {
            for split in 0..evil.len() {
                let (out, done, bare, _) = decode_all(evil, split);
                assert!(!done, "{evil:?} split {split} ended DATA");
                assert!(bare, "{evil:?} bare line ending not flagged");
                // Normalised output: every CR is followed by LF and every LF preceded by CR.
                for (i, b) in out.iter().enumerate() {
                    if *b == b'\r' {
                        assert_eq!(out.get(i + 1), Some(&b'\n'));
                    }
                    if *b == b'\n' {
                        assert_eq!(out[i - 1], b'\r');
                    }
                }
            }
        }
    }

    #[test]
    fn bdat_keeps_dots_and_normalises() {
        let mut d = BodyDecoder::bdat();
        let mut out = Vec::new();
        d.decode(b".x\r\n.\r", &mut out);
        d.decode(b"\nend\n", &mut out);
        d.finish(&mut out);
        assert_eq!(out, b".x\r\n.\r\nend\r\n");
        assert!(d.saw_bare_line_ending());
    }

    #[test]
    fn nul_bytes_are_flagged_and_left_out_without_ending_data() {
        // `.` NUL CRLF is a line of content (its dot is stuffing), never the end.
        let input = b"a\0b\r\n\0\r\n.\0\r\n\0.x\r\n.\r\n";
        for split in 0..input.len() {
            let mut d = BodyDecoder::data();
            let mut out = Vec::new();
            let (a, done_a) = d.decode(&input[..split], &mut out);
            let (b, done) = match done_a {
                true => (0, true),
                false => d.decode(&input[split..], &mut out),
            };
            assert!(done && a + b == input.len(), "split {split}");
            assert_eq!(out, b"ab\r\n\r\n\r\n.x\r\n", "split {split}");
            assert!(d.saw_nul() && !d.saw_bare_line_ending());
        }
        let mut d = BodyDecoder::bdat();
        let mut out = Vec::new();
        d.decode(b"plain\r\n", &mut out);
        assert!(!d.saw_nul());
    }

    #[test]
    fn longest_line_counts_content_octets_without_crlf() {
        let mut d = BodyDecoder::data();
        let mut out = Vec::new();
        let long = vec![b'x'; 998];
        d.decode(b"short\r\n", &mut out);
        d.decode(&long, &mut out);
        assert_eq!(d.longest_line(), 998);
        d.decode(b"\r\n..\0y\r\n", &mut out);
        assert_eq!(
            d.longest_line(),
            998,
            "CRLF, the stuffing dot and NUL are not content"
        );
        d.decode(&long[..500], &mut out);
        d.decode(&long[..499], &mut out);
        d.decode(b"\r", &mut out);
        d.decode(b"\n.\r\n", &mut out);
        assert_eq!(d.longest_line(), 999, "a line across chunks is one line");
        // A last BDAT line without CRLF counts too.
        let mut d = BodyDecoder::bdat();
        d.decode(b"ab\r\ncdef", &mut out);
        d.finish(&mut out);
        assert_eq!(d.longest_line(), 4);
    }

    #[test]
    fn dot_stuffing_round_trips() {
        let content = b".a\r\nb\r\n.\r\n..c\r\n";
        let mut stuffed = Vec::new();
        let mut ls = true;
        dot_stuff(&content[..3], &mut ls, &mut stuffed);
        dot_stuff(&content[3..], &mut ls, &mut stuffed);
        stuffed.extend_from_slice(b".\r\n");
        let (out, done, _, _) = decode_all(&stuffed, 5);
        assert!(done);
        assert_eq!(out, content);
    }

    /// A small deterministic generator (xorshift), so failures reproduce without a crate.
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn random_inputs_keep_every_invariant_at_every_split() {
        // Bytes weighted towards the ones that matter: CR, LF, dots and NUL.
        const ALPHABET: &[u8] = b"\r\n.\r\n.a\0";
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (next(&mut seed) % 24) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next(&mut seed) % ALPHABET.len() as u64) as usize])
                .collect();
            let split = (next(&mut seed) % (len as u64 + 1)) as usize;
            let whole = decode_all(&input, input.len());
            let parts = decode_all(&input, split);
            assert_eq!(
                whole, parts,
                "split {split} changed the result for {input:?}"
            );
            let (out, done, bare, used) = whole;
            assert!(!out.contains(&0), "NUL relayed for {input:?}");
            // The longest line measured across the split is the longest line of the output.
            let mut d = BodyDecoder::data();
            let mut again = Vec::new();
            if !d.decode(&input[..split], &mut again).1 {
                d.decode(&input[split..], &mut again);
            }
            let longest = out
                .split(|b| *b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len() as u64)
                .max()
                .unwrap_or(0);
            assert_eq!(d.longest_line(), longest, "{input:?} split {split}");
            // Output is always CRLF-normalised: every CR followed by LF, every LF after a CR.
            for (i, b) in out.iter().enumerate() {
                if *b == b'\r' {
                    assert_eq!(out.get(i + 1), Some(&b'\n'), "{input:?}");
                }
                if *b == b'\n' {
                    assert!(i > 0 && out[i - 1] == b'\r', "{input:?}");
                }
            }
            // DATA ends only at CRLF "." CRLF, at the start or after a CRLF the client sent.
            if done {
                let end = &input[..used];
                let strict_end = end == b".\r\n" || end.ends_with(b"\r\n.\r\n");
                assert!(strict_end, "ended at {end:?}");
            }
            // Re-stuffing the output and decoding it again gives the output back: what the
            // backend receives is exactly what we decided on, whatever the client sent.
            if done || !bare {
                let mut stuffed = Vec::new();
                let mut at_line_start = true;
                dot_stuff(&out, &mut at_line_start, &mut stuffed);
                if !at_line_start {
                    stuffed.extend_from_slice(b"\r\n");
                }
                stuffed.extend_from_slice(b".\r\n");
                let (again, again_done, again_bare, _) = decode_all(&stuffed, stuffed.len() / 2);
                assert!(again_done && !again_bare, "{input:?}");
                let mut expected = out.clone();
                if !expected.is_empty() && !expected.ends_with(b"\r\n") {
                    expected.extend_from_slice(b"\r\n");
                }
                assert_eq!(again, expected, "{input:?}");
            }
        }
    }

    #[test]
    fn framer_limits_lines_and_recovers() {
        let mut f = LineFramer::new(10);
        let mut buf = b"NOOP\r\n0123456789ABC".to_vec();
        assert_eq!(f.next(&mut buf), Frame::Line(b"NOOP\r\n".to_vec()));
        assert_eq!(f.next(&mut buf), Frame::NeedMore);
        assert!(buf.is_empty());
        buf.extend_from_slice(b"more\r\nQUIT\r\n");
        assert_eq!(f.next(&mut buf), Frame::TooLong);
        assert_eq!(f.next(&mut buf), Frame::Line(b"QUIT\r\n".to_vec()));
        let mut buf = b"0123456789AB\r\n".to_vec();
        assert_eq!(f.next(&mut buf), Frame::TooLong);
    }
}
