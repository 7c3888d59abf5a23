//! The history report (dojot GUI, chapter 9.6) as CSV: one row per reading, columns
//! `timestamp,attribute,value`, RFC 4180 (CRLF, fields with a comma, quote or line break
//! quoted, quotes doubled).
//!
//! Readings and attribute names come from devices, and a report is opened in
//! spreadsheets: a text cell starting with `=`, `+`, `-`, `@` (or a tab or carriage
//! return, which some spreadsheets skip before reading a formula) is written with a
//! leading `'`, so it is shown as text and never run as a formula (CSV injection). Numbers
//! are written as numbers: a JSON number cannot hold a formula, and `-3.5` must stay a
//! value one can sum.

use model::time::{format_dojot, from_ms};
use serde_json::Value;
use store::history::Point;

/// The header row.
const HEADER: &str = "timestamp,attribute,value\r\n";

/// The whole report for `points` (oldest first).
pub fn csv(points: &[Point]) -> String {
    let mut out = String::with_capacity(HEADER.len() + points.len() * 48);
    out.push_str(HEADER);
    for p in points {
        out.push_str(&format_dojot(&from_ms(p.ts_ms)));
        out.push(',');
        push_text(&mut out, &p.attr);
        out.push(',');
        match &p.value {
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Null => {}
            Value::String(s) => push_text(&mut out, s),
            other => push_text(&mut out, &other.to_string()),
        }
        out.push_str("\r\n");
    }
    out
}

/// One text cell: defused if a spreadsheet would take it for a formula, then quoted if
/// CSV needs it.
fn push_text(out: &mut String, text: &str) {
    let defuse = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = text.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if defuse {
        out.push('\'');
    }
    if quote {
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// A file name for the report of `device_id`: only characters safe in a
/// `Content-Disposition` header and on every file system.
pub fn file_name(device_id: &str) -> String {
    let safe: String = device_id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
    format!("history-{safe}.csv")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point(attr: &str, ts_ms: i64, value: Value) -> Point {
        Point { attr: attr.into(), ts_ms, value }
    }

    #[test]
    fn rows_are_rfc_4180_with_numbers_as_numbers() {
        let report = csv(&[
            point("temperature", 1_500, json!(21.5)),
            point("temperature", 2_000, json!(-3)),
            point("on", 2_000, json!(true)),
            point("gone", 2_000, Value::Null),
            point("note", 3_000, json!("plain text")),
            point("note", 3_000, json!("a, \"quoted\"\r\nline")),
            point("pos", 4_000, json!({"lat": 1.5, "lng": -2})),
        ]);
        let expected = "timestamp,attribute,value\r\n\
                        1970-01-01T00:00:01.500000Z,temperature,21.5\r\n\
                        1970-01-01T00:00:02.000000Z,temperature,-3\r\n\
                        1970-01-01T00:00:02.000000Z,on,true\r\n\
                        1970-01-01T00:00:02.000000Z,gone,\r\n\
                        1970-01-01T00:00:03.000000Z,note,plain text\r\n\
                        1970-01-01T00:00:03.000000Z,note,\"a, \"\"quoted\"\"\r\nline\"\r\n\
                        1970-01-01T00:00:04.000000Z,pos,\"{\"\"lat\"\":1.5,\"\"lng\"\":-2}\"\r\n";
        assert_eq!(report, expected);
        assert_eq!(csv(&[]), HEADER, "an empty range is a header alone");
    }

    #[test]
    fn text_a_spreadsheet_would_run_as_a_formula_is_defused() {
        for (text, cell) in [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("=HYPERLINK(\"http://x\",\"y\")", "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""),
            ("=a,b", "\"'=a,b\""),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            let row = csv(&[point("a", 0, json!(text))]);
            let value = row.strip_prefix(HEADER).unwrap().strip_prefix("1970-01-01T00:00:00.000000Z,a,").unwrap();
            assert_eq!(value, format!("{cell}\r\n"), "{text:?}");
        }
        // Attribute names come from devices too.
        let row = csv(&[point("-cmd", 0, json!(1))]);
        assert!(row.ends_with(",'-cmd,1\r\n"), "{row}");
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(file_name("a1b2c3"), "history-a1b2c3.csv");
        assert_eq!(file_name("x\"; filename=evil.exe\r\n/../"), "history-xfilenameevilexe.csv");
    }
}
