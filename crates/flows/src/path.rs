//! Message paths, as flowbroker's nodes read and write them: `payload.data.attrs.temperature`
//! is relative to the message (no `msg.` prefix), split on `.` (empty segments skipped), and
//! a number segment indexes an array. Reading a missing key is an error (the branch stops);
//! writing creates the objects on the way. Pure functions on `serde_json::Value`.

use serde_json::{Map, Value};

use crate::FlowError;

/// The segments of `path`; an empty path is an error.
fn segments(path: &str) -> Result<Vec<&str>, FlowError> {
    let parts: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() {
        return Err(FlowError::Node(format!("empty message path '{path}'")));
    }
    Ok(parts)
}

/// The value at `path`, if every segment exists.
pub fn lookup<'a>(msg: &'a Value, path: &str) -> Result<Option<&'a Value>, FlowError> {
    let mut at = msg;
    for seg in segments(path)? {
        let next = match at {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// The value at `path`; a missing one is an error ("Unknown property … requested", as
/// flowbroker said).
pub fn get<'a>(msg: &'a Value, path: &str) -> Result<&'a Value, FlowError> {
    lookup(msg, path)?.ok_or_else(|| FlowError::Node(format!("unknown property {path} requested")))
}

/// Sets `path` to `value`, creating objects on the way; an existing non-object on the
/// way is an error.
pub fn set(msg: &mut Value, path: &str, value: Value) -> Result<(), FlowError> {
    let parts = segments(path)?;
    let (last, init) = parts.split_last().expect("segments are never empty");
    let mut at = msg;
    for seg in init {
        at = match at {
            Value::Object(m) => m.entry(seg.to_string()).or_insert_with(|| Value::Object(Map::new())),
            Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return Err(FlowError::Node(format!("cannot set {path}: no element {seg}"))),
            },
            _ => return Err(FlowError::Node(format!("cannot set {path}: {seg} is not inside an object"))),
        };
    }
    match at {
        Value::Object(m) => {
            m.insert(last.to_string(), value);
            Ok(())
        }
        Value::Array(a) => match last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => Err(FlowError::Node(format!("cannot set {path}: no element {last}"))),
        },
        _ => Err(FlowError::Node(format!("cannot set {path}: its parent is not an object"))),
    }
}

/// Removes `path` (nothing if it is not there); returns what was there.
pub fn delete(msg: &mut Value, path: &str) -> Result<Option<Value>, FlowError> {
    let parts = segments(path)?;
    let (last, init) = parts.split_last().expect("segments are never empty");
    let mut at = msg;
    for seg in init {
        at = match at {
            Value::Object(m) => match m.get_mut(*seg) {
                Some(v) => v,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
    }
    Ok(match at {
        Value::Object(m) => m.remove(*last),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_read_write_and_delete_like_flowbrokers() {
        let mut msg = json!({"payload": {"data": {"attrs": {"t": 20, "list": [1, 2]}}}});
        assert_eq!(get(&msg, "payload.data.attrs.t").unwrap(), &json!(20));
        assert_eq!(get(&msg, "payload..data.attrs.list.1").unwrap(), &json!(2), "empty segments skipped");
        assert!(get(&msg, "payload.nope").is_err());
        assert_eq!(lookup(&msg, "payload.data.attrs.t.x").unwrap(), None);
        assert!(get(&msg, "").is_err());
        set(&mut msg, "output.severity", json!(4)).unwrap();
        assert_eq!(msg["output"], json!({"severity": 4}), "objects made on the way");
        set(&mut msg, "payload.data.attrs.list.0", json!(9)).unwrap();
        assert_eq!(msg["payload"]["data"]["attrs"]["list"], json!([9, 2]));
        assert!(set(&mut msg, "payload.data.attrs.t.x", json!(1)).is_err(), "20 is not an object");
        assert_eq!(delete(&mut msg, "output.severity").unwrap(), Some(json!(4)));
        assert_eq!(delete(&mut msg, "output.none.deeper").unwrap(), None);
    }
}
