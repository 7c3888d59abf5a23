//! `http`: sends an HTTP request built from the message and puts the answer on it
//! (flowbroker's http node, chapter 11.2.1). Settings: `method` (GET, POST, PUT, DELETE,
//! PATCH, or `use`: the message's `method`), `url` (mustache over the message; empty: the
//! message's `url`), `body` (a property holding `{"payload", "headers"}`, as an object or,
//! as flowbroker required, its JSON text), `response` (the property the answer goes to:
//! `{statusCode, headers, responseUrl, payload}`), `ret` (`txt`, `obj`: JSON parsed when
//! it is JSON, `bin`: the bytes as a list of numbers).
//!
//! A flow is user input that makes the server send requests, so the node is fenced (see
//! [`HttpPolicy`]): private, loopback and link-local addresses are refused unless
//! allowed (`--flow-http-allow`), the name is resolved and checked by Ingot itself (so
//! DNS cannot answer an internal address later), redirects are not followed, and
//! requests have a timeout and a cap on the answer's size. Fixed from flowbroker: a JSON
//! body gets its Content-Type, and a missing `response` setting is refused when the flow
//! is saved (it crashed flowbroker's callback).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use super::template::Template;
use super::{Outputs, opt_str};
use crate::{FlowError, path};

/// What the http node may reach, and how long and how much it may take.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Addresses that are not public but may be reached anyway (networks, or single hosts).
    pub allow: Vec<IpNet>,
    pub timeout: Duration,
    /// Largest answer body read, in bytes.
    pub max_response_bytes: usize,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self { allow: Vec::new(), timeout: Duration::from_secs(10), max_response_bytes: 1024 * 1024 }
    }
}

impl HttpPolicy {
    /// Parses `--flow-http-allow` entries: `10.0.0.0/8`, `127.0.0.1`, `::1`.
    pub fn parse_allow(list: &[String]) -> Result<Vec<IpNet>, String> {
        list.iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("'{s}' is not an address or a network (CIDR)"))
            })
            .collect()
    }

    /// Whether `ip` may be reached: a public address, or one allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip)) || is_public(ip)
    }
}

/// Not loopback, private, link-local, shared (CGNAT), unspecified, multicast, broadcast,
/// documentation, or IPv6 unique-local; IPv4-mapped IPv6 judged as IPv4.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (s[0] & 0xfe00) == 0xfc00
                    || (s[0] & 0xffc0) == 0xfe80)
            }
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ret {
    Text,
    Object,
    Binary,
}

/// A request as the message asks for it: method, URL, headers, body.
type Request = (reqwest::Method, reqwest::Url, Map<String, Value>, Option<Vec<u8>>);

#[derive(Debug)]
pub struct Http {
    /// `None`: the message's `method`.
    method: Option<reqwest::Method>,
    /// `None`: the message's `url`.
    url: Option<Template>,
    body: Option<String>,
    response: String,
    ret: Ret,
}

fn method(name: &str) -> Result<reqwest::Method, String> {
    match name.to_uppercase().as_str() {
        "GET" => Ok(reqwest::Method::GET),
        "POST" => Ok(reqwest::Method::POST),
        "PUT" => Ok(reqwest::Method::PUT),
        "DELETE" => Ok(reqwest::Method::DELETE),
        "PATCH" => Ok(reqwest::Method::PATCH),
        other => Err(format!("method '{other}' is not GET, POST, PUT, DELETE, PATCH or use")),
    }
}

impl Http {
    pub fn parse(node: &Map<String, Value>) -> Result<Self, String> {
        let method = match opt_str(node, "method").unwrap_or("GET") {
            "use" => None,
            m => Some(method(m)?),
        };
        let url = match opt_str(node, "url").filter(|u| !u.trim().is_empty()) {
            Some(u) => {
                let settings = json!({"field": "url", "template": u, "syntax": "mustache"});
                Some(Template::parse(settings.as_object().expect("an object")).map_err(|e| format!("url: {e}"))?)
            }
            None => None,
        };
        let body = opt_str(node, "body").filter(|b| !b.is_empty()).map(str::to_string);
        let response = opt_str(node, "response")
            .filter(|r| !r.is_empty())
            .ok_or("response (the message property for the answer) is required")?
            .to_string();
        let ret = match opt_str(node, "ret").unwrap_or("txt") {
            "txt" => Ret::Text,
            "obj" => Ret::Object,
            "bin" => Ret::Binary,
            other => return Err(format!("ret '{other}' is not txt, obj or bin")),
        };
        Ok(Self { method, url, body, response, ret })
    }

    /// The request the message asks for: method, URL, headers and body.
    fn request(&self, msg: &Value) -> Result<Request, FlowError> {
        let bad = |m: String| FlowError::Node(m);
        let method = match &self.method {
            Some(m) => m.clone(),
            None => method(path::get(msg, "method")?.as_str().unwrap_or_default()).map_err(bad)?,
        };
        let url = match &self.url {
            Some(t) => t
                .run(msg.clone())?
                .into_iter()
                .flatten()
                .next()
                .and_then(|m| m.get("url").and_then(Value::as_str).map(str::to_string)),
            None => path::lookup(msg, "url")?.and_then(Value::as_str).map(str::to_string),
        }
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| bad("no url: set the node's url or the message's url".into()))?;
        let url = if url.contains("://") { url } else { format!("http://{url}") };
        let url = reqwest::Url::parse(url.trim()).map_err(|e| bad(format!("bad url {url}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("{url}: only http and https are allowed")));
        }
        let mut headers = Map::new();
        let mut body = None;
        if let Some(p) = &self.body {
            let request = match path::get(msg, p)? {
                Value::String(text) => serde_json::from_str::<Value>(text)
                    .map_err(|_| bad(format!("{p} must hold {{\"payload\", \"headers\"}} (an object or its JSON)")))?,
                v @ Value::Object(_) => v.clone(),
                _ => return Err(bad(format!("{p} must hold {{\"payload\", \"headers\"}}"))),
            };
            if let Some(Value::Object(h)) = request.get("headers") {
                headers = h.clone();
            }
            body = match request.get("payload") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone().into_bytes()),
                Some(other) => {
                    if !headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
                        headers.insert("Content-Type".into(), json!("application/json"));
                    }
                    Some(other.to_string().into_bytes())
                }
            };
        }
        Ok((method, url, headers, body))
    }

    pub async fn run(
        &self,
        mut msg: Value,
        policy: &HttpPolicy,
        client: &reqwest::Client,
    ) -> Result<Outputs, FlowError> {
        let (method, url, headers, body) = self.request(&msg)?;
        // A name is checked by the client's resolver (`Fenced`); an address, here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal.filter(|ip| !policy.permits(*ip)) {
            metrics::counter!("ingot_flow_http_refused_total").increment(1);
            return Err(FlowError::Node(format!("{ip} is not a public address; allow it with --flow-http-allow")));
        }
        let mut rb = client.request(method, url.clone()).timeout(policy.timeout);
        for (k, v) in &headers {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rb = rb.header(k.as_str(), v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let mut resp = rb.send().await.map_err(|e| {
            let why = if e.is_timeout() { "no answer in time".to_string() } else { full_error(&e) };
            FlowError::Node(format!("{url}: {why}"))
        })?;
        let status = resp.status().as_u16();
        let headers: Map<String, Value> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), json!(v.to_str().unwrap_or_default())))
            .collect();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| FlowError::Node(format!("{url}: {e}")))? {
            if bytes.len() + chunk.len() > policy.max_response_bytes {
                return Err(FlowError::Node(format!(
                    "{url}: the answer is larger than {} bytes",
                    policy.max_response_bytes
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        let payload = match self.ret {
            Ret::Text => Value::String(text()),
            Ret::Object => serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text())),
            Ret::Binary => Value::Array(bytes.iter().map(|b| json!(b)).collect()),
        };
        let answer = json!({"statusCode": status, "headers": headers, "responseUrl": url.as_str(), "payload": payload});
        path::set(&mut msg, &self.response, answer)?;
        Ok(vec![Some(msg)])
    }
}

/// An error and its causes, one line (the resolver's refusal is a cause).
fn full_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Resolves names as the system does, and refuses any that has an address the policy
/// does not permit: checked where the connection is made, so a name cannot resolve to
/// a public address when checked and a private one when used.
struct Fenced(HttpPolicy);

impl reqwest::dns::Resolve for Fenced {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !policy.permits(a.ip())) {
                metrics::counter!("ingot_flow_http_refused_total").increment(1);
                let why = format!("{host} is not a public address ({}); allow it with --flow-http-allow", bad.ip());
                return Err(Box::new(std::io::Error::new(std::io::ErrorKind::PermissionDenied, why)) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client the engine gives every http node: names resolved through [`Fenced`], no
/// redirects followed, no proxies.
pub fn client(policy: &HttpPolicy) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(std::sync::Arc::new(Fenced(policy.clone())))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_or_allowed_addresses() {
        let policy = HttpPolicy {
            allow: HttpPolicy::parse_allow(&["10.1.0.0/16".into(), "::1".into()]).unwrap(),
            ..HttpPolicy::default()
        };
        for (ip, ok) in [
            ("8.8.8.8", true),
            ("127.0.0.1", false),
            ("10.1.2.3", true),
            ("10.2.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("::1", true),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("2001:4860:4860::8888", true),
        ] {
            assert_eq!(policy.permits(ip.parse().unwrap()), ok, "{ip}");
        }
        assert!(HttpPolicy::parse_allow(&["nope".into()]).is_err());
    }

    #[test]
    fn requests_are_built_as_flowbroker_built_them() {
        let node =
            json!({"method": "POST", "url": "example.com/users/{{payload.id}}", "body": "req", "response": "res"});
        let http = Http::parse(node.as_object().unwrap()).unwrap();
        let msg =
            json!({"payload": {"id": "a b"}, "req": "{\"payload\": {\"u\": 1}, \"headers\": {\"X-Key\": \"k\"}}"});
        let (method, url, headers, body) = http.request(&msg).unwrap();
        assert_eq!((method, url.as_str()), (reqwest::Method::POST, "http://example.com/users/a%20b"));
        assert_eq!(headers, json!({"X-Key": "k", "Content-Type": "application/json"}).as_object().unwrap().clone());
        assert_eq!(body.unwrap(), br#"{"u":1}"#);
        for bad in [
            json!({"method": "GET"}),
            json!({"method": "TRACE", "response": "r"}),
            json!({"ret": "xml", "response": "r"}),
        ] {
            assert!(Http::parse(bad.as_object().unwrap()).is_err(), "{bad}");
        }
        let ftp = Http::parse(json!({"url": "ftp://x/y", "response": "r"}).as_object().unwrap()).unwrap();
        assert!(ftp.request(&json!({})).is_err(), "only http and https");
    }
}
