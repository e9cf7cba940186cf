//! Wall-clock helpers: Unix milliseconds and RFC 3339 text.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `2026-11-25T06:31:19.123Z` (always UTC, always milliseconds).
pub fn rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => String::from("invalid"),
    }
}

/// Parses an RFC 3339 time into Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Start of the UTC hour containing `ms`.
pub fn hour_floor(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ms = 1_795_588_279_123;
        let s = rfc3339_ms(ms);
        assert_eq!(s, "2026-11-25T06:31:19.123Z");
        assert_eq!(parse_rfc3339_ms(&s), Some(ms));
        assert_eq!(parse_rfc3339_ms("2026-11-25T07:31:19.123+01:00"), Some(ms));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(hour_floor(ms), 1_795_586_400_000);
    }
}
