//! The trace header we add (RFC 5321 §4.4): `Received:` naming the client and us.
//!
//! Owns: the header text and an RFC 5322 date. Must not: add policy headers (those come
//! from the verdict).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::pipeline::facts;
use crate::pipeline::outcome::Fact;
use crate::smtp::envelope::{Envelope, SessionInfo};

/// The `Received:` header for a message of this session, CRLF-terminated and folded.
pub fn received(info: &SessionInfo, hostname: &str, env: &Envelope) -> String {
    let helo = info.helo.as_deref().unwrap_or("unknown");
    // RFC 3848 / RFC 6531 protocol names.
    let with = match (env.smtputf8, info.esmtp, info.tls) {
        (true, _, true) => "UTF8SMTPS",
        (true, _, false) => "UTF8SMTP",
        (false, true, true) => "ESMTPS",
        (false, true, false) => "ESMTP",
        (false, false, true) => "SMTPS",
        (false, false, false) => "SMTP",
    };
    let ip = match info.client.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("IPv6:{ip}"),
    };
    // "for" only with a single recipient: more would disclose Bcc recipients to each other.
    let for_clause = match env.rcpts.as_slice() {
        [one] => format!("\r\n\tfor <{one}>"),
        _ => String::new(),
    };
    format!(
        "Received: from {helo} ([{ip}])\r\n\tby {hostname} (Portcullis) with {with} id {}{for_clause};\r\n\t{}\r\n",
        info.id,
        rfc5322_date(SystemTime::now())
    )
}

/// The authentication results of a transaction for its log line: `spf=pass dkim=fail ...`.
pub fn auth_summary(facts: &[Fact]) -> String {
    let mut out = Vec::new();
    for def in [
        &facts::SPF_MAILFROM,
        &facts::SPF_HELO,
        &facts::DKIM,
        &facts::ARC,
        &facts::DMARC,
        &facts::DMARC_POLICY,
    ] {
        if let Some(t) = facts
            .iter()
            .find(|f| f.is(def))
            .and_then(|f| f.text_of(def))
        {
            out.push(format!("{}={t}", def.name().replace(".mailfrom", "")));
        }
    }
    out.join(" ")
}

/// Formats a time as an RFC 5322 date in UTC, e.g. `Wed, 25 Nov 2026 21:30:00 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        WD[(days % 7) as usize],
        MON[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's method).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_634_016);
        assert_eq!(rfc5322_date(t), "Wed, 25 Nov 2026 19:13:36 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn received_header_shape() {
        let mut info = SessionInfo::new(
            "abc",
            "192.0.2.7:4000".parse().expect("addr"),
            "127.0.0.1:25".parse().expect("addr"),
        );
        info.helo = Some("mx.sender.example".into());
        info.esmtp = true;
        info.tls = true;
        let env = Envelope {
            rcpts: vec!["a@example.test".into()],
            ..Default::default()
        };
        let h = received(&info, "gw.example.test", &env);
        assert!(h.starts_with("Received: from mx.sender.example ([192.0.2.7])\r\n\tby gw.example.test (Portcullis) with ESMTPS id abc\r\n\tfor <a@example.test>;\r\n\t"), "{h}");
        assert!(h.ends_with("+0000\r\n"));
    }
}
