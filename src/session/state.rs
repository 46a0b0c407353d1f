//! The session state machine (RFC 5321 §4.1.4 command order) in one table.
//!
//! Owns: `State` and `transition`, which says whether a command is legal now and which
//! 503 it gets if not. Must not: touch the socket or the backend.

use crate::smtp::command::Command;
use crate::smtp::reply::{self, Reply};

/// Where a session is in the RFC 5321 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Banner sent; no EHLO/HELO yet.
    Connected,
    /// EHLO/HELO done; no transaction.
    Greeted,
    /// MAIL accepted; no recipient accepted yet.
    Mail,
    /// At least one recipient accepted.
    Rcpt,
    /// Inside a BDAT sequence (chunks received, LAST not yet).
    Chunking,
}

/// Checks that `cmd` is legal in `state`. Returns the refusal reply otherwise.
/// The state after a legal command is set by its handler, because it depends on the
/// outcome (a refused RCPT leaves the state unchanged).
pub fn check(state: State, cmd: &Command) -> Result<(), Reply> {
    use State::*;
    match (cmd, state) {
        // Always legal: they do not touch the transaction.
        (Command::Noop | Command::Quit | Command::Vrfy | Command::Help | Command::Rset, _) => {
            Ok(())
        }
        (Command::NotOffered(_), _) => Err(reply::NOT_IMPLEMENTED),
        // EHLO/HELO in the middle of a BDAT sequence would abandon half a message.
        (Command::Ehlo(_) | Command::Helo(_), Chunking) => Err(reply::BAD_SEQUENCE),
        (Command::Ehlo(_) | Command::Helo(_), _) => Ok(()),
        (Command::StartTls, Greeted) => Ok(()),
        (Command::StartTls, Connected) => Err(reply::NEED_HELO),
        (Command::StartTls, _) => Err(reply::BAD_SEQUENCE),
        (Command::Mail(_), Greeted) => Ok(()),
        (Command::Mail(_), Connected) => Err(reply::NEED_HELO),
        (Command::Mail(_), _) => Err(reply::NESTED_MAIL),
        (Command::Rcpt(_), Mail | Rcpt) => Ok(()),
        (Command::Rcpt(_), Connected | Greeted) => Err(reply::NEED_MAIL),
        (Command::Rcpt(_), Chunking) => Err(reply::BAD_SEQUENCE),
        (Command::Data, Rcpt) => Ok(()),
        (Command::Data, Mail) => Err(reply::NO_VALID_RECIPIENTS),
        (Command::Data, Chunking) => Err(reply::BAD_SEQUENCE),
        (Command::Data, _) => Err(reply::NEED_MAIL),
        (Command::Bdat { .. }, Rcpt | Chunking) => Ok(()),
        (Command::Bdat { .. }, Mail) => Err(reply::NO_VALID_RECIPIENTS),
        (Command::Bdat { .. }, _) => Err(reply::NEED_MAIL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::MailParams;

    fn mail() -> Command {
        Command::Mail(MailParams {
            address: "a@b.test".into(),
            size: None,
            body: Default::default(),
            smtputf8: false,
        })
    }

    #[test]
    fn rfc5321_order() {
        use State::*;
        let rcpt = Command::Rcpt("x@y.test".into());
        let bdat = Command::Bdat {
            size: 1,
            last: true,
        };
        // (command, state, expected code; 0 = legal)
        let table: Vec<(Command, State, u16)> = vec![
            (mail(), Connected, 503),
            (mail(), Greeted, 0),
            (mail(), Mail, 503),
            (mail(), Rcpt, 503),
            (rcpt.clone(), Greeted, 503),
            (rcpt.clone(), Mail, 0),
            (rcpt.clone(), Rcpt, 0),
            (Command::Data, Greeted, 503),
            (Command::Data, Mail, 554),
            (Command::Data, Rcpt, 0),
            (Command::Data, Chunking, 503),
            (bdat.clone(), Rcpt, 0),
            (bdat.clone(), Chunking, 0),
            (bdat, Mail, 554),
            (Command::StartTls, Greeted, 0),
            (Command::StartTls, Mail, 503),
            (Command::Ehlo("x".into()), Rcpt, 0),
            (Command::Ehlo("x".into()), Chunking, 503),
            (Command::Rset, Chunking, 0),
            (Command::NotOffered("AUTH"), Greeted, 502),
        ];
        for (cmd, state, code) in table {
            let got = check(state, &cmd).map(|_| 0).unwrap_or_else(|r| r.code);
            assert_eq!(got, code, "{cmd:?} in {state:?}");
        }
    }
}
