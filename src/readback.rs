//! Reading a spilled message back whole for authentication, for both front ends (the SMTP
//! session and the milter): DKIM, ARC and DMARC need the whole message at once.
//!
//! Owns: when a message is read back (auth on, spilled, at most `auth.max_verify_size` and
//! the size limit), the wait for room in `auth.max_verify_memory` before the message's
//! deadline, and what a message that found none gets: `451 4.3.0` (or `421` at the end of the
//! shutdown grace period). It is never passed on unverified: a spoofer could otherwise slip
//! past DMARC by sending many large messages at once. Must not: verify anything.

use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::metrics::{Event, Limit};
use crate::smtp::reply::{self, Reply};
use crate::spool::Spool;
use crate::verify_budget::{NoRoom, Reservation};

/// A spilled message read back whole, with its room in `auth.max_verify_memory` (given back
/// when this is dropped).
pub struct ReadBack {
    /// The message.
    pub bytes: Vec<u8>,
    _room: Reservation,
}

/// Why a message that needed reading back was not.
#[derive(Debug)]
pub enum NotRead {
    /// No room before the deadline (451) or the grace period ended (421): the answer.
    Refused(Reply),
    /// The spool could not be read.
    Io(std::io::Error),
}

/// Reads `spool` (of `size` content octets, `limit` the size limit) back when
/// authentication needs it. `Ok(None)`: nothing to read back (in memory, too large, or
/// auth off).
pub async fn read_back(
    ctx: &Context,
    session: &str,
    spool: &mut Spool,
    (size, limit): (u64, u64),
    deadline: tokio::time::Instant,
    abort: &CancellationToken,
) -> Result<Option<ReadBack>, NotRead> {
    let auth = &ctx.config.auth;
    if !(auth.enabled && spool.spilled() && size <= auth.max_verify_size.min(limit)) {
        return Ok(None);
    }
    let waited = std::time::Instant::now();
    let room = match ctx.verify_budget.reserve(size, deadline, abort).await {
        Ok(room) => room,
        Err(NoRoom::Deadline) => {
            ctx.metrics.emit(Event::LimitHit(Limit::VerifyMemory));
            tracing::warn!(
                session,
                size,
                waited_ms = waited.elapsed().as_millis() as u64,
                "no room in auth.max_verify_memory before the DATA deadline; message deferred"
            );
            return Err(NotRead::Refused(reply::VERIFY_BUSY));
        }
        Err(NoRoom::Stopped) => return Err(NotRead::Refused(reply::SHUTTING_DOWN)),
    };
    match spool.read_all().await {
        Ok(bytes) => Ok(Some(ReadBack { bytes, _room: room })),
        Err(e) => Err(NotRead::Io(e)),
    }
}
