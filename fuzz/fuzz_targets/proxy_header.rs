//! `proxy::read_header` (src/proxy.rs): the PROXY v1/v2 header read from a connection that
//! delivers the input in random pieces (the real read loop, over a fake stream).
//!
//! Invariants: never panics and never hangs; at most `MAX_HEADER` (4096) octets are read;
//! a header is accepted only if the input starts with `PROXY` or the v2 signature (the
//! crate takes any separator after `PROXY`: the peer is a trusted proxy, so no more); the
//! bytes handed back after the header are exactly the ones read after it; and the verdict
//! (accepted or not, which source, how long the header) does not depend on how the bytes
//! were cut.

#![no_main]

mod common;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{Rng, pieces};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Runtime;

const MAX_HEADER: usize = 4096;
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

/// A stream that hands out `pieces` one read at a time, then end of file.
struct Pieces<'a> {
    pieces: Vec<&'a [u8]>,
    next: usize,
    /// Bytes of the current piece already handed out.
    within: usize,
    read: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Skip empty pieces: an empty read would be end of file.
        while this.next < this.pieces.len() && this.within == this.pieces[this.next].len() {
            this.next += 1;
            this.within = 0;
        }
        if let Some(piece) = this.pieces.get(this.next) {
            let rest = &piece[this.within..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.within += n;
            this.read += n;
        }
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Header {
        source: Option<SocketAddr>,
        len: usize,
    },
    Refused,
}

fn read(input: &[u8], pieces: Vec<&[u8]>) -> Verdict {
    let mut stream = Pieces {
        pieces,
        next: 0,
        within: 0,
        read: 0,
    };
    let result = runtime().block_on(portcullis::proxy::read_header(
        &mut stream,
        Duration::from_secs(60),
    ));
    let read = stream.read;
    assert!(read <= MAX_HEADER, "read {read} octets");
    match result {
        Ok(p) => {
            assert!(
                input.starts_with(b"PROXY") || input.starts_with(V2_SIGNATURE),
                "accepted a header without the v1 or v2 signature"
            );
            assert!(p.rest.len() <= read);
            let len = read - p.rest.len();
            assert_eq!(p.rest, &input[len..read], "bytes after the header");
            Verdict::Header {
                source: p.source,
                len,
            }
        }
        Err(_) => Verdict::Refused,
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = read(data, vec![data]);
    let mut rng = Rng::from_bytes(data);
    let cut = read(data, pieces(data, &mut rng));
    assert_eq!(whole, cut, "the verdict depends on how the bytes were cut");
});
