//! RFC 3339 instants as epoch microseconds (UTC), the form datetimes are stored in.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 date-time into epoch microseconds; `None` if it is not one or lies
/// outside what an `i64` of microseconds holds.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let instant = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(instant.unix_timestamp_nanos() / 1_000).ok()
}

/// Formats epoch microseconds as RFC 3339 in UTC (`2026-11-27T13:49:04.123456Z`; the
/// fraction is left out when it is zero).
pub(crate) fn format_rfc3339(micros: i64) -> String {
    let nanos = i128::from(micros) * 1_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(instant) => {
            let (y, mo, d) = (instant.year(), instant.month() as u8, instant.day());
            let (h, mi, s) = (instant.hour(), instant.minute(), instant.second());
            let frac = instant.microsecond();
            let head = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            if frac == 0 {
                format!("{head}Z")
            } else {
                format!("{head}.{frac:06}Z")
            }
        }
        Err(_) => String::from("invalid-datetime"),
    }
}

/// The current time as epoch microseconds.
pub(crate) fn now_micros() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_fraction() {
        for text in ["2026-11-27T13:49:04Z", "1999-01-02T03:04:05.123456Z"] {
            let micros = parse_rfc3339(text).unwrap();
            assert_eq!(format_rfc3339(micros), text);
        }
        assert_eq!(
            parse_rfc3339("2026-11-27T14:49:04+01:00"),
            parse_rfc3339("2026-11-27T13:49:04Z")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
