//! RFC 3339 timestamps as nanoseconds since the Unix epoch.
//!
//! Owns the parser and formatter used by every mdm file format. Invariants: the parser
//! never panics and returns `None` for anything that is not a valid RFC 3339 date-time
//! from 1970 to the end of `u64` nanoseconds (year 2554); the formatter always writes UTC
//! (`Z`) and round-trips through the parser.

const NANOS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

use crate::capture::civil_from_days;

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)` into nanoseconds since the
/// Unix epoch. `t`, `z` and a space separator are accepted (RFC 3339 §5.6 note).
/// Fraction digits beyond nanoseconds are truncated. Leap seconds (`:60`) and
/// instants before 1970 return `None`.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut pos = 19;
    let mut nanos = 0u64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        let mut scale = NANOS_PER_SEC;
        while let Some(d) = b.get(pos).filter(|c| c.is_ascii_digit()) {
            scale /= 10;
            nanos += u64::from(d - b'0') * scale;
            pos += 1;
        }
        if pos == start {
            return None;
        }
    }
    let offset_secs: i64 = match b.get(pos..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2], 0, 2)?;
            let om = digits(&[*m1, *m2], 0, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = i64::from(oh * 3600 + om * 60);
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let local = days * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second);
    let utc = u64::try_from(local - offset_secs).ok()?;
    utc.checked_mul(NANOS_PER_SEC)?.checked_add(nanos)
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC, with the fraction trimmed to
/// milli-, micro- or nanoseconds (none when zero): `2024-05-01T12:00:00.250Z`.
pub fn format_rfc3339(ns: u64) -> String {
    let secs = ns / NANOS_PER_SEC;
    let frac = ns % NANOS_PER_SEC;
    // u64 seconds / 86400 always fits in i64.
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let fraction = if frac == 0 {
        String::new()
    } else if frac % 1_000_000 == 0 {
        format!(".{:03}", frac / 1_000_000)
    } else if frac % 1_000 == 0 {
        format!(".{:06}", frac / 1_000)
    } else {
        format!(".{frac:09}")
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{fraction}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `len` ASCII digits of `b` starting at `at`, as a number.
fn digits(b: &[u8], at: usize, len: usize) -> Option<u32> {
    let slice = b.get(at..at.checked_add(len)?)?;
    slice.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (era-based algorithm: shift the
/// year to start in March so the leap day is the last day of the year).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56Z"),
            Some(1_709_210_096 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_rfc3339("2021-10-18T08:42:46.449+08:00"),
            Some(1_634_517_766_449_000_000)
        );
        assert_eq!(
            parse_rfc3339("2021-10-18T00:42:46.449Z"),
            parse_rfc3339("2021-10-17T20:42:46.449-04:00")
        );
        assert_eq!(
            parse_rfc3339("1970-01-01t00:00:01.123456789123z"),
            Some(1_123_456_789)
        );
        assert_eq!(parse_rfc3339("1970-01-01 00:00:00.5Z"), Some(500_000_000));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00+01:00x",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59Z",
            "2024-01-01X00:00:00Z",
            "+024-01-01T00:00:00Z",
            "2024-01-01T00:00:00Zé",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_and_round_trips() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(1_634_517_766_449_000_000),
            "2021-10-18T00:42:46.449Z"
        );
        assert_eq!(format_rfc3339(1_500), "1970-01-01T00:00:00.000001500Z");
        assert_eq!(format_rfc3339(u64::MAX), "2554-07-21T23:34:33.709551615Z");
        for ns in [0, 1, 86_399_999_999_999, 951_782_400_000_000_000, u64::MAX] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Some(ns));
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC*") {
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn parser_never_panics_near_format(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,20})?([Zz]|[+-][0-9]{2}:[0-9]{2})?") {
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn round_trip(ns in any::<u64>()) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Some(ns));
        }
    }
}
