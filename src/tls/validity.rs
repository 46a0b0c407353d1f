//! The end of a certificate's validity period (`notAfter`), read from its DER encoding.
//!
//! Owns: the short walk through an X.509 certificate (RFC 5280 §4.1) to its `validity` and
//! the two time encodings it may use (UTCTime for years 1950–2049, GeneralizedTime
//! otherwise, both in UTC with seconds). Nothing in the tree exposes this (rustls and webpki
//! keep their parsed certificate private; x509-parser would be a new dependency), and the
//! path to the field is fixed, so the walk is a few lines. Must not: judge the certificate
//! (rustls and webpki parse and check it; this only reads one date for the expiry gauge and
//! the refusal of an expired certificate at reload).

/// Why a certificate's validity could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(&'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read the certificate's validity: {}", self.0)
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const EXPLICIT_0: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's `notAfter`, in seconds since the Unix epoch (UTC).
pub fn not_after(der: &[u8]) -> Result<i64, Malformed> {
    let (cert, _) = expect(der, SEQUENCE, "not a certificate")?;
    let (mut tbs, _) = expect(cert, SEQUENCE, "no tbsCertificate")?;
    // version [0] EXPLICIT is absent in v1 certificates.
    if tbs.first() == Some(&EXPLICIT_0) {
        tbs = tlv(tbs)?.2;
    }
    let (_, tbs) = expect(tbs, INTEGER, "no serialNumber")?;
    let (_, tbs) = expect(tbs, SEQUENCE, "no signature algorithm")?;
    let (_, tbs) = expect(tbs, SEQUENCE, "no issuer")?;
    let (validity, _) = expect(tbs, SEQUENCE, "no validity")?;
    let (_, _, after) = tlv(validity)?;
    let (tag, value, _) = tlv(after)?;
    match tag {
        UTC_TIME => utc_time(value),
        GENERALIZED_TIME => generalized_time(value),
        _ => Err(Malformed("notAfter is not a time")),
    }
}

/// One TLV whose tag must be `tag`: (its contents, what follows it).
fn expect<'a>(
    buf: &'a [u8],
    tag: u8,
    missing: &'static str,
) -> Result<(&'a [u8], &'a [u8]), Malformed> {
    match tlv(buf)? {
        (t, value, rest) if t == tag => Ok((value, rest)),
        _ => Err(Malformed(missing)),
    }
}

/// One DER TLV with a one-byte tag and a definite length: (tag, contents, what follows).
fn tlv(buf: &[u8]) -> Result<(u8, &[u8], &[u8]), Malformed> {
    let truncated = Malformed("truncated");
    let (&tag, rest) = buf.split_first().ok_or(truncated)?;
    let (&first, rest) = rest.split_first().ok_or(truncated)?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let bytes = rest.get(..n).ok_or(truncated)?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, &rest[n..])
        }
        _ => return Err(Malformed("unsupported length")),
    };
    let value = rest.get(..len).ok_or(truncated)?;
    Ok((tag, value, &rest[len..]))
}

/// `YYMMDDHHMMSSZ`; years 50–99 are 19xx, 00–49 are 20xx (RFC 5280 §4.1.2.5.1).
fn utc_time(v: &[u8]) -> Result<i64, Malformed> {
    if v.len() != 13 || v[12] != b'Z' {
        return Err(Malformed("UTCTime is not YYMMDDHHMMSSZ"));
    }
    let yy = digits(&v[0..2])?;
    let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
    civil(year, &v[2..12])
}

/// `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5.2).
fn generalized_time(v: &[u8]) -> Result<i64, Malformed> {
    if v.len() != 15 || v[14] != b'Z' {
        return Err(Malformed("GeneralizedTime is not YYYYMMDDHHMMSSZ"));
    }
    civil(digits(&v[0..4])?, &v[4..14])
}

fn digits(v: &[u8]) -> Result<i64, Malformed> {
    v.iter().try_fold(0i64, |acc, b| match b {
        b'0'..=b'9' => Ok(acc * 10 + i64::from(b - b'0')),
        _ => Err(Malformed("a time has a non-digit")),
    })
}

/// `MMDDHHMMSS` of `year` as Unix seconds.
fn civil(year: i64, rest: &[u8]) -> Result<i64, Malformed> {
    let field = |i: usize| digits(&rest[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(Malformed("a time is out of range"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_until(year: i32, month: u8, day: u8) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["gw.example.test".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_utc_time_and_generalized_time() {
        // Before 2050 the date is a UTCTime, from 2050 on a GeneralizedTime (RFC 5280).
        assert_eq!(not_after(&cert_until(2030, 1, 2)), Ok(1_893_542_400));
        assert_eq!(not_after(&cert_until(2060, 5, 6)), Ok(2_851_027_200));
    }

    #[test]
    fn times_convert_at_their_edges() {
        assert_eq!(utc_time(b"000229120000Z"), Ok(951_825_600));
        assert_eq!(utc_time(b"991231235959Z"), Ok(946_684_799));
        assert_eq!(utc_time(b"491231235959Z"), Ok(2_524_607_999));
        assert_eq!(generalized_time(b"19700101000000Z"), Ok(0));
        assert!(utc_time(b"9912312359Z").is_err(), "no seconds");
        assert!(utc_time(b"991331235959Z").is_err(), "month 13");
        assert!(generalized_time(b"2030010200000+0100").is_err());
    }

    #[test]
    fn refuses_what_is_not_a_certificate() {
        let der = cert_until(2030, 1, 2);
        assert!(not_after(b"").is_err());
        assert!(not_after(b"-----BEGIN CERTIFICATE-----").is_err());
        assert!(not_after(&der[..der.len() / 2]).is_err(), "truncated");
        assert!(
            not_after(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err(),
            "no tbs"
        );
    }
}
