//! Quarantine: messages the policy sets aside are kept in a Maildir instead of being relayed,
//! with their envelope and the verdict's explanation in headers, for review and release.
//!
//! Owns: storing (durably, before the client's reply), listing, reading, deleting and
//! releasing (relaying to the backend, then deleting). Must not: decide what is quarantined.
//! The envelope travels in `X-Portcullis-Envelope-From/-To` fields at the top of the stored
//! file; release removes them (and the quarantine field) before relaying.

use std::path::PathBuf;

use crate::config::Config;
use crate::error::Error;
use crate::policy::verdict::Verdict;
use crate::relay::{Backend, ClientIdentity, Content};
use crate::smtp::command::MailParams;
use crate::smtp::reply::Reply;
use crate::spool::Spool;

const FROM: &str = "X-Portcullis-Envelope-From";
const TO: &str = "X-Portcullis-Envelope-To";
const WHY: &str = "X-Portcullis-Quarantine";

/// A quarantine Maildir.
#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
}

/// One quarantined message, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name in `new/`: the id to show, release or delete.
    pub id: String,
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// Why (`rules=…; score=…`).
    pub why: String,
    /// The Subject, if any.
    pub subject: String,
    /// Size in bytes.
    pub size: u64,
}

impl Quarantine {
    /// The quarantine at `dir` (a Maildir, created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Quarantine { dir: dir.into() }
    }

    /// Stores a message with its envelope and explanation; returns its id.
    pub async fn store(
        &self,
        from: &str,
        rcpts: &[String],
        verdict: &Verdict,
        content: &Content,
        spool: &mut Spool,
    ) -> Result<String, Error> {
        let mut head = format!(
            "{WHY}: rules={}; score={}\r\n{FROM}: <{from}>\r\n",
            verdict.rules.join(","),
            verdict.score
        );
        for rcpt in rcpts {
            head.push_str(&format!("{TO}: <{rcpt}>\r\n"));
        }
        let mut stored = content.clone();
        stored.prepend = [head.into_bytes(), stored.prepend].concat();
        let id = crate::relay::maildir::unique_id();
        crate::relay::maildir::write_durably(&self.dir, &id, &stored, spool).await?;
        Ok(id)
    }

    /// Keeps a message the policy quarantined and says what its sender hears: `Ok` with
    /// the refusal `answer` asks for (`None`: nothing, the plain answer of a delivery),
    /// `Err(451)` when it could not be stored durably (the sender retries, nothing is
    /// lost). Logged either way.
    pub async fn keep(
        &self,
        session: &str,
        answer: crate::config::schema::QuarantineAnswer,
        envelope: &crate::smtp::envelope::Envelope,
        verdict: &Verdict,
        content: &Content,
        spool: &mut Spool,
    ) -> Result<Option<Reply>, Reply> {
        match self
            .store(
                &envelope.mail_from,
                &envelope.rcpts,
                verdict,
                content,
                spool,
            )
            .await
        {
            Ok(id) => {
                tracing::info!(session, quarantine_id = %id, "message quarantined");
                Ok(refusal(answer))
            }
            Err(e) => {
                tracing::error!(session, error = %e, "quarantine store failed; client told to retry");
                Err(crate::smtp::reply::LOCAL_ERROR)
            }
        }
    }

    fn path(&self, id: &str) -> Result<PathBuf, Error> {
        // Ids are our own file names: nothing that could leave the directory.
        let valid = !id.is_empty()
            && !id.starts_with('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid {
            return Err(Error::Config(format!("{id:?} is not a quarantine id")));
        }
        Ok(self.dir.join("new").join(id))
    }

    /// The quarantine's directory (a Maildir: messages are in its `new/`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Whether a message `id` is in the quarantine (an id that could not be ours is an
    /// error).
    pub fn contains(&self, id: &str) -> Result<bool, Error> {
        Ok(self.path(id)?.is_file())
    }

    /// Every quarantined message, oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, Error> {
        let mut ids: Vec<String> = match std::fs::read_dir(self.dir.join("new")) {
            Ok(entries) => entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let bytes = self.read(&id)?;
                let (ours, message) = split_ours(&bytes);
                let subject = header_fields(message)
                    .into_iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("Subject"))
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let fields = ours;
                let get = |name: &'static str| {
                    fields
                        .iter()
                        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                Ok(Entry {
                    from: get(FROM)
                        .next()
                        .map(|v| strip_angles(&v))
                        .unwrap_or_default(),
                    to: get(TO).map(|v| strip_angles(&v)).collect(),
                    why: get(WHY).next().unwrap_or_default(),
                    subject,
                    size: bytes.len() as u64,
                    id,
                })
            })
            .collect()
    }

    /// The stored file.
    pub fn read(&self, id: &str) -> Result<Vec<u8>, Error> {
        Ok(std::fs::read(self.path(id)?)?)
    }

    /// Removes a message.
    pub fn delete(&self, id: &str) -> Result<(), Error> {
        Ok(std::fs::remove_file(self.path(id)?)?)
    }

    /// Relays a message to the backend of `config` (without XCLIENT: the original client is
    /// in its Received header) and deletes it once the backend accepted it.
    pub async fn release(&self, config: &Config, id: &str) -> Result<Reply, Error> {
        let bytes = self.read(id)?;
        let (fields, message) = split_ours(&bytes);
        let from = fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(FROM))
            .map(|(_, v)| strip_angles(v))
            .unwrap_or_default();
        let rcpts: Vec<String> = fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(TO))
            .map(|(_, v)| strip_angles(v))
            .collect();
        if rcpts.is_empty() {
            return Err(Error::Config(format!(
                "quarantined message {id} names no recipient"
            )));
        }
        let mut config = config.clone();
        config.backend.xclient = false;
        let backend = Backend::new(&config);
        let me = ClientIdentity {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            helo: Some(config.hostname.clone()),
            esmtp: true,
            name: crate::relay::ClientName::Unavailable,
        };
        let mail = MailParams {
            address: from,
            size: None,
            body: crate::smtp::command::Body::EightBitMime,
            smtputf8: false,
        };
        let mut txn = backend.begin(None, &me, &mail).await?;
        for rcpt in &rcpts {
            let reply = txn.rcpt(rcpt).await?;
            if !reply.is_positive() {
                return Err(Error::BackendRefused {
                    step: "RCPT",
                    reply,
                });
            }
        }
        let mut spool = Spool::new(usize::MAX, None);
        spool.write(message).await?;
        let (reply, _) = txn.data(&Content::default(), &mut spool).await?;
        if reply.is_positive() {
            self.delete(id)?;
        }
        Ok(reply)
    }
}

fn strip_angles(v: &str) -> String {
    v.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// The header fields of a message, unfolded: (name, value).
fn header_fields(bytes: &[u8]) -> Vec<(String, String)> {
    crate::smtp::headers::unfold(bytes)
        .into_iter()
        .filter_map(|f| {
            f.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Splits a stored file into the quarantine's own leading fields (name, value) and the
/// message. Only the leading block counts: fields with these names further down were written
/// by the sender (and are removed on the way in anyway) and must never name recipients.
fn split_ours(bytes: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let mut ours = Vec::new();
    let mut rest = bytes;
    loop {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = String::from_utf8_lossy(&rest[..end]);
        let field = line
            .split_once(':')
            .filter(|(n, _)| [FROM, TO, WHY].iter().any(|o| n.eq_ignore_ascii_case(o)));
        match field {
            Some((n, v)) if end > 0 => ours.push((n.to_string(), v.trim().to_string())),
            _ => return (ours, rest),
        }
        rest = &rest[end..];
    }
}

/// The message without the quarantine's own leading fields.
#[cfg(test)]
fn without_our_fields(bytes: &[u8]) -> Vec<u8> {
    split_ours(bytes).1.to_vec()
}

/// The refusal a sender hears for a message kept in the quarantine, per
/// `quarantine.answer`; `None` for `accept`, where it learns nothing (the plain answer of
/// any delivery: 250 in proxy mode, a discard in milter mode).
pub fn refusal(answer: crate::config::schema::QuarantineAnswer) -> Option<Reply> {
    use crate::config::schema::QuarantineAnswer;
    match answer {
        QuarantineAnswer::Accept => None,
        QuarantineAnswer::Tempfail => Some(crate::smtp::reply::POLICY_TEMPFAIL),
        QuarantineAnswer::Reject => Some(crate::smtp::reply::POLICY_REJECT),
    }
}

/// Where the quarantine of `config` lives, if one is configured.
pub fn of(config: &Config) -> Option<Quarantine> {
    config.quarantine.dir.as_deref().map(Quarantine::new)
}

/// A path helper for the CLI: the quarantine of a config, or an error saying how to set one.
pub fn required(config: &Config) -> Result<Quarantine, Error> {
    of(config).ok_or_else(|| Error::Config("no quarantine.dir in this config".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn store_list_read_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Quarantine::new(dir.path());
        let mut spool = Spool::new(1 << 20, None);
        spool
            .write(b"Subject: cheap pills\r\n\r\nbuy\r\n")
            .await
            .expect("write");
        let verdict = Verdict {
            rules: vec!["spam-score".into()],
            score: 9,
            ..Verdict::accept()
        };
        let content = Content {
            prepend: b"Received: from x\r\n".to_vec(),
            strip_authserv_id: None,
        };
        let id = q
            .store(
                "a@spam.example",
                &["u@example.test".into()],
                &verdict,
                &content,
                &mut spool,
            )
            .await
            .expect("store");
        let list = q.list().expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].from, "a@spam.example");
        assert_eq!(list[0].to, vec!["u@example.test"]);
        assert_eq!(list[0].why, "rules=spam-score; score=9");
        assert_eq!(list[0].subject, "cheap pills");
        let bytes = q.read(&id).expect("read");
        assert_eq!(
            without_our_fields(&bytes),
            b"Received: from x\r\nSubject: cheap pills\r\n\r\nbuy\r\n"
        );
        assert!(q.read("../../etc/passwd").is_err());
        assert!(q.contains(&id).expect("contains"));
        assert!(!q.contains("nosuch").expect("contains"));
        q.delete(&id).expect("delete");
        assert!(q.list().expect("list").is_empty());
        assert!(!q.contains(&id).expect("contains"));
    }
}
