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
    /// [CFWS [version]] ;` — comments and folding around the id do not hide it.
    fn decide(&mut self) {
        let colon = memchr::memchr(b':', &self.held).unwrap_or(0);
        let value = without_comments(&String::from_utf8_lossy(&self.held[colon + 1..]))
            .to_ascii_lowercase();
        let id = value.split(';').next().unwrap_or("");
        let ours = self.authserv_id.is_some()
            && id.split_whitespace().next() == self.authserv_id.as_deref();
        if ours {
            self.removed += 1;
            self.fate = Fate::Drop;
        } else {
            self.fate = Fate::Keep;
        }
    }
}

/// Replaces RFC 5322 comments (nested parentheses, with `\` quoting) by a space.
fn without_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut depth, mut escaped) = (0usize, false);
    for c in value.chars() {
        match (depth, escaped, c) {
            (_, true, _) => escaped = false,
            (d, false, '\\') if d > 0 => escaped = true,
            (_, false, '(') => {
                depth += 1;
                out.push(' ');
            }
            (d, false, ')') if d > 0 => depth -= 1,
            (0, false, c) => out.push(c),
            _ => {}
        }
    }
    out
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

fn is_auth_results(line: &[u8]) -> bool {
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
