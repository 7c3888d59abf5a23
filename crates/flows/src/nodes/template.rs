//! `template`: renders a mustache template over the message into one property, as text
//! or parsed as JSON (`output: "json"`). flowbroker used the `mustache` npm package.
//!
//! The renderer is Ingot's own, small and sandboxed: variables (`{{a.b}}` HTML-escaped as
//! mustache.js does, `{{{a.b}}}` and `{{& a.b}}` raw), sections (`{{#a}}…{{/a}}`, over
//! a list or when truthy) and inverted sections (`{{^a}}…{{/a}}`), comments; no
//! partials, lambdas or delimiter changes. The template is parsed when the flow is saved
//! (a syntax error is a 400); rendering stops at [`MAX_OUTPUT`] bytes and
//! [`MAX_STEPS`] steps, so no template can make a message huge or spin. The Rust
//! mustache crates either need compile-time types or are unmaintained; this is the
//! subset flows use.

use serde_json::{Map, Value};

use super::{Outputs, opt_str};
use crate::{FlowError, path};

/// Most bytes one rendering may produce.
pub const MAX_OUTPUT: usize = 256 * 1024;
/// Most tags one rendering may evaluate (sections over lists repeat their tags).
pub const MAX_STEPS: usize = 100_000;
/// Deepest section nesting.
const MAX_DEPTH: usize = 16;

#[derive(Debug)]
pub struct Template {
    field: String,
    parts: Vec<Part>,
    json: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var { path: String, escape: bool },
    Section { path: String, inverted: bool, body: Vec<Part> },
}

impl Template {
    pub fn parse(node: &Map<String, Value>) -> Result<Self, String> {
        let field = opt_str(node, "field").filter(|f| !f.is_empty()).unwrap_or("payload").to_string();
        let text = opt_str(node, "template").unwrap_or("");
        let parts = match opt_str(node, "syntax").unwrap_or("mustache") {
            "mustache" | "handlebars" => parse(text)?,
            "plain" => vec![Part::Text(text.to_string())],
            other => return Err(format!("syntax '{other}' is not supported (mustache, plain)")),
        };
        let json = match opt_str(node, "output").unwrap_or("str") {
            "str" => false,
            "json" => true,
            other => return Err(format!("output '{other}' is not supported (str, json)")),
        };
        Ok(Self { field, parts, json })
    }

    pub fn run(&self, mut msg: Value) -> Result<Outputs, FlowError> {
        let mut out = String::new();
        let mut steps = 0;
        render(&self.parts, &mut vec![&msg], &mut out, &mut steps)?;
        let value = if self.json {
            serde_json::from_str(&out).map_err(|e| FlowError::Node(format!("the rendered text is not JSON: {e}")))?
        } else {
            Value::String(out)
        };
        path::set(&mut msg, &self.field, value)?;
        Ok(vec![Some(msg)])
    }
}

/// Parses a template into parts; unbalanced sections and unclosed tags are errors.
fn parse(text: &str) -> Result<Vec<Part>, String> {
    // A stack of (section path, inverted, parts so far); the bottom is the template.
    let mut stack: Vec<(String, bool, Vec<Part>)> = vec![(String::new(), false, Vec::new())];
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let top = &mut stack.last_mut().expect("the bottom is never popped").2;
        if open > 0 {
            top.push(Part::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let (tag, next) = if let Some(inner) = after.strip_prefix('{') {
            let close = inner.find("}}}").ok_or("a {{{ tag is not closed with }}}")?;
            (format!("&{}", &inner[..close]), &inner[close + 3..])
        } else {
            let close = after.find("}}").ok_or("a {{ tag is not closed with }}")?;
            (after[..close].to_string(), &after[close + 2..])
        };
        rest = next;
        let tag = tag.trim();
        let (sigil, name) = match tag.chars().next() {
            Some(c @ ('#' | '^' | '/' | '&' | '!')) => (Some(c), tag[1..].trim().to_string()),
            _ => (None, tag.to_string()),
        };
        match sigil {
            Some('!') => {}
            Some('#' | '^') => {
                if stack.len() > MAX_DEPTH {
                    return Err(format!("sections nest deeper than {MAX_DEPTH}"));
                }
                stack.push((name, sigil == Some('^'), Vec::new()));
            }
            Some('/') => {
                let (open_name, inverted, body) =
                    stack.pop().filter(|_| !stack.is_empty()).ok_or(format!("{{{{/{name}}}}} closes no section"))?;
                if open_name != name {
                    return Err(format!("{{{{/{name}}}}} closes section '{open_name}'"));
                }
                stack.last_mut().expect("checked above").2.push(Part::Section { path: name, inverted, body });
            }
            Some('&') => stack.last_mut().expect("never empty").2.push(Part::Var { path: name, escape: false }),
            _ => stack.last_mut().expect("never empty").2.push(Part::Var { path: name, escape: true }),
        }
    }
    if !rest.is_empty() {
        stack.last_mut().expect("never empty").2.push(Part::Text(rest.to_string()));
    }
    if stack.len() > 1 {
        return Err(format!("section '{}' is not closed", stack.last().expect("len > 1").0));
    }
    Ok(stack.pop().expect("one left").2)
}

/// Looks `name` up from the innermost context out; `.` is the current one.
fn resolve<'a>(contexts: &[&'a Value], name: &str) -> Option<&'a Value> {
    if name == "." {
        return contexts.last().copied();
    }
    contexts.iter().rev().find_map(|c| path::lookup(c, name).ok().flatten())
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    }
}

fn render(parts: &[Part], contexts: &mut Vec<&Value>, out: &mut String, steps: &mut usize) -> Result<(), FlowError> {
    for part in parts {
        *steps += 1;
        if *steps > MAX_STEPS || out.len() > MAX_OUTPUT {
            return Err(FlowError::Node(format!(
                "the template's output passed {MAX_OUTPUT} bytes or {MAX_STEPS} steps"
            )));
        }
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Var { path, escape } => {
                let text = match resolve(contexts, path) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Object(_)) => "[object Object]".into(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    Some(other) => other.to_string(),
                };
                if *escape { escape_html(&text, out) } else { out.push_str(&text) }
            }
            Part::Section { path, inverted, body } => {
                let value = resolve(contexts, path);
                match (inverted, value) {
                    (true, v) if !truthy(v) => render(body, contexts, out, steps)?,
                    (true, _) => {}
                    (false, Some(Value::Array(items))) => {
                        for item in items {
                            contexts.push(item);
                            render(body, contexts, out, steps)?;
                            contexts.pop();
                        }
                    }
                    (false, Some(v)) if truthy(Some(v)) => {
                        contexts.push(v);
                        render(body, contexts, out, steps)?;
                        contexts.pop();
                    }
                    (false, _) => {}
                }
            }
        }
    }
    Ok(())
}

/// mustache.js's escaping.
fn escape_html(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '/' => out.push_str("&#x2F;"),
            '`' => out.push_str("&#x60;"),
            '=' => out.push_str("&#x3D;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render_with(template: &str, output: &str, msg: Value) -> Result<Value, FlowError> {
        let node = json!({"field": "out", "template": template, "syntax": "mustache", "output": output});
        let t = Template::parse(node.as_object().unwrap()).map_err(FlowError::Node)?;
        Ok(t.run(msg)?.remove(0).unwrap()["out"].clone())
    }

    #[test]
    fn mustache_as_flowbroker_rendered_it() {
        let msg = json!({"payload": {"v": "<b>", "n": 3, "list": [{"x": 1}, {"x": 2}], "obj": {"a": 1}, "no": false}});
        assert_eq!(render_with("{{payload.v}}", "str", msg.clone()).unwrap(), "&lt;b&gt;");
        assert_eq!(render_with("{{{payload.v}}}|{{& payload.v}}", "str", msg.clone()).unwrap(), "<b>|<b>");
        assert_eq!(render_with("{\"n\": {{payload.n}} }", "json", msg.clone()).unwrap(), json!({"n": 3}));
        assert_eq!(render_with("[{{#payload.list}}{{x}};{{/payload.list}}]", "str", msg.clone()).unwrap(), "[1;2;]");
        assert_eq!(
            render_with("{{^payload.no}}none{{/payload.no}}{{! a comment }}", "str", msg.clone()).unwrap(),
            "none"
        );
        assert_eq!(render_with("{{payload.missing}}|{{payload.obj}}", "str", msg.clone()).unwrap(), "|[object Object]");
        assert!(render_with("{\"n\": {{payload.v}}", "json", msg.clone()).is_err(), "not JSON");
    }

    #[test]
    fn bad_templates_are_refused_and_runaway_ones_stopped() {
        for bad in ["{{#a}}x", "{{/a}}", "{{#a}}{{/b}}", "{{a", "{{{a}}"] {
            let node = json!({"template": bad});
            assert!(Template::parse(node.as_object().unwrap()).is_err(), "{bad}");
        }
        let big = json!({"payload": {"list": vec![json!("x".repeat(1000)); 1000]}});
        let err = render_with("{{#payload.list}}{{.}}{{/payload.list}}", "str", big).unwrap_err();
        assert!(err.to_string().contains("bytes"), "{err}");
    }
}
