//! Durations written with units, as in the config file: `"500ms"`, `"30s"`, `"15m"`, `"2h"`, `"1d"`.

use std::time::Duration;

/// Parses `<integer><unit>` with unit one of ms, s, m, h, d. Zero is allowed
/// here; callers that need a positive duration check it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("duration {s:?} has no number (write e.g. \"30s\")"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration {s:?}: number too large"))?;
    let ms_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("duration {s:?} needs a unit: ms, s, m, h or d")),
        other => {
            return Err(format!(
                "duration {s:?}: unknown unit {other:?} (ms, s, m, h, d)"
            ))
        }
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = parse_duration(&s);
        }
    }
}
