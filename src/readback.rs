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
use crate::intake::Intake;
use crate::metrics::{Event, Limit};
use crate::smtp::reply::{self, Reply};
use crate::verify_budget::{NoRoom, Reservation};

/// A spilled message read back whole, with its room in `auth.max_verify_memory` (given back
/// when this is dropped).
pub struct ReadBack {
    /// The message.
    pub bytes: Vec<u8>,
    _room: Reservation,
}

/// Reads `intake`'s spool back when authentication needs it. `Ok(None)`: nothing to read
/// back (in memory, too large, auth off), or a read error, kept in the intake (the message
/// then gets a 451). `Err` is the answer when no room was found before `deadline` (451) or
/// the grace period ended (421).
pub async fn read_back(
    ctx: &Context,
    session: &str,
    intake: &mut Intake,
    deadline: tokio::time::Instant,
    abort: &CancellationToken,
) -> Result<Option<ReadBack>, Reply> {
    let auth = &ctx.config.auth;
    let size = intake.size();
    if !(auth.enabled && intake.spool.spilled() && size <= auth.max_verify_size.min(intake.limit()))
    {
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
            return Err(reply::VERIFY_BUSY);
        }
        Err(NoRoom::Stopped) => return Err(reply::SHUTTING_DOWN),
    };
    match intake.spool.read_all().await {
        Ok(bytes) => Ok(Some(ReadBack { bytes, _room: room })),
        Err(e) => {
            intake.set_io_error(e);
            Ok(None)
        }
    }
}

/// The whole message for the checks that verify it: what was read back, else the spool
/// when the message is still in memory and small enough for `auth.max_verify_size`;
/// `None` when authentication is off or the message is too large.
pub fn message_bytes<'a>(
    ctx: &Context,
    loaded: Option<&'a ReadBack>,
    intake: &'a Intake,
) -> Option<&'a [u8]> {
    let auth = &ctx.config.auth;
    match loaded {
        Some(read) => Some(&read.bytes),
        None if auth.enabled && intake.size() <= auth.max_verify_size => intake.spool.in_memory(),
        None => None,
    }
}
