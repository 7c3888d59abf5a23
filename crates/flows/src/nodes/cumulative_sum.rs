//! `cumulative sum`: the sum of a value over a sliding time window (`timePeriod`
//! minutes), kept in the node's context, written to `output` (chapter 11.2.3: rain in the
//! last hour). `targetAttribute` and `timestamp` are message properties (the timestamp in
//! ms, or an ISO 8601 text). An entry older than the window, measured from the new
//! message's time, leaves the sum; a message older than the last one is refused (as
//! flowbroker's "Messy time"). Fixed: 0 is a value (flowbroker refused it), a numeric
//! text is a number (it concatenated), and the window keeps at most [`MAX_ENTRIES`].

use serde_json::{Map, Value};

use super::{Outputs, RunContext, field};
use crate::{FlowError, path};

/// Most entries one window keeps (the oldest go first).
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
pub struct CumulativeSum {
    period_ms: i64,
    target: String,
    timestamp: String,
    output: String,
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

fn millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| chrono::DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.timestamp_millis())),
        _ => None,
    }
}

impl CumulativeSum {
    pub fn parse(node: &Map<String, Value>) -> Result<Self, String> {
        let minutes = node
            .get("timePeriod")
            .and_then(number)
            .filter(|m| *m > 0.0)
            .ok_or("timePeriod must be a number of minutes above 0")?;
        Ok(Self {
            period_ms: (minutes * 60_000.0) as i64,
            target: field(node, "targetAttribute")?.to_string(),
            timestamp: field(node, "timestamp")?.to_string(),
            output: field(node, "output")?.to_string(),
        })
    }

    pub fn run(&self, mut msg: Value, ctx: &RunContext<'_>) -> Result<Outputs, FlowError> {
        let value = number(path::get(&msg, &self.target)?)
            .ok_or_else(|| FlowError::Node(format!("{} is not a number", self.target)))?;
        let ts = millis(path::get(&msg, &self.timestamp)?)
            .ok_or_else(|| FlowError::Node(format!("{} is not a time (ms or ISO 8601)", self.timestamp)))?;
        let period = self.period_ms;
        let sum = ctx.contexts.window(ctx.scope, |entries| {
            if entries.back().is_some_and(|(last, _)| *last > ts) {
                return Err(FlowError::Node("messy time: a message older than the last one".into()));
            }
            let threshold = ts - period;
            while entries.front().is_some_and(|(t, _)| *t < threshold) || entries.len() >= MAX_ENTRIES {
                entries.pop_front();
            }
            entries.push_back((ts, value));
            Ok(entries.iter().map(|(_, v)| v).sum::<f64>())
        })??;
        let sum = super::js_number(&sum.to_string()).unwrap_or(Value::Null);
        path::set(&mut msg, &self.output, sum)?;
        Ok(vec![Some(msg)])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::nodes::testing::Harness;

    /// Chapter 11.2.3: rain in the last hour.
    #[test]
    fn sums_over_the_window() {
        let node = json!({"timePeriod": 60, "targetAttribute": "payload.data.attrs.rain",
                          "timestamp": "payload.metadata.timestamp", "output": "payload.data.attrs.rain60Min"});
        let sum = CumulativeSum::parse(node.as_object().unwrap()).unwrap();
        let mut h = Harness::new();
        let mut at = |ms: i64, rain: Value| {
            let msg = json!({"payload": {"data": {"attrs": {"rain": rain}}, "metadata": {"timestamp": ms}}});
            sum.run(msg, &h.ctx(0)).map(|mut o| o.remove(0).unwrap()["payload"]["data"]["attrs"]["rain60Min"].clone())
        };
        let t0 = 1_700_000_000_000;
        assert_eq!(at(t0, json!(5)).unwrap(), json!(5));
        assert_eq!(at(t0 + 1_000, json!("10")).unwrap(), json!(15), "a numeric text is a number");
        assert_eq!(at(t0 + 2_000, json!(0)).unwrap(), json!(15), "0 is a value");
        assert_eq!(at(t0 + 3_600_000 + 500, json!(1)).unwrap(), json!(11), "the first left the hour");
        assert!(at(t0, json!(1)).is_err(), "messy time");
        assert!(at(t0 + 3_700_000, json!("wet")).is_err());
        for bad in [
            json!({"timePeriod": 0, "targetAttribute": "a", "timestamp": "t", "output": "o"}),
            json!({"timePeriod": 5, "timestamp": "t", "output": "o"}),
        ] {
            assert!(CumulativeSum::parse(bad.as_object().unwrap()).is_err(), "{bad}");
        }
    }
}
