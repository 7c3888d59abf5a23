//! `switch`: routes a message to the outputs whose rule holds for one of its values
//! (node-red's switch as flowbroker ran it). Rules `eq neq lt lte gt gte btwn cont regex
//! true false null nnull else`; `checkall: "false"` stops at the first match.
//!
//! As flowbroker: `eq`/`neq` are strict (the number 10 is not the string "10": give the
//! rule value type `num` for numeric readings), the relational rules compare numbers
//! when either side is one, `case: true` makes a regex ignore case, and `else` holds
//! when no rule since the previous `else` did. Fixed: a bad regex is refused when the
//! flow is saved, not at the first message.

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::{Outputs, field, js_number, opt_str, rules};
use crate::{FlowError, path};

#[derive(Debug)]
pub struct Switch {
    property: String,
    rules: Vec<Rule>,
    check_all: bool,
}

#[derive(Debug)]
enum Rule {
    Eq(Value),
    Neq(Value),
    Lt(Value),
    Lte(Value),
    Gt(Value),
    Gte(Value),
    Between(Value, Value),
    Contains(String),
    Regex(Regex),
    True,
    False,
    Null,
    NotNull,
    Else,
}

/// A rule's value, typed by its `vt` (`num`, `str`, `bool`, `json`; others as strings).
fn typed(v: Option<&Value>, vt: Option<&str>) -> Result<Value, String> {
    let v = v.cloned().unwrap_or(Value::Null);
    let text = match &v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(match vt.unwrap_or("str") {
        "num" => js_number(&text).ok_or_else(|| format!("'{text}' is not a number"))?,
        "bool" => Value::Bool(matches!(text.to_lowercase().as_str(), "true" | "1")),
        "json" => serde_json::from_str(&text).map_err(|e| format!("'{text}' is not JSON: {e}"))?,
        _ => match v {
            Value::String(_) => v,
            other => Value::String(other.to_string()),
        },
    })
}

impl Switch {
    pub fn parse(node: &Map<String, Value>) -> Result<Self, String> {
        let property = opt_str(node, "property").unwrap_or("payload").to_string();
        let rules = rules(node)?
            .into_iter()
            .map(|(i, r)| {
                let t = field(r, "t").map_err(|e| format!("rule {i}: {e}"))?;
                let v = || typed(r.get("v"), r.get("vt").and_then(Value::as_str)).map_err(|e| format!("rule {i}: {e}"));
                let text = || opt_str(r, "v").unwrap_or("").to_string();
                Ok(match t {
                    "eq" => Rule::Eq(v()?),
                    "neq" => Rule::Neq(v()?),
                    "lt" => Rule::Lt(v()?),
                    "lte" => Rule::Lte(v()?),
                    "gt" => Rule::Gt(v()?),
                    "gte" => Rule::Gte(v()?),
                    "btwn" => {
                        let v2 = typed(r.get("v2"), r.get("v2t").and_then(Value::as_str))
                            .map_err(|e| format!("rule {i}: {e}"))?;
                        Rule::Between(v()?, v2)
                    }
                    "cont" => Rule::Contains(text()),
                    "regex" => {
                        let ignore_case = r.get("case").and_then(Value::as_bool).unwrap_or(false);
                        let re = RegexBuilder::new(&text())
                            .case_insensitive(ignore_case)
                            .size_limit(1 << 20)
                            .build()
                            .map_err(|e| format!("rule {i}: bad regex: {e}"))?;
                        Rule::Regex(re)
                    }
                    "true" => Rule::True,
                    "false" => Rule::False,
                    "null" => Rule::Null,
                    "nnull" => Rule::NotNull,
                    "else" => Rule::Else,
                    other => return Err(format!("rule {i}: unknown operator '{other}'")),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let check_all = node.get("checkall").and_then(Value::as_str) != Some("false");
        Ok(Self { property, rules, check_all })
    }

    /// One output per rule.
    pub fn outputs(&self) -> usize {
        self.rules.len()
    }

    pub fn run(&self, msg: Value) -> Result<Outputs, FlowError> {
        let value = path::lookup(&msg, &self.property)?;
        let mut out: Outputs = Vec::with_capacity(self.rules.len());
        let mut none_matched = true;
        for rule in &self.rules {
            let hit = match rule {
                // An else starts the count again, whether it held or not.
                Rule::Else => std::mem::replace(&mut none_matched, true),
                other => {
                    let hit = other.holds(value);
                    none_matched &= !hit;
                    hit
                }
            };
            if hit {
                out.push(Some(msg.clone()));
                if !self.check_all {
                    break;
                }
            } else {
                out.push(None);
            }
        }
        Ok(out)
    }
}

/// A JavaScript-like number for the relational rules (`undefined` and objects are NaN).
fn number(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) if s.trim().is_empty() => 0.0,
        Some(Value::String(s)) => s.trim().parse().unwrap_or(f64::NAN),
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(Value::Null) => 0.0,
        _ => f64::NAN,
    }
}

/// Compares as JavaScript's `<` family: two strings as strings, anything else as numbers.
fn compare(a: Option<&Value>, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Some(Value::String(x)), Value::String(y)) => Some(x.cmp(y)),
        _ => number(a).partial_cmp(&number(Some(b))),
    }
}

/// Strict equality: same type and value (numbers by value).
fn strict_eq(a: Option<&Value>, b: &Value) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Some(x), y) => x == y,
        (None, _) => false,
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "undefined".into(),
    }
}

impl Rule {
    fn holds(&self, a: Option<&Value>) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Self::Eq(v) => strict_eq(a, v),
            Self::Neq(v) => !strict_eq(a, v),
            Self::Lt(v) => compare(a, v) == Some(Less),
            Self::Lte(v) => matches!(compare(a, v), Some(Less | Equal)),
            Self::Gt(v) => compare(a, v) == Some(Greater),
            Self::Gte(v) => matches!(compare(a, v), Some(Greater | Equal)),
            Self::Between(lo, hi) => {
                matches!(compare(a, lo), Some(Greater | Equal)) && matches!(compare(a, hi), Some(Less | Equal))
            }
            Self::Contains(s) => text(a).contains(s.as_str()),
            Self::Regex(re) => re.is_match(&text(a)),
            Self::True => a == Some(&Value::Bool(true)),
            Self::False => a == Some(&Value::Bool(false)),
            Self::Null => matches!(a, None | Some(Value::Null)),
            Self::NotNull => !matches!(a, None | Some(Value::Null)),
            Self::Else => unreachable!("else is decided by the rules before it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn switch(rules: Value, checkall: &str) -> Switch {
        let node = json!({"property": "payload.v", "rules": rules, "checkall": checkall});
        Switch::parse(node.as_object().unwrap()).unwrap()
    }

    fn fired(s: &Switch, v: Value) -> Vec<bool> {
        s.run(json!({"payload": {"v": v}})).unwrap().iter().map(Option::is_some).collect()
    }

    #[test]
    fn rules_hold_as_flowbrokers() {
        // The kitchen: below 40 is fine, anything else is a fire.
        let kitchen = switch(json!([{"t": "lt", "v": "40", "vt": "num"}, {"t": "else"}]), "true");
        assert_eq!(fired(&kitchen, json!(30)), [true, false]);
        assert_eq!(fired(&kitchen, json!(45)), [false, true]);
        assert_eq!(fired(&kitchen, json!("25")), [true, false], "a numeric string compares as a number");
        let all = switch(
            json!([{"t": "gt", "v": "5", "vt": "num"}, {"t": "gt", "v": "10", "vt": "num"}, {"t": "else"}]),
            "true",
        );
        assert_eq!(fired(&all, json!(12)), [true, true, false]);
        let first = switch(
            json!([{"t": "gt", "v": "5", "vt": "num"}, {"t": "gt", "v": "10", "vt": "num"}, {"t": "else"}]),
            "false",
        );
        assert_eq!(fired(&first, json!(12)), [true]);
        let elses = switch(json!([{"t": "eq", "v": "a"}, {"t": "else"}, {"t": "eq", "v": "b"}, {"t": "else"}]), "true");
        assert_eq!(fired(&elses, json!("b")), [false, true, true, false]);
        let twice = switch(json!([{"t": "eq", "v": "a"}, {"t": "else"}, {"t": "else"}]), "true");
        assert_eq!(fired(&twice, json!("c")), [false, true, true], "an else does not count as a match");
        let strict = switch(json!([{"t": "eq", "v": "10", "vt": "str"}, {"t": "eq", "v": "10", "vt": "num"}]), "true");
        assert_eq!(fired(&strict, json!(10)), [false, true], "eq is strict");
        let misc = switch(
            json!([{"t": "btwn", "v": "1", "vt": "num", "v2": "3", "v2t": "num"}, {"t": "cont", "v": "ell"},
                   {"t": "regex", "v": "^H", "case": true}, {"t": "true"}, {"t": "null"}, {"t": "nnull"}]),
            "true",
        );
        assert_eq!(fired(&misc, json!(3)), [true, false, false, false, false, true]);
        assert_eq!(fired(&misc, json!("hello")), [false, true, true, false, false, true]);
        assert_eq!(fired(&misc, json!(true)), [true, false, false, true, false, true], "true is 1, as in JavaScript");
        assert!(misc.run(json!({"payload": {}})).unwrap()[4].is_some(), "a missing value is null");
    }

    #[test]
    fn bad_rules_are_refused_when_the_flow_is_saved() {
        for rules in
            [json!([{"t": "regex", "v": "("}]), json!([{"t": "lt", "v": "x", "vt": "num"}]), json!([{"t": "huh"}])]
        {
            let node = json!({"property": "payload", "rules": rules});
            assert!(Switch::parse(node.as_object().unwrap()).is_err(), "{rules}");
        }
    }
}
