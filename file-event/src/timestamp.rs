//! RFC 3339 timestamps, always written in UTC with nine fractional digits
//! (`2026-11-26T18:00:00.123456789Z`), read from any RFC 3339 form.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A point in time on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub OffsetDateTime);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(OffsetDateTime::now_utc())
    }

    /// Nanoseconds since the Unix epoch (negative before 1970).
    pub fn unix_nanos(&self) -> i128 {
        self.0.unix_timestamp_nanos()
    }

    /// Parses any RFC 3339 timestamp.
    pub fn parse(s: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(s, &Rfc3339).map(|t| Timestamp(t.to_offset(UtcOffset::UTC)))
    }

    pub fn from_unix_nanos(n: i128) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(n)
            .ok()
            .map(Timestamp)
    }
}

impl Timestamp {
    /// The RFC 3339 text of a year in 0..=9999, written digit by digit:
    /// every event is serialised with one, and `fmt`'s machinery was a
    /// measurable share of that. `None` for other years.
    fn rfc3339_digits(&self) -> Option<[u8; 30]> {
        let t = self.0.to_offset(UtcOffset::UTC);
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let mut b = *b"0000-00-00T00:00:00.000000000Z";
        put_digits(&mut b[0..4], year);
        put_digits(&mut b[5..7], u32::from(u8::from(t.month())));
        put_digits(&mut b[8..10], u32::from(t.day()));
        put_digits(&mut b[11..13], u32::from(t.hour()));
        put_digits(&mut b[14..16], u32::from(t.minute()));
        put_digits(&mut b[17..19], u32::from(t.second()));
        put_digits(&mut b[20..29], t.nanosecond());
        Some(b)
    }
}

/// Writes `v` in decimal into all of `out`, zero-padded on the left.
fn put_digits(out: &mut [u8], mut v: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = self.rfc3339_digits() {
            if let Ok(text) = std::str::from_utf8(&b) {
                return f.write_str(text);
            }
        }
        let t = self.0.to_offset(UtcOffset::UTC);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond()
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339_digits() {
            Some(b) => match std::str::from_utf8(&b) {
                Ok(text) => s.serialize_str(text),
                Err(_) => s.collect_str(self),
            },
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("timestamp {s:?} is not RFC 3339: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digit writer and `fmt` agree, for every field's range.
    #[test]
    fn digits_match_the_formatted_text() {
        let formatted = |t: &Timestamp| {
            let u = t.0.to_offset(UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                u.year(),
                u8::from(u.month()),
                u.day(),
                u.hour(),
                u.minute(),
                u.second(),
                u.nanosecond()
            )
        };
        let mut n: i128 = -62_167_219_200_000_000_000; // 0000-01-01T00:00:00Z
        let step: i128 = 86_400_000_000_000 * 37 + 3_723_000_000_123 + 999_999_999;
        let mut checked = 0;
        while let Some(t) = Timestamp::from_unix_nanos(n) {
            if t.0.year() > 9999 {
                break;
            }
            assert_eq!(t.to_string(), formatted(&t), "{n}");
            assert_eq!(
                serde_json::to_string(&t).ok(),
                Some(format!("\"{}\"", formatted(&t))),
                "{n}"
            );
            n += step;
            checked += 1;
        }
        assert!(checked > 90_000, "{checked}");
        for s in [
            "1970-01-01T00:00:00Z",
            "2026-11-27T23:59:59.999999999Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let t = Timestamp::parse(s).expect("valid");
            assert_eq!(t.to_string(), formatted(&t));
        }
    }
}
