//! `geofence`: passes a message on when the position it holds is inside (or outside) a
//! polygon. The position is a `"lat, lng"` string (dojot's `geo:point`) at the
//! `geopoint` property, with or without a space after the comma (dojot #2314), or an
//! object `{"lat", "lng"}`. Fixed from flowbroker: the number pattern is anchored and
//! its `.` literal; a non-string position is an error, not a crash; a polygon of fewer
//! than three points is refused when the flow is saved.

use serde_json::{Map, Value};

use super::{Outputs, opt_str};
use crate::{FlowError, path};

#[derive(Debug)]
pub struct Geofence {
    name: Option<String>,
    inside: bool,
    points: Vec<(f64, f64)>,
    geopoint: String,
}

fn coordinate(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `"lat, lng"` or `"lat,lng"`, both decimal degrees.
pub fn parse_point(text: &str) -> Option<(f64, f64)> {
    let (lat, lng) = text.split_once(',')?;
    let (lat, lng): (f64, f64) = (lat.trim().parse().ok()?, lng.trim().parse().ok()?);
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng)).then_some((lat, lng))
}

impl Geofence {
    pub fn parse(node: &Map<String, Value>) -> Result<Self, String> {
        let inside = match opt_str(node, "filter").unwrap_or("inside") {
            "inside" => true,
            "outside" => false,
            other => return Err(format!("filter '{other}' is not inside or outside")),
        };
        let points = node
            .get("points")
            .and_then(Value::as_array)
            .ok_or("points (the polygon) must be a list")?
            .iter()
            .map(|p| {
                let lat = coordinate(p.get("latitude")).ok_or("a point without a latitude")?;
                let lng = coordinate(p.get("longitude")).ok_or("a point without a longitude")?;
                Ok((lat, lng))
            })
            .collect::<Result<Vec<_>, &str>>()?;
        if points.len() < 3 {
            return Err("the polygon needs at least three points".into());
        }
        let geopoint = opt_str(node, "geopoint")
            .filter(|g| !g.is_empty())
            .ok_or("geopoint (the message property with the position) is required")?;
        let name = opt_str(node, "name").filter(|n| !n.is_empty()).map(str::to_string);
        Ok(Self { name, inside, points, geopoint: geopoint.to_string() })
    }

    pub fn run(&self, mut msg: Value) -> Result<Outputs, FlowError> {
        let at = path::get(&msg, &self.geopoint)
            .map_err(|_| FlowError::Node(format!("no position at {} (the geofence's geopoint)", self.geopoint)))?;
        let point = match at {
            Value::String(s) => parse_point(s),
            Value::Object(o) => coordinate(o.get("lat")).zip(coordinate(o.get("lng").or_else(|| o.get("lon")))),
            _ => None,
        }
        .ok_or_else(|| FlowError::Node(format!("{at} is not a position (\"lat, lng\")")))?;
        let inside = contains(&self.points, point);
        if inside && self.inside {
            if let Some(name) = &self.name {
                let mut isat = match path::lookup(&msg, "location.isat")? {
                    Some(Value::Array(a)) => a.clone(),
                    _ => Vec::new(),
                };
                isat.push(Value::String(name.clone()));
                path::set(&mut msg, "location.isat", Value::Array(isat))?;
            }
            Ok(vec![Some(msg)])
        } else if !inside && !self.inside {
            Ok(vec![Some(msg)])
        } else {
            Ok(vec![None])
        }
    }
}

/// Whether `point` is inside the polygon (ray casting on lat/lng as plane coordinates,
/// as geolib did; fine for areas of city size).
fn contains(polygon: &[(f64, f64)], (lat, lng): (f64, f64)) -> bool {
    let mut inside = false;
    let mut j = polygon.len() - 1;
    for i in 0..polygon.len() {
        let (ai, bi) = polygon[i];
        let (aj, bj) = polygon[j];
        if (bi > lng) != (bj > lng) && lat < (aj - ai) * (lng - bi) / (bj - bi) + ai {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Chapter 11.2.2's area, near Campinas.
    fn area(filter: &str) -> Geofence {
        let node = json!({"name": "in area", "filter": filter, "geopoint": "payload.data.attrs.position", "points": [
            {"latitude": -22.80, "longitude": -47.30}, {"latitude": -22.80, "longitude": -47.24},
            {"latitude": -22.85, "longitude": -47.24}, {"latitude": -22.85, "longitude": -47.30}]});
        Geofence::parse(node.as_object().unwrap()).unwrap()
    }

    fn at(position: Value) -> Value {
        json!({"payload": {"data": {"attrs": {"position": position}}}})
    }

    #[test]
    fn inside_and_outside_with_or_without_the_space() {
        let (inside, outside) = (area("inside"), area("outside"));
        for p in ["-22.820156, -47.2682535", "-22.820156,-47.2682535", " -22.820156 ,-47.2682535 "] {
            let out = inside.run(at(json!(p))).unwrap();
            assert_eq!(out[0].as_ref().unwrap()["location"]["isat"], json!(["in area"]), "{p}");
            assert_eq!(outside.run(at(json!(p))).unwrap(), vec![None], "{p}");
        }
        assert_eq!(inside.run(at(json!("0,0"))).unwrap(), vec![None]);
        assert!(outside.run(at(json!("0,0"))).unwrap()[0].is_some());
        assert!(inside.run(at(json!({"lat": -22.82, "lng": -47.27}))).unwrap()[0].is_some());
        for bad in [json!(-22.8), json!("-22x5,1"), json!("north"), json!("91,0")] {
            assert!(inside.run(at(bad.clone())).is_err(), "{bad}");
        }
        assert!(inside.run(json!({"payload": {}})).is_err(), "no position");
    }
}
