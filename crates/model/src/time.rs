//! Timestamps as devices send them.
//!
//! dojot's history accepted seconds or milliseconds (a number above 2^31 is taken as
//! milliseconds) or an ISO 8601 string; its VerneMQ bridge ignored the device's time
//! altogether (dojot issue #2186). Ingot honours it.

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};
use serde_json::Value;

/// Numbers above this are milliseconds since the epoch, below it seconds.
const MS_THRESHOLD: f64 = 2_147_483_648.0; // 2^31

/// Reads a device-supplied timestamp: integer or float seconds/milliseconds, or ISO 8601.
pub fn parse_device_timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => {
            let x = n.as_f64()?;
            if !x.is_finite() || x < 0.0 {
                return None;
            }
            let ms = if x > MS_THRESHOLD { x } else { x * 1000.0 };
            // Beyond year 9999 chrono cannot represent it; treat as invalid.
            if ms > 253_402_300_799_000.0 {
                return None;
            }
            Utc.timestamp_millis_opt(ms as i64).single()
        }
        Value::String(s) => parse_iso(s),
        _ => None,
    }
}

/// Whether RFC 3339 (so dojot's history format, [`format_dojot`]) can write `t`: years
/// 0000 to 9999 in UTC. Readings and logins outside are refused, as the history API
/// could not show them in a form any client reads back.
pub fn is_writable(t: &DateTime<Utc>) -> bool {
    (0..=9999).contains(&t.year())
}

/// Parses strict RFC 3339 (fakeiot's timestamps), within [`is_writable`] times.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc)).filter(is_writable)
}

/// Parses ISO 8601 / RFC 3339, also the forms without a zone (taken as UTC), within
/// [`is_writable`] times.
pub fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    parse_iso_any(s).filter(is_writable)
}

fn parse_iso_any(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// dojot's history format: `2018-03-22T13:47:07.050000Z` (microseconds, `Z`).
pub fn format_dojot(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Milliseconds since the epoch, the unit Ingot stores.
pub fn to_ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_ms`]; out-of-range values clamp to the epoch.
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seconds_millis_and_iso_agree() {
        let s = parse_device_timestamp(&json!(1_700_000_000)).unwrap();
        let ms = parse_device_timestamp(&json!(1_700_000_000_000i64)).unwrap();
        let iso = parse_device_timestamp(&json!("2023-11-14T22:13:20Z")).unwrap();
        assert_eq!(s, ms);
        assert_eq!(s, iso);
        assert_eq!(format_dojot(&s), "2023-11-14T22:13:20.000000Z");
    }

    #[test]
    fn fractional_and_zoneless_forms() {
        let t = parse_device_timestamp(&json!("2018-03-22T13:47:07.05")).unwrap();
        assert_eq!(format_dojot(&t), "2018-03-22T13:47:07.050000Z");
        let t = parse_device_timestamp(&json!("2018-03-22T10:47:07-03:00")).unwrap();
        assert_eq!(format_dojot(&t), "2018-03-22T13:47:07.000000Z");
        assert_eq!(to_ms(&parse_device_timestamp(&json!(1.5)).unwrap()), 1500);
    }

    /// Found by fuzz/payload_to_device_data (FUZZING.md): `{"t": 1, "timestamp": "-2020-01-01
    /// 12:00:00.015"}` was stored with a year that RFC 3339 cannot write, so the history API
    /// answered `-2020-01-01T12:00:00.015000Z`, which no client parses back.
    #[test]
    fn times_rfc3339_cannot_write_are_refused() {
        for s in
            ["-2020-01-01 12:00:00.015", "-0001-12-31T23:59:59", "+12345-01-01T00:00:00", "0000-01-01T00:00:00+00:01"]
        {
            assert_eq!(parse_device_timestamp(&json!(s)), None, "{s}");
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
        for s in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00+00:00"] {
            let t = parse_device_timestamp(&json!(s)).expect(s);
            assert_eq!(parse_rfc3339(s), Some(t));
            assert!(DateTime::parse_from_rfc3339(&format_dojot(&t)).is_ok(), "{s}");
        }
    }

    #[test]
    fn garbage_is_none() {
        for v in [json!("yesterday"), json!(-1), json!(true), json!(null), json!([1]), json!(1e300)] {
            assert_eq!(parse_device_timestamp(&v), None, "{v}");
        }
    }
}
