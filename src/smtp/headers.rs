//! Streaming removal of header fields from a message on its way to the backend.
//!
//! Owns: `HeaderFilter`, which drops the `Authentication-Results` fields that claim our
//! authserv-id (RFC 8601 §5: a receiver must not let outside parties forge its results) and
//! any `X-Portcullis-*` field (our verdict and quarantine fields) while the body streams past. Must not: change anything after the header block. Memory is
//! bounded: a single field above `MAX_FIELD` bytes switches the filter off for the rest.

/// Longest stretch the filter holds in memory: one line, or one held field.
pub const MAX_FIELD: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Copied to the output as it comes.
    Keep,
    /// An Authentication-Results field, held until we know whose it is.
    Hold,
    /// Our forged Authentication-Results: dropped.
    Drop,
}

/// Drops `Authentication-Results` fields whose authserv-id is ours. Other fields stream
/// through; only an Authentication-Results field is held (at most `MAX_FIELD` bytes) until
/// its end. An over-long line is classified by its start and streamed, so no header of any
/// size can switch the filter off for the fields after it.
#[derive(Debug)]
pub struct HeaderFilter {
    /// Lower-cased; `None` when authentication is off (no Authentication-Results of ours).
    authserv_id: Option<String>,
    in_body: bool,
    /// The start of the current line, until it is complete or too long.
    line: Vec<u8>,
    /// The rest of an over-long line is streaming (with the current field's fate).
    streaming_line: bool,
    fate: Fate,
    held: Vec<u8>,
    removed: usize,
}

impl HeaderFilter {
    /// A filter for `authserv_id` (compared case-insensitively); `X-Portcullis-*` fields are
    /// dropped in any case.
    pub fn new(authserv_id: Option<&str>) -> Self {
        HeaderFilter {
            authserv_id: authserv_id.map(str::to_ascii_lowercase),
            in_body: false,
            line: Vec::new(),
            streaming_line: false,
            fate: Fate::Keep,
            held: Vec::new(),
            removed: 0,
        }
    }

    /// How many fields were removed.
    pub fn removed(&self) -> usize {
        self.removed
    }

    /// Filters one chunk of CRLF content into `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.in_body {
                out.extend_from_slice(rest);
                return;
            }
            let (part, tail, complete) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..=i], &rest[i + 1..], true),
                None => (rest, &[][..], false),
            };
            rest = tail;
            if self.streaming_line {
                self.emit(part, out);
                self.streaming_line = !complete;
                continue;
            }
            self.line.extend_from_slice(part);
            if complete {
                let line = std::mem::take(&mut self.line);
                self.start_line(&line, out);
            } else if self.line.len() > MAX_FIELD {
                // Classify the over-long line by its start, then stream the rest of it.
                let line = std::mem::take(&mut self.line);
                self.start_line(&line, out);
                self.streaming_line = true;
            }
        }
    }

    /// Emits whatever is held (a message that ended inside its header block). A last line
    /// without its CRLF is a line like the others: the relay ends the content with CRLF, so
    /// it reaches the backend as a field and is filtered as one.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            self.start_line(&line, out);
        }
        self.end_field(out);
        self.in_body = true;
    }

    /// A line (or the start of an over-long one) at the beginning of a header line.
    fn start_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if line == b"\r\n" || line == b"\n" {
            self.end_field(out);
            out.extend_from_slice(line);
            self.in_body = true;
        } else if line.starts_with(b" ") || line.starts_with(b"\t") {
            self.emit(line, out);
        } else {
            self.end_field(out);
            self.fate = if is_ours(line) {
                // Our own X-Portcullis-* fields can only come from us.
                self.removed += 1;
                Fate::Drop
            } else if is_auth_results(line) {
                Fate::Hold
            } else {
                Fate::Keep
            };
            self.emit(line, out);
        }
    }

    /// Sends field bytes where the current field's fate says.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        match self.fate {
            Fate::Keep => out.extend_from_slice(bytes),
            Fate::Drop => {}
            Fate::Hold => {
                self.held.extend_from_slice(bytes);
                if self.held.len() > MAX_FIELD {
                    // Decide on what we have: the authserv-id comes first.
                    self.decide();
                    if self.fate == Fate::Keep {
                        out.append(&mut self.held);
                    }
                    self.held.clear();
                }
            }
        }
    }

    fn end_field(&mut self, out: &mut Vec<u8>) {
        if self.fate == Fate::Hold {
            self.decide();
            if self.fate == Fate::Keep {
                out.append(&mut self.held);
            }
            self.held.clear();
        }
        self.fate = Fate::Keep;
    }

    /// Turns a held field into Keep or Drop: `Authentication-Results: [CFWS] <our id>
    /// [CFWS [version]] ;` — comments, folding and quotes around the id do not hide it.
    /// Only the first `MAX_FIELD` bytes count, however many are held, so that the verdict
    /// does not depend on how the message was cut into chunks; a field whose id is not
    /// settled within them is dropped when we have an id to protect.
    fn decide(&mut self) {
        let cut = self.held.len() > MAX_FIELD;
        let field = &self.held[..self.held.len().min(MAX_FIELD)];
        let colon = memchr::memchr(b':', field).unwrap_or(0);
        let ours = match (&self.authserv_id, authserv_id_of(&field[colon + 1..], cut)) {
            (None, _) => false,
            (Some(_), Id::Unknown) => true,
            (Some(ours), Id::Is(id)) => id.eq_ignore_ascii_case(ours.as_bytes()),
            (Some(_), Id::Absent) => false,
        };
        if ours {
            self.removed += 1;
            self.fate = Fate::Drop;
        } else {
            self.fate = Fate::Keep;
        }
    }
}

/// True when an Authentication-Results value (without its name and colon) names
/// `authserv_id`, as the relay's filter judges a field: comments, folding and quotes around
/// the id do not hide it (RFC 8601 §2.2). Used by the milter, which gets fields one by one.
pub fn names_authserv_id(value: &[u8], authserv_id: &str) -> bool {
    match authserv_id_of(value, false) {
        Id::Is(id) => id.eq_ignore_ascii_case(authserv_id.as_bytes()),
        Id::Absent | Id::Unknown => false,
    }
}

/// The authserv-id at the start of an Authentication-Results value.
#[derive(Debug, PartialEq, Eq)]
enum Id {
    /// This one (unquoted, quoted pairs resolved).
    Is(Vec<u8>),
    /// The value has none (nothing but CFWS).
    Absent,
    /// The value was cut before the id was complete.
    Unknown,
}

/// Reads the authserv-id (RFC 8601 §2.2: after CFWS, a `value`, i.e. an RFC 2045 token or
/// a quoted string). A token ends at the first octet that is not a token character, so a
/// stray octet after our id does not make it someone else's. `cut`: the value goes on past
/// what is given, so CFWS or an id that reaches its end is `Unknown`.
fn authserv_id_of(value: &[u8], cut: bool) -> Id {
    let open_end = if cut { Id::Unknown } else { Id::Absent };
    let mut i = 0;
    let mut depth = 0usize;
    while let Some(&b) = value.get(i) {
        match b {
            b'\\' if depth > 0 => i += 1,
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            _ if depth > 0 || b.is_ascii_whitespace() => {}
            _ => break,
        }
        i += 1;
    }
    if i >= value.len() {
        return open_end;
    }
    let mut id = Vec::new();
    if value[i] == b'"' {
        i += 1;
        loop {
            match value.get(i) {
                None if cut => return Id::Unknown,
                None | Some(b'"') => break,
                Some(b'\\') => {
                    i += 1;
                    id.extend(value.get(i));
                }
                Some(b'\r' | b'\n') => {}
                Some(&b) => id.push(b),
            }
            i += 1;
        }
    } else {
        let token = value[i..]
            .iter()
            .take_while(|&&b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
            .count();
        if cut && i + token == value.len() {
            return Id::Unknown;
        }
        id.extend_from_slice(&value[i..i + token]);
    }
    if id.is_empty() { open_end } else { Id::Is(id) }
}

/// The header fields of a message, unfolded (`Name: value`), up to the first empty line.
pub fn unfold(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let mut out: Vec<String> = Vec::new();
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            break;
        }
        match out.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => out.push(line.to_string()),
        }
    }
    out
}

fn is_ours(line: &[u8]) -> bool {
    line.len() > 13 && line[..13].eq_ignore_ascii_case(b"x-portcullis-")
}

/// Looks at the first `MAX_FIELD` bytes only: an over-long line is classified by the same
/// start however it arrived.
fn is_auth_results(line: &[u8]) -> bool {
    let line = &line[..line.len().min(MAX_FIELD)];
    memchr::memchr(b':', line).is_some_and(|colon| {
        line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"authentication-results")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], split: usize) -> (Vec<u8>, usize) {
        let mut f = HeaderFilter::new(Some("gw.example.test"));
        let mut out = Vec::new();
        f.push(&input[..split], &mut out);
        f.push(&input[split..], &mut out);
        f.finish(&mut out);
        (out, f.removed())
    }

    #[test]
    fn removes_only_our_forged_results_at_every_split() {
        let input = b"Authentication-Results: GW.example.test; spf=pass\r\n\tsmtp.mailfrom=x\r\nAuthentication-Results: other.example; dkim=pass\r\nAuthentication-Results: gw.example.test 1; dmarc=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: gw.example.test; in body\r\n";
        let expected = b"Authentication-Results: other.example; dkim=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: gw.example.test; in body\r\n";
        for split in 0..input.len() {
            let (out, removed) = run(input, split);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected),
                "split {split}"
            );
            assert_eq!(removed, 2);
        }
    }

    #[test]
    fn comments_around_the_id_do_not_hide_a_forgery() {
        for forged in [
            &b"Authentication-Results: (trusted) gw.example.test; dkim=pass\r\n"[..],
            b"Authentication-Results: gw.example.test(x); dmarc=pass\r\n",
            b"Authentication-Results: (a (nested\\) one)) GW.example.test 1 (v); spf=pass\r\n",
            b"Authentication-Results:\r\n gw.example.test\r\n\t; spf=pass\r\n",
        ] {
            let mut input = forged.to_vec();
            input.extend_from_slice(b"Subject: s\r\n\r\nb");
            let (out, removed) = run(&input, 5);
            assert_eq!(
                String::from_utf8_lossy(&out),
                "Subject: s\r\n\r\nb",
                "{}",
                String::from_utf8_lossy(forged)
            );
            assert_eq!(removed, 1);
        }
    }

    #[test]
    fn our_own_fields_from_outside_are_dropped() {
        let input = b"X-Portcullis-Verdict: accept; rules=trusted\r\nx-portcullis-envelope-to: <a@evil.example>\r\n\tfolded\r\nX-Portcullisfoo: kept\r\n\r\nX-Portcullis-Verdict: in body\r\n";
        let (out, removed) = run(input, 9);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "X-Portcullisfoo: kept\r\n\r\nX-Portcullis-Verdict: in body\r\n"
        );
        assert_eq!(removed, 2);
    }

    /// Found by fuzz/headers: a message that ends inside its header block without a final
    /// CRLF (BDAT allows it; the relay adds the CRLF) had its last line emitted unfiltered,
    /// so a forged Authentication-Results or X-Portcullis field reached the backend.
    #[test]
    fn an_unterminated_last_line_is_filtered_too() {
        for (input, expected, removed) in [
            (
                &b"Subject: s\r\nAuthentication-Results: gw.example.test; dkim=pass"[..],
                &b"Subject: s\r\n"[..],
                1,
            ),
            (
                b"Subject: s\r\nx-portcullis-envelope-to: <a@evil.example>",
                b"Subject: s\r\n",
                1,
            ),
            (
                b"Authentication-Results: gw.example.test; x\r\n\tmore",
                b"",
                1,
            ),
            (
                b"Authentication-Results: other.example; x\r\n\tmore",
                b"Authentication-Results: other.example; x\r\n\tmore",
                0,
            ),
            (
                b"Subject: s\r\nX-Last: kept",
                b"Subject: s\r\nX-Last: kept",
                0,
            ),
        ] {
            for split in 0..input.len() {
                let (out, n) = run(input, split);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(expected),
                    "split {split}"
                );
                assert_eq!(n, removed);
            }
        }
    }

    /// Caught by the fuzz/headers oracle: an authserv-id written as a quoted string (RFC 8601 allows a
    /// `value` there) was not recognised as ours.
    #[test]
    fn a_quoted_id_is_ours_too() {
        for forged in [
            &b"Authentication-Results: \"gw.example.test\"; dkim=pass\r\n"[..],
            b"Authentication-Results: (c) \"GW.example\\.test\" 1; spf=pass\r\n",
            b"Authentication-Results:\r\n \"gw.example.test\"\r\n ; spf=pass\r\n",
        ] {
            let mut input = forged.to_vec();
            input.extend_from_slice(b"Subject: s\r\n\r\nb");
            for split in 0..input.len() {
                let (out, removed) = run(&input, split);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    "Subject: s\r\n\r\nb",
                    "{} split {split}",
                    String::from_utf8_lossy(forged)
                );
                assert_eq!(removed, 1);
            }
        }
        let kept = b"Authentication-Results: \"gw.example.test.evil\"; x\r\n\r\nb";
        assert_eq!(run(kept, 3).0, kept.to_vec());
    }

    /// Caught by the fuzz/headers oracle: with over 64 KiB of white space or comment before the id, the
    /// field was decided on what was held when the limit was reached, which showed no id:
    /// kept when the bytes arrived in pieces, dropped when they arrived whole. Now only the
    /// first `MAX_FIELD` bytes count, and a field whose id is not settled in them is dropped.
    #[test]
    fn padding_before_the_id_cannot_hide_it() {
        let pad = |p: &[u8]| {
            let mut v = b"Authentication-Results:".to_vec();
            v.extend_from_slice(p);
            v
        };
        let mut spaces = pad(&vec![b' '; MAX_FIELD + 10]);
        spaces.extend_from_slice(b"gw.example.test; dkim=pass\r\nSubject: s\r\n\r\nb");
        let mut folded = pad(b"");
        for _ in 0..(MAX_FIELD / 3 + 10) {
            folded.extend_from_slice(b"\r\n ");
        }
        folded.extend_from_slice(b"gw.example.test; dkim=pass\r\nSubject: s\r\n\r\nb");
        let mut comment = pad(b" (");
        comment.extend(std::iter::repeat_n(b'x', MAX_FIELD + 10));
        comment.extend_from_slice(b") gw.example.test; dkim=pass\r\nSubject: s\r\n\r\nb");
        // Someone else's, but not settled in time: dropped all the same.
        let mut foreign = pad(b" (");
        foreign.extend(std::iter::repeat_n(b'x', MAX_FIELD + 10));
        foreign.extend_from_slice(b") other.example; dkim=pass\r\nSubject: s\r\n\r\nb");
        for input in [spaces, folded, comment, foreign] {
            for split in [0, 1, 30, MAX_FIELD - 1, MAX_FIELD + 5, input.len() - 3] {
                let (out, removed) = run(&input, split);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    "Subject: s\r\n\r\nb",
                    "split {split}"
                );
                assert_eq!(removed, 1);
            }
        }
        // An id settled early in a huge field decides it, whole or in pieces.
        let mut other = b"Authentication-Results: other.example; ".to_vec();
        other.extend(std::iter::repeat_n(b'x', 2 * MAX_FIELD));
        other.extend_from_slice(b"\r\n\r\nb");
        for split in [0, 1, MAX_FIELD + 5] {
            assert!(run(&other, split).0 == other, "split {split}");
        }
    }

    #[test]
    fn lookalike_ids_are_kept() {
        let input = b"Authentication-Results: gw.example.test.evil; spf=pass\r\nX: y\r\n\r\nbody";
        assert_eq!(run(input, 10).0, input.to_vec());
    }

    #[test]
    fn huge_fields_stream_and_cannot_shield_a_forgery() {
        let mut big = b"X-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 3 * MAX_FIELD));
        big.extend_from_slice(b"\r\n");
        let mut input = big.clone();
        input.extend_from_slice(b"Authentication-Results: gw.example.test; x\r\n\r\nb");
        let mut expected = big;
        expected.extend_from_slice(b"\r\nb");
        for split in [1, 100, MAX_FIELD + 3, input.len() - 2] {
            let (out, removed) = run(&input, split);
            assert_eq!(out.len(), expected.len(), "split {split}");
            assert!(out == expected, "split {split}");
            assert_eq!(removed, 1);
        }
        // A huge forged field is dropped whole.
        let mut forged = b"Authentication-Results: gw.example.test; ".to_vec();
        forged.extend(std::iter::repeat_n(b'x', 2 * MAX_FIELD));
        forged.extend_from_slice(b"\r\n\tmore\r\nSubject: s\r\n\r\nb");
        let (out, removed) = run(&forged, 7);
        assert_eq!(out, b"Subject: s\r\n\r\nb".to_vec());
        assert_eq!(removed, 1);
    }
}
