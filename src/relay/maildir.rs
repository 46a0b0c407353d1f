//! Local delivery to Maildirs: the default backend, so a fresh machine works without Postfix.
//!
//! Owns: one Maildir per recipient under `ROOT/<domain>/<local>/`, written durably
//! (tmp/ → fsync → rename into new/ → fsync of new/). Must not: decide policy. The 250 is
//! given only after every copy is durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

use crate::error::Error;
use crate::relay::Content;
use crate::smtp::reply::{self, Reply};
use crate::spool::Spool;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Where a recipient's Maildir lives; the address is made safe for the file system.
pub fn mailbox_dir(root: &Path, rcpt: &str) -> PathBuf {
    let (local, domain) = rcpt.rsplit_once('@').unwrap_or((rcpt, "localhost"));
    let safe = |s: &str| -> String {
        let cleaned: String = s
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || "-_+=".contains(c) || (c == '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // No "." or ".." path components, no hidden directories.
        cleaned
            .trim_start_matches('.')
            .to_string()
            .chars()
            .take(128)
            .collect::<String>()
    };
    let (local, domain) = (safe(local), safe(domain));
    root.join(if domain.is_empty() {
        "_".into()
    } else {
        domain
    })
    .join(if local.is_empty() { "_".into() } else { local })
}

/// A new unique message name: seconds, microseconds, a process counter, zero-padded so that
/// names sort in the order they were made (the quarantine lists oldest first).
pub fn unique_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:06}_{:06}.portcullis",
        now.as_secs(),
        now.subsec_micros(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes one message into the Maildir `dir` as `name`, durably: `tmp/`, fsync, rename into
/// `new/`, fsync of `new/`. Creates the Maildir if needed.
pub async fn write_durably(
    dir: &Path,
    name: &str,
    content: &Content,
    spool: &mut Spool,
) -> Result<(), Error> {
    for sub in ["tmp", "new", "cur"] {
        tokio::fs::create_dir_all(dir.join(sub)).await?;
    }
    let tmp = dir.join("tmp").join(name);
    let mut file = tokio::fs::File::create(&tmp).await?;
    let mut reader = content.reader(spool).await?;
    while let Some(chunk) = reader.next_chunk().await? {
        file.write_all(chunk).await?;
    }
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&tmp, dir.join("new").join(name)).await?;
    // The rename is durable only once the directory entry is.
    tokio::fs::File::open(dir.join("new"))
        .await?
        .sync_all()
        .await?;
    Ok(())
}

/// Writes one message into each recipient's Maildir; returns the queue id.
pub async fn deliver(
    root: &Path,
    rcpts: &[String],
    content: &Content,
    spool: &mut Spool,
) -> Result<Reply, Error> {
    let id = unique_id();
    for (i, rcpt) in rcpts.iter().enumerate() {
        write_durably(
            &mailbox_dir(root, rcpt),
            &format!("{id}.{i}"),
            content,
            spool,
        )
        .await?;
    }
    Ok(reply::queued(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..2000).map(|_| unique_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn mailbox_paths_cannot_escape_the_root() {
        let root = Path::new("/r");
        assert_eq!(
            mailbox_dir(root, "Alice@Example.Test"),
            Path::new("/r/example.test/alice")
        );
        assert_eq!(
            mailbox_dir(root, "../../etc@x.test"),
            Path::new("/r/x.test/_.._etc")
        );
        assert_eq!(
            mailbox_dir(root, "postmaster"),
            Path::new("/r/localhost/postmaster")
        );
        assert_eq!(
            mailbox_dir(root, "a/b@..").parent(),
            Some(Path::new("/r/_"))
        );
    }

    #[tokio::test]
    async fn delivers_durably_to_new() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::new(1 << 20, None);
        spool
            .write(b"Subject: t\r\n\r\nhello\r\n")
            .await
            .expect("write");
        let content = Content {
            prepend: b"Received: x\r\n".to_vec(),
            strip_authserv_id: None,
        };
        let reply = deliver(
            root.path(),
            &["a@x.test".into(), "b@x.test".into()],
            &content,
            &mut spool,
        )
        .await
        .expect("deliver");
        assert_eq!(reply.code, 250);
        for who in ["a", "b"] {
            let new = root.path().join("x.test").join(who).join("new");
            let files: Vec<_> = std::fs::read_dir(&new).expect("new").collect();
            assert_eq!(files.len(), 1);
            let path = files[0].as_ref().expect("entry").path();
            let content = std::fs::read(path).expect("read");
            assert_eq!(content, b"Received: x\r\nSubject: t\r\n\r\nhello\r\n");
            assert_eq!(
                std::fs::read_dir(root.path().join("x.test").join(who).join("tmp"))
                    .expect("tmp")
                    .count(),
                0
            );
        }
    }
}
