//! The fact ledger of one connection: every fact the checks, the deferred lookups and the
//! counting steps found, kept by the stage it belongs to.
//!
//! Owns: which facts hold where. Connect facts (and those of deferred connect lookups,
//! whenever they settle) hold for the connection; HELO facts until the next EHLO/HELO or
//! STARTTLS; MAIL facts for the transaction; a recipient's RCPT facts join the transaction
//! only once that recipient is accepted (a refused 101st recipient must not make the whole
//! message fail); DATA facts join at the end of the message. Must not: decide anything.

use crate::pipeline::outcome::Fact;

/// The facts of one connection, by stage.
#[derive(Debug, Default)]
pub struct Ledger {
    connect: Vec<Fact>,
    helo: Vec<Fact>,
    transaction: Vec<Fact>,
    recipients: Vec<Fact>,
}

impl Ledger {
    /// Facts of the connect stage (deferred lookups included).
    pub fn add_connect(&mut self, facts: impl IntoIterator<Item = Fact>) {
        self.connect.extend(facts);
    }

    /// The facts of an accepted EHLO/HELO, replacing those of an earlier one.
    pub fn set_helo(&mut self, facts: Vec<Fact>) {
        self.helo = facts;
    }

    /// STARTTLS: what the client said before no longer counts.
    pub fn clear_helo(&mut self) {
        self.helo.clear();
    }

    /// Facts of the transaction (MAIL, counting steps, DATA).
    pub fn add_transaction(&mut self, facts: impl IntoIterator<Item = Fact>) {
        self.transaction.extend(facts);
    }

    /// The RCPT facts of a recipient that was accepted.
    pub fn add_recipient(&mut self, facts: impl IntoIterator<Item = Fact>) {
        self.recipients.extend(facts);
    }

    /// The transaction ended (message answered, RSET, EHLO, a new MAIL).
    pub fn reset_transaction(&mut self) {
        self.transaction.clear();
        self.recipients.clear();
    }

    /// The connect stage's facts alone (what a new greeting is judged with).
    pub fn connect(&self) -> Vec<Fact> {
        self.connect.clone()
    }

    /// What holds for the whole connection: connect, then HELO.
    pub fn connection(&self) -> Vec<Fact> {
        self.connect.iter().chain(&self.helo).cloned().collect()
    }

    /// What holds for a transaction's next step before DATA: the connection's facts and
    /// the transaction's.
    pub fn transaction(&self) -> Vec<Fact> {
        self.connect
            .iter()
            .chain(&self.helo)
            .chain(&self.transaction)
            .cloned()
            .collect()
    }

    /// What holds for the message: the transaction's facts and those of every accepted
    /// recipient.
    pub fn message(&self) -> Vec<Fact> {
        self.connect
            .iter()
            .chain(&self.helo)
            .chain(&self.transaction)
            .chain(&self.recipients)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::facts;

    #[test]
    fn stages_hold_where_they_belong() {
        let mut l = Ledger::default();
        l.add_connect([Fact::text(&facts::CLIENT_IP, "192.0.2.1")]);
        l.set_helo(vec![Fact::text(&facts::HELO, "a")]);
        l.set_helo(vec![Fact::text(&facts::HELO, "b")]);
        l.add_transaction([Fact::text(&facts::MAIL_FROM, "x@y")]);
        l.add_recipient([Fact::text(&facts::RCPT, "r@y")]);
        let names = |f: Vec<Fact>| f.into_iter().map(|f| f.to_string()).collect::<Vec<_>>();
        assert_eq!(names(l.connection()), ["client.ip=192.0.2.1", "helo=b"]);
        assert_eq!(
            names(l.transaction()),
            ["client.ip=192.0.2.1", "helo=b", "mail_from=x@y"]
        );
        assert_eq!(l.message().len(), 4);
        l.reset_transaction();
        assert_eq!(l.message().len(), 2);
        l.clear_helo();
        assert_eq!(names(l.message()), ["client.ip=192.0.2.1"]);
    }
}
