//! The backend's queue id from its reply to the end of the message, so that the gateway's
//! log line for a message can be followed into the backend's log.
//!
//! Owns: recognising the id in the reply text: Postfix (`250 2.0.0 Ok: queued as 4XyzAbC12`,
//! the short hex and the long base-52 forms alike), Sendmail (`250 2.0.0 4B1A2b3C012345
//! Message accepted for delivery`) and Exim (`250 OK id=1tLx2Y-000abc-Qr`). Must not: guess:
//! a reply in none of those forms has no id.

/// The queue id in `text` (a positive reply's text), if the backend gave one.
pub fn queue_id(text: &str) -> Option<&str> {
    if let Some(at) = text.find("queued as ") {
        return token(&text[at + "queued as ".len()..]);
    }
    if let Some(at) = text
        .find(" id=")
        .or_else(|| text.starts_with("id=").then_some(0))
    {
        let rest = &text[at..];
        return token(rest.trim_start().strip_prefix("id=")?);
    }
    if let Some(id) = text.strip_suffix(" Message accepted for delivery") {
        let id = id.rsplit(' ').next()?;
        return token(id).filter(|t| t.len() == id.len());
    }
    None
}

/// The id at the start of `rest`: letters, digits and hyphens, 1 to 64 of them.
fn token(rest: &str) -> Option<&str> {
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(rest.len());
    let id = &rest[..end];
    (!id.is_empty() && id.len() <= 64).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_postfix_sendmail_and_exim() {
        assert_eq!(queue_id("Ok: queued as 4XyzAbC12"), Some("4XyzAbC12"));
        assert_eq!(queue_id("Ok: queued as 3F1E2D4C5B"), Some("3F1E2D4C5B"));
        assert_eq!(
            queue_id("2.0.0 Ok: queued as 4dLq5n0Ymqz9wWc"),
            Some("4dLq5n0Ymqz9wWc")
        );
        assert_eq!(
            queue_id("2.0.0 4B1A2b3C012345 Message accepted for delivery"),
            Some("4B1A2b3C012345")
        );
        assert_eq!(queue_id("OK id=1tLx2Y-000abc-Qr"), Some("1tLx2Y-000abc-Qr"));
        for none in ["Ok", "2.0.0 Ok", "queued as ", "Ok: queued as  ", ""] {
            assert_eq!(queue_id(none), None, "{none:?}");
        }
    }
}
