//! Durations (`90d`, `1h`, `30s`) and instants (RFC 3339) as the command
//! line and the API accept them, and nanosecond timestamps as keys store them.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A duration or time that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeSpecError {
    #[error("bad duration {0:?}: expected a number and a unit, e.g. 90d, 12h, 30m, 45s")]
    Duration(String),
    #[error("bad time {0:?}: expected RFC 3339, e.g. 2026-11-26T18:00:00Z")]
    Time(String),
    /// A space where an RFC 3339 offset's `+` was: a URL query decodes `+`
    /// as a space.
    #[error(
        "bad time {0:?}: expected RFC 3339, e.g. 2026-11-26T18:00:00+02:00; \
         in a URL query a `+` reads as a space: write it %2B"
    )]
    PlusAsSpace(String),
    #[error("time {0:?} is outside 1970..2262")]
    Range(String),
}

/// Parses `<n><unit>` with unit `s`, `m`, `h`, `d` or `w` (several terms may
/// follow each other: `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, TimeSpecError> {
    let bad = || TimeSpecError::Duration(s.to_owned());
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Clap value parser for durations.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Parses an RFC 3339 time, from 1970 to 2262 (the range of the stored
/// nanosecond timestamps), into nanoseconds since the Unix epoch.
pub fn parse_time_ns(s: &str) -> Result<i64, TimeSpecError> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| {
        let t = s.trim();
        let plus_as_space = t.rfind(' ').is_some_and(|i| {
            let with_plus = format!("{}+{}", &t[..i], &t[i + 1..]);
            OffsetDateTime::parse(&with_plus, &Rfc3339).is_ok()
        });
        if plus_as_space {
            TimeSpecError::PlusAsSpace(s.to_owned())
        } else {
            TimeSpecError::Time(s.to_owned())
        }
    })?;
    i64::try_from(t.unix_timestamp_nanos())
        .ok()
        .filter(|ns| *ns >= 0)
        .ok_or_else(|| TimeSpecError::Range(s.to_owned()))
}

/// Clap value parser for times.
pub fn time_arg(s: &str) -> Result<i64, String> {
    parse_time_ns(s).map_err(|e| e.to_string())
}

/// Nanoseconds since the epoch as RFC 3339 UTC with nine fractional
/// digits, as records write their `timestamp`.
pub fn format_ns(ns: i64) -> String {
    file_event::Timestamp::from_unix_nanos(i128::from(ns))
        .map_or_else(|| ns.to_string(), |t| t.to_string())
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// `now - d` in nanoseconds (saturating).
pub fn ns_ago(d: Duration) -> i64 {
    now_ns().saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["", "90", "d", "9x", "-1d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        let ns = parse_time_ns("2026-11-26T18:00:00.123456789Z").expect("time");
        assert_eq!(ns % 1_000_000_000, 123_456_789);
        assert_eq!(format_ns(ns), "2026-11-26T18:00:00.123456789Z");
        assert!(parse_time_ns("yesterday").is_err());
        assert_eq!(
            parse_time_ns("2026-11-26T19:00:00+01:00"),
            parse_time_ns("2026-11-26T18:00:00Z")
        );
    }

    #[test]
    fn times_outside_the_stored_range_are_refused_on_both_ends() {
        assert_eq!(parse_time_ns("1970-01-01T00:00:00Z"), Ok(0));
        for early in ["1969-12-31T23:59:59Z", "1970-01-01T01:00:00+02:00"] {
            assert_eq!(
                parse_time_ns(early),
                Err(TimeSpecError::Range(early.to_owned())),
                "{early}"
            );
        }
        let late = "2262-05-01T00:00:00Z";
        assert_eq!(
            parse_time_ns(late),
            Err(TimeSpecError::Range(late.to_owned()))
        );
    }

    #[test]
    fn a_plus_decoded_as_a_space_is_named_in_the_error() {
        let e = parse_time_ns("2026-11-28T12:20:16 02:00").expect_err("space");
        assert!(matches!(e, TimeSpecError::PlusAsSpace(_)), "{e:?}");
        assert!(e.to_string().contains("%2B"), "{e}");
        let e = parse_time_ns("2026-11-28 12:20:16 02:00").expect_err("space");
        assert!(matches!(e, TimeSpecError::PlusAsSpace(_)), "{e:?}");
        let e = parse_time_ns("2026-11-28T12:20:16 Z").expect_err("space");
        assert!(matches!(e, TimeSpecError::Time(_)), "{e:?}");
    }
}
