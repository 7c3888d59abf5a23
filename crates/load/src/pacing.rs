//! Pacing math and duration parsing: pure functions, unit tested.
//!
//! With a fixed total rate R over N connections, message number `k` of connection `i`
//! is due at `(k·N + i) / R` seconds after the start: the global sequence of due times
//! is evenly spaced at 1/R, and each connection publishes every N/R seconds, the
//! connections staggered so their publishes do not bunch up.

use std::time::Duration;

/// When message `k` of connection `conn` (of `conns`) is due, from the start, at a total
/// rate of `rate` messages/s (`rate` > 0).
pub fn due_offset(conn: usize, k: u64, conns: usize, rate: f64) -> Duration {
    let global = k as f64 * conns as f64 + conn as f64;
    Duration::from_secs_f64(global / rate)
}

/// How many messages connection `conn` publishes in `window` at a total rate of `rate`
/// over `conns` connections: those whose due time is before the end of the window.
pub fn messages_in_window(conn: usize, conns: usize, rate: f64, window: Duration) -> u64 {
    let total = window.as_secs_f64() * rate; // global messages due in the window (exclusive end)
    let first = conn as f64;
    if first >= total {
        return 0;
    }
    ((total - first) / conns as f64).ceil() as u64
}

/// Parses `1500ms`, `15s`, `2m`, `1h` or a bare number of seconds (`10`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 500ms, 15s or 2m"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_evenly_spaced_over_all_connections() {
        // 4 connections at 1000 msg/s: every ms one message, each connection every 4 ms.
        let dues: Vec<Duration> = (0..2u64).flat_map(|k| (0..4).map(move |i| due_offset(i, k, 4, 1000.0))).collect();
        let ms: Vec<u128> = dues.iter().map(|d| d.as_micros()).collect();
        assert_eq!(ms, [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000]);
        assert_eq!(due_offset(3, 10, 1000, 10_000.0), Duration::from_secs_f64(10_003.0 / 10_000.0));
    }

    #[test]
    fn messages_in_a_window_add_up_to_rate_times_duration() {
        for (conns, rate, secs) in [(4usize, 1000.0, 1.0), (1000, 10_000.0, 15.0), (7, 33.0, 2.5), (200, 50.0, 1.0)] {
            let window = Duration::from_secs_f64(secs);
            let total: u64 = (0..conns).map(|i| messages_in_window(i, conns, rate, window)).sum();
            assert_eq!(total, (rate * secs).ceil() as u64, "{conns} conns at {rate}/s for {secs}s");
            // Each counted message is due inside the window, the next one is not.
            for i in 0..conns {
                let n = messages_in_window(i, conns, rate, window);
                if n > 0 {
                    assert!(due_offset(i, n - 1, conns, rate) < window);
                }
                assert!(due_offset(i, n, conns, rate) >= window);
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }
}
