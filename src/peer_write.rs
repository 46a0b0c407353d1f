//! Writing what is queued for a peer (an SMTP client, the MTA of a milter connection)
//! within a deadline, for both front ends.
//!
//! Owns: one write of the whole buffer plus a flush, bounded by `within`, and emptying the
//! buffer whatever the result. Must not: decide what a failed write means for the session.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Writes and flushes `buf` to `io` within `within`, then empties it. A deadline that runs
/// out is a `TimedOut` error. An empty buffer writes nothing.
pub async fn write_within<W: AsyncWrite + Unpin>(
    io: &mut W,
    buf: &mut Vec<u8>,
    within: Duration,
) -> std::io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let write = async {
        io.write_all(buf).await?;
        io.flush().await
    };
    let result = match tokio::time::timeout(within, write).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timeout",
        )),
    };
    buf.clear();
    result
}
