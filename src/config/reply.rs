//! Replies written by the operator: `{ code: 421, enhanced: "4.7.0", text: "..." }`.
//!
//! Owns: the YAML form (`ReplySpec`) and `RefusalReply`, a connection refusal's reply checked
//! when the config is read. Must not: build reply text (`smtp::reply::custom` does).

use serde::Deserialize;

use crate::smtp::reply::{self, BadReply, Reply};

/// A reply as written in YAML; a policy rule's is checked against its action's class when
/// the policy is compiled.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplySpec {
    /// The reply code.
    pub code: u16,
    /// The enhanced status code, same class as `code`.
    pub enhanced: String,
    /// One line of text.
    pub text: String,
}

impl ReplySpec {
    /// The reply, or why it is not one.
    pub fn reply(&self) -> Result<Reply, BadReply> {
        reply::custom(self.code, &self.enhanced, &self.text)
    }
}

/// A reply that refuses a connection and closes it: RFC 5321 has 421 (§3.8) and 554 (§3.1)
/// for that, and RFC 7504 adds 521.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ReplySpec")]
pub struct RefusalReply(Reply);

/// Why a connection refusal's reply cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRefusal {
    /// Not a reply at all.
    #[error(transparent)]
    Reply(#[from] BadReply),
    /// A reply, but not one that ends a connection.
    #[error("code {0} cannot refuse a connection: use 421 (try later), 554 or 521")]
    Code(u16),
}

impl TryFrom<ReplySpec> for RefusalReply {
    type Error = BadRefusal;

    fn try_from(spec: ReplySpec) -> Result<Self, BadRefusal> {
        let reply = spec.reply()?;
        match [421, 521, 554].contains(&reply.code) {
            true => Ok(RefusalReply(reply)),
            false => Err(BadRefusal::Code(reply.code)),
        }
    }
}

impl RefusalReply {
    /// The reply to send.
    pub fn reply(&self) -> &Reply {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(code: u16, enhanced: &str) -> ReplySpec {
        ReplySpec {
            code,
            enhanced: enhanced.into(),
            text: "Go away".into(),
        }
    }

    #[test]
    fn a_refusal_closes_the_connection() {
        let ok = RefusalReply::try_from(spec(521, "5.7.1")).expect("valid");
        assert_eq!(
            (ok.reply().code, ok.reply().text.as_ref()),
            (521, "Go away")
        );
        assert_eq!(
            RefusalReply::try_from(spec(550, "5.7.1")),
            Err(BadRefusal::Code(550))
        );
        assert_eq!(
            RefusalReply::try_from(spec(421, "5.7.1")),
            Err(BadRefusal::Reply(BadReply::Enhanced {
                enhanced: "5.7.1".into(),
                class: 4
            }))
        );
    }
}
