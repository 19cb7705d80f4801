//! Timestamps as the HTTP API writes and reads them: RFC 3339 in UTC with milliseconds
//! (`2024-05-06T07:08:09.123Z`), as Durable Functions answers `createdTime`. Pure functions over
//! milliseconds since the Unix epoch (the runtime's clock, [`crate::command::Millis`]); no
//! calendar crate.

use crate::command::Millis;

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an RFC 3339 timestamp (like 2024-05-06T07:08:09Z or 2024-05-06T09:08:09.5+02:00) at or after 1970-01-01")]
pub struct TimestampError(pub String);

/// Days since 1970-01-01 of the civil date `y-m-d` (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of `days` since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `ms` (since the epoch) as RFC 3339 UTC with milliseconds: `2024-05-06T07:08:09.123Z`.
pub fn format_millis(ms: Millis) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

/// Reads an RFC 3339 timestamp (`T` or a space between date and time, any fraction of a second,
/// `Z` or an offset `±HH:MM`) as milliseconds since the epoch; a fraction past milliseconds is
/// cut. A time before 1970 is refused.
pub fn parse_rfc3339(text: &str) -> Result<Millis, TimestampError> {
    let bad = || TimestampError(text.to_string());
    let b = text.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<u32, TimestampError> {
        let s = b.get(r).ok_or_else(bad)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d == 0
        || d > month_days[mo as usize - 1]
        || h > 23
        || mi > 59
        || s > 60
    {
        return Err(bad());
    }
    let mut i = 19;
    let mut millis = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = i64::from(oh * 60 + om);
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(bad()),
    };
    let secs = days_from_civil(i64::from(y), mo, d) * 86_400
        + i64::from(h * 3600 + mi * 60 + s.min(59))
        - offset_min * 60;
    let ms = secs
        .checked_mul(1000)
        .and_then(|v| v.checked_add(i64::from(millis)))
        .ok_or_else(bad)?;
    u64::try_from(ms).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_and_parse_back() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_714_979_289_123, "2024-05-06T07:08:09.123Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_millis(ms), text);
            assert_eq!(parse_rfc3339(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn offsets_fractions_and_separators_are_read() {
        let at = 1_714_979_289_000;
        for text in [
            "2024-05-06T07:08:09Z",
            "2024-05-06t07:08:09z",
            "2024-05-06 07:08:09Z",
            "2024-05-06T09:08:09+02:00",
            "2024-05-06T05:38:09-01:30",
            "2024-05-06T07:08:09.0000001Z",
        ] {
            assert_eq!(parse_rfc3339(text), Ok(at), "{text}");
        }
        assert_eq!(parse_rfc3339("2024-05-06T07:08:09.5Z"), Ok(at + 500));
        assert_eq!(parse_rfc3339("2024-05-06T07:08:09.1239Z"), Ok(at + 123));
    }

    #[test]
    fn malformed_or_impossible_timestamps_are_refused() {
        for text in [
            "",
            "2024-05-06",
            "2024-05-06T07:08:09",
            "2024-13-06T07:08:09Z",
            "2023-02-29T07:08:09Z",
            "2024-05-06T24:00:00Z",
            "2024-05-06T07:08:09.Z",
            "2024-05-06T07:08:09+0200",
            "2024-05-06T07:08:09Zjunk",
            "1969-12-31T23:59:59Z",
            "+2024-05-06T07:08:09Z",
            "２０２４-05-06T07:08:09Z",
        ] {
            assert!(parse_rfc3339(text).is_err(), "{text}");
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        for day in (0..146_097 * 2).step_by(7) {
            let ms = day as u64 * 86_400_000 + 45_296_789;
            assert_eq!(parse_rfc3339(&format_millis(ms)), Ok(ms));
        }
    }
}
