//! Packet timestamps: nanoseconds since the Unix epoch, and their RFC 3339 rendering.
//!
//! Invariants: a [`Timestamp`] is a plain `u64` count of nanoseconds (covers the years
//! 1970..2554); conversions from capture units saturate instead of overflowing, and
//! formatting never allocates (the [`Rfc3339`] adapter writes straight into a formatter).

use std::fmt;

/// Nanoseconds per second.
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A packet time: nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Builds a timestamp from whole seconds and a nanosecond fraction, saturating at
    /// `u64::MAX` nanoseconds.
    pub fn from_parts(secs: u64, nanos: u64) -> Self {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos))
    }

    /// Whole seconds since the epoch.
    pub fn secs(self) -> u64 {
        self.0 / NANOS_PER_SEC
    }

    /// Nanoseconds past the last whole second.
    pub fn subsec_nanos(self) -> u32 {
        // The remainder is below 10^9, so it always fits a u32.
        u32::try_from(self.0 % NANOS_PER_SEC).unwrap_or(0)
    }

    /// Seconds since the epoch as a float (microsecond precision survives until 2255).
    pub fn as_secs_f64(self) -> f64 {
        self.secs() as f64 + f64::from(self.subsec_nanos()) / 1e9
    }

    /// A `Display` adapter printing `2023-01-02T03:04:05.123456789Z` without allocating.
    pub fn rfc3339(self) -> Rfc3339 {
        Rfc3339(self)
    }

    /// The RFC 3339 text with nanosecond precision, e.g. `2023-01-02T03:04:05.123456789Z`.
    pub fn to_rfc3339(self) -> String {
        // Written digit by digit: records format several per flow.
        let secs = self.secs();
        // u64 seconds / 86 400 always fits an i64, and the year is then 1970 or later.
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        if year > 9999 {
            // Outside four digits: the general formatter.
            return self.rfc3339().to_string();
        }
        let rem = secs % 86_400;
        let mut out = [0u8; 30];
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year.unsigned_abs());
        put(5, 2, u64::from(month));
        put(8, 2, u64::from(day));
        put(11, 2, rem / 3600);
        put(14, 2, rem % 3600 / 60);
        put(17, 2, rem % 60);
        put(20, 9, u64::from(self.subsec_nanos()));
        for (i, c) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (29, b'Z'),
        ] {
            out[i] = c;
        }
        out.iter().map(|&c| char::from(c)).collect()
    }
}

/// Formats a [`Timestamp`] as RFC 3339 UTC with nine fractional digits.
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339(Timestamp);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.secs();
        // u64 seconds / 86 400 always fits an i64.
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            self.0.subsec_nanos()
        )
    }
}

/// Converts a day count since 1970-01-01 (negative before it) into a proleptic
/// Gregorian (year, month 1..=12, day 1..=31); shared by every RFC 3339 writer.
///
/// The calendar repeats every 400 years (146 097 days); counting eras from 0000-03-01
/// puts the leap day at the end of each year, so month lengths follow a fixed pattern.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Month index counted from March (0) to February (11).
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // By construction day is 1..=31 and month 1..=12.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_and_known_dates() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000000000Z");
        let t = Timestamp::from_parts(1_672_628_645, 123_456_789);
        assert_eq!(t.to_rfc3339(), "2023-01-02T03:04:05.123456789Z");
        // Leap day and the end of a leap year.
        assert_eq!(
            Timestamp::from_parts(951_782_400, 0).to_rfc3339(),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            Timestamp::from_parts(1_735_603_199, 1).to_rfc3339(),
            "2024-12-30T23:59:59.000000001Z"
        );
        // Past 2038 (u32 seconds wrap for signed readers).
        assert_eq!(
            Timestamp::from_parts(4_102_444_800, 0).to_rfc3339(),
            "2100-01-01T00:00:00.000000000Z"
        );
        // The largest value still formats.
        assert!(Timestamp(u64::MAX)
            .to_rfc3339()
            .starts_with("2554-07-21T23:34:33"));
    }

    #[test]
    fn civil_matches_a_day_by_day_walk() {
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..200_000i64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn the_fast_form_is_the_display_form() {
        let mut t = 0u64;
        while t < u64::MAX / 3 {
            let ts = Timestamp(t);
            assert_eq!(ts.to_rfc3339(), ts.rfc3339().to_string());
            t = t * 3 + 987_654_321;
        }
        let max = Timestamp(u64::MAX);
        assert_eq!(max.to_rfc3339(), max.rfc3339().to_string());
    }

    #[test]
    fn secs_f64_and_parts() {
        let t = Timestamp::from_parts(10, 500_000_000);
        assert_eq!(t.secs(), 10);
        assert_eq!(t.subsec_nanos(), 500_000_000);
        assert!((t.as_secs_f64() - 10.5).abs() < 1e-9);
        assert_eq!(Timestamp::from_parts(u64::MAX, 1), Timestamp(u64::MAX));
    }
}
