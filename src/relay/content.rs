//! What goes to the backend: our header fields, then the message as received, minus the
//! Authentication-Results fields that forge our authserv-id.
//!
//! Owns: `Content` (the fields to prepend and the id to protect) and `ContentReader`, the
//! one chunk iterator both backends (SMTP and Maildir) send from. Must not: decide policy.

use crate::smtp::headers::HeaderFilter;
use crate::spool::{Spool, SpoolReader};

/// The relay-time additions to a message.
#[derive(Debug, Clone, Default)]
pub struct Content {
    /// Header fields to prepend (CRLF-terminated): our Received, Authentication-Results...
    pub prepend: Vec<u8>,
    /// Remove incoming Authentication-Results fields claiming this authserv-id (incoming
    /// `X-Portcullis-*` fields are removed in any case).
    pub strip_authserv_id: Option<String>,
}

impl Content {
    /// A reader over the prepended fields and the filtered spool.
    pub async fn reader<'a>(&'a self, spool: &'a mut Spool) -> std::io::Result<ContentReader<'a>> {
        Ok(ContentReader {
            prepend: Some(&self.prepend),
            filter: HeaderFilter::new(self.strip_authserv_id.as_deref()),
            // A chunk of the spool at most (64 KiB), a small message's size otherwise: the
            // buffer is per message, and a large one freed each time costs page faults.
            buf: Vec::with_capacity(spool.len().min(64 * 1024) as usize + 1024),
            reader: spool.reader().await?,
            finished: false,
        })
    }
}

/// Chunks of the message as relayed.
pub struct ContentReader<'a> {
    prepend: Option<&'a [u8]>,
    filter: HeaderFilter,
    reader: SpoolReader<'a>,
    buf: Vec<u8>,
    finished: bool,
}

impl ContentReader<'_> {
    /// The next non-empty chunk, or `None` at the end.
    pub async fn next_chunk(&mut self) -> std::io::Result<Option<&[u8]>> {
        if let Some(p) = self.prepend.take()
            && !p.is_empty()
        {
            return Ok(Some(p));
        }
        loop {
            if self.finished {
                return Ok(None);
            }
            self.buf.clear();
            match self.reader.next_chunk().await? {
                Some(chunk) => self.filter.push(chunk, &mut self.buf),
                None => {
                    self.filter.finish(&mut self.buf);
                    if self.filter.removed() > 0 {
                        tracing::info!(
                            removed = self.filter.removed(),
                            "forged header fields removed"
                        );
                    }
                    self.finished = true;
                }
            }
            if !self.buf.is_empty() {
                return Ok(Some(&self.buf));
            }
        }
    }
}
