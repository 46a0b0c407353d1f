//! PROXY protocol v1/v2 (HAProxy) from trusted load balancers, parsed with `proxy-header`.
//!
//! Owns: reading the header within its deadline and a size bound, and handing back the real
//! client address plus any bytes read past the header. Must not: be applied to peers that
//! are not listed in `proxy_protocol.trusted` (anyone else could forge their address).

use std::net::SocketAddr;
use std::time::Duration;

use proxy_header::{ParseConfig, ProxyHeader};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest header we read (v1 is at most 107 bytes; v2 with TLVs stays far below this).
const MAX_HEADER: usize = 4096;

/// Longest v1 header line, CRLF included (the PROXY protocol spec, section 2.1).
const MAX_V1: usize = 107;

/// What the PROXY header said.
#[derive(Debug)]
pub struct Proxied {
    /// The original client, or `None` for a LOCAL header (the proxy's own health check).
    pub source: Option<SocketAddr>,
    /// Bytes that followed the header (the client's first SMTP bytes, if any).
    pub rest: Vec<u8>,
}

/// Why no PROXY header was read; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum BadProxy {
    /// A v1 line longer than the spec allows, though it arrived whole.
    #[error("invalid PROXY header: v1 line of {0} bytes")]
    V1TooLong(usize),
    /// Not a PROXY header (or one longer than we read).
    #[error("invalid PROXY header: {0:?}")]
    Invalid(proxy_header::Error),
    /// The read failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed first.
    #[error("connection closed before the PROXY header")]
    Closed,
    /// `timeouts.proxy_header` passed.
    #[error("timed out waiting for the PROXY header")]
    Timeout,
}

/// Reads one PROXY header from `io`.
pub async fn read_header<S: AsyncRead + Unpin>(
    io: &mut S,
    deadline: Duration,
) -> Result<Proxied, BadProxy> {
    let config = ParseConfig {
        include_tlvs: false,
        allow_v1: true,
        allow_v2: true,
    };
    let mut buf = Vec::with_capacity(256);
    let read = async {
        loop {
            match ProxyHeader::parse(&buf, config) {
                // proxy-header refuses a v1 line that is still open after 107 bytes, but
                // takes a longer one that arrived whole: refuse it too, or the verdict would
                // depend on how the bytes were cut into reads.
                Ok((_, used)) if buf.starts_with(b"PROXY") && used > MAX_V1 => {
                    return Err(BadProxy::V1TooLong(used));
                }
                Ok((header, used)) => {
                    return Ok(Proxied {
                        source: header.proxied_address().map(|a| a.source),
                        rest: buf[used..].to_vec(),
                    });
                }
                Err(proxy_header::Error::BufferTooShort) if buf.len() < MAX_HEADER => {}
                Err(e) => return Err(BadProxy::Invalid(e)),
            }
            let mut chunk = [0u8; 512];
            let want = chunk.len().min(MAX_HEADER - buf.len()).max(1);
            let n = io.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(BadProxy::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| BadProxy::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn v1_header_and_trailing_bytes() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\nEHLO x\r\n";
        let p = read_header(&mut input, Duration::from_secs(1))
            .await
            .expect("header");
        assert_eq!(p.source, Some("203.0.113.7:40000".parse().expect("addr")));
        assert_eq!(p.rest, b"EHLO x\r\n");
    }

    #[tokio::test]
    async fn v2_header() {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x21); // v2, PROXY
        h.push(0x11); // TCP over IPv4
        h.extend_from_slice(&12u16.to_be_bytes());
        h.extend_from_slice(&[198, 51, 100, 9, 192, 0, 2, 1]);
        h.extend_from_slice(&5555u16.to_be_bytes());
        h.extend_from_slice(&25u16.to_be_bytes());
        let mut input: &[u8] = &h;
        let p = read_header(&mut input, Duration::from_secs(1))
            .await
            .expect("header");
        assert_eq!(p.source, Some("198.51.100.9:5555".parse().expect("addr")));
    }

    /// Found by fuzz/proxy_header: a v1 line over 107 bytes was accepted when it arrived in
    /// one read and refused when it arrived in pieces.
    #[tokio::test]
    async fn an_over_long_v1_line_is_refused_however_it_arrives() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(145, b'x');
        line.extend_from_slice(b"\r\nEHLO x\r\n");
        for cut in [line.len(), 60, 110, 146] {
            let (a, b) = line.split_at(cut);
            let mut input = a.chain(b);
            assert!(
                read_header(&mut input, Duration::from_secs(1))
                    .await
                    .is_err(),
                "cut at {cut}"
            );
        }
        // The longest valid line still passes.
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(105, b'x');
        line.extend_from_slice(b"\r\n");
        let mut input: &[u8] = &line;
        let p = read_header(&mut input, Duration::from_secs(1))
            .await
            .expect("107 bytes");
        assert_eq!(p.source, None);
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let mut input: &[u8] = b"EHLO not-a-proxy\r\n";
        assert!(
            read_header(&mut input, Duration::from_secs(1))
                .await
                .is_err()
        );
    }
}
