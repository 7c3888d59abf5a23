//! The few HTTP API calls the load generator needs: log in, provision devices with
//! secrets, read a device's newest `seq` from history.

use std::sync::RwLock;

use serde_json::{Value, json};

use crate::LoadError;

/// Largest `count` of one `POST /device` (Ingot's default limit).
const DEVICES_PER_REQUEST: usize = 10_000;

/// An HTTP API client holding a JWT (renewed once on 401: runs may outlive its 420 s).
pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
    user: String,
    password: String,
    jwt: RwLock<String>,
}

impl Api {
    pub async fn login(base: &str, user: &str, password: &str) -> Result<Self, LoadError> {
        if password.is_empty() {
            return Err(LoadError::Args(format!(
                "the password of {user} is needed to provision devices: --password or INGOT_LOAD_PASSWORD"
            )));
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|source| LoadError::Http { context: "building the HTTP client".into(), source })?;
        let api = Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            user: user.to_string(),
            password: password.to_string(),
            jwt: RwLock::new(String::new()),
        };
        api.renew().await?;
        Ok(api)
    }

    async fn renew(&self) -> Result<(), LoadError> {
        let (status, body) = self
            .send(
                "POST /auth",
                self.http.post(self.url("/auth")).json(&json!({"username": self.user, "passwd": self.password})),
            )
            .await?;
        let jwt = match (status, body["jwt"].as_str()) {
            (200, Some(jwt)) => jwt.to_string(),
            _ => {
                return Err(LoadError::Api {
                    context: format!("login as {}", self.user),
                    status,
                    body: body.to_string(),
                });
            }
        };
        *self.jwt.write().expect("jwt lock") = jwt;
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, context: &str, rb: reqwest::RequestBuilder) -> Result<(u16, Value), LoadError> {
        let resp = rb.send().await.map_err(|source| LoadError::Http { context: context.to_string(), source })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|source| LoadError::Http { context: context.to_string(), source })?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// An authenticated request; on 401 the JWT is renewed and the request sent once more.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), LoadError> {
        let context = format!("{method} {path}");
        for attempt in 0..2 {
            let jwt = self.jwt.read().expect("jwt lock").clone();
            let mut rb = self.http.request(method.clone(), self.url(path)).bearer_auth(jwt);
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let (status, value) = self.send(&context, rb).await?;
            if status == 401 && attempt == 0 {
                self.renew().await?;
                continue;
            }
            return Ok((status, value));
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn post_ok(&self, path: &str, body: Value) -> Result<Value, LoadError> {
        let (status, value) = self.call(reqwest::Method::POST, path, Some(&body)).await?;
        if status != 200 {
            return Err(LoadError::Api { context: format!("POST {path}"), status, body: value.to_string() });
        }
        Ok(value)
    }

    /// A template with the two attributes the load publishes; returns its id.
    pub async fn create_template(&self) -> Result<String, LoadError> {
        let body = self
            .post_ok(
                "/template",
                json!({"label": "ingot-load", "attrs": [
                    {"label": "seq", "type": "dynamic", "value_type": "integer"},
                    {"label": "temperature", "type": "dynamic", "value_type": "float"}]}),
            )
            .await?;
        match &body["template"]["id"] {
            Value::Number(n) => Ok(n.to_string()),
            Value::String(s) => Ok(s.clone()),
            _ => Err(LoadError::Api { context: "POST /template".into(), status: 200, body: body.to_string() }),
        }
    }

    /// Creates `count` devices on `template` (`POST /device?count=`, in chunks); returns their ids.
    pub async fn create_devices(&self, template: &str, count: usize) -> Result<Vec<String>, LoadError> {
        let mut ids = Vec::with_capacity(count);
        while ids.len() < count {
            let n = (count - ids.len()).min(DEVICES_PER_REQUEST);
            let body =
                self.post_ok(&format!("/device?count={n}"), json!({"label": "load", "templates": [template]})).await?;
            let created = body["devices"].as_array().map(Vec::as_slice).unwrap_or_default();
            if created.len() != n {
                return Err(LoadError::Api {
                    context: format!("POST /device?count={n} answered {} devices", created.len()),
                    status: 200,
                    body: String::new(),
                });
            }
            ids.extend(created.iter().filter_map(|d| d["id"].as_str().map(str::to_string)));
        }
        Ok(ids)
    }

    /// A new credential for `device` (its MQTT password).
    pub async fn new_secret(&self, device: &str) -> Result<String, LoadError> {
        let path = format!("/device/{device}/secret");
        let body = self.post_ok(&path, json!({})).await?;
        body["secret"].as_str().map(str::to_string).ok_or_else(|| LoadError::Api {
            context: format!("POST {path}"),
            status: 200,
            body: "no secret in the answer".into(),
        })
    }

    /// A certificate for `device` (CN = its id) whose key is `key`; the certificate's PEM.
    pub async fn certificate(&self, device: &str, key: &rcgen::KeyPair) -> Result<String, LoadError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, device);
        let csr = params
            .serialize_request(key)
            .and_then(|c| c.pem())
            .map_err(|e| LoadError::Args(format!("cannot make a CSR: {e}")))?;
        let (status, body) =
            self.call(reqwest::Method::POST, "/x509/v1/certificates", Some(&json!({"csr": csr}))).await?;
        match (status, body["certificatePem"].as_str()) {
            (201, Some(pem)) => Ok(pem.to_string()),
            _ => Err(LoadError::Api { context: "POST /x509/v1/certificates".into(), status, body: body.to_string() }),
        }
    }

    /// A single-use stream ticket (kafka-ws).
    pub async fn ticket(&self) -> Result<String, LoadError> {
        let (status, body) = self.call(reqwest::Method::GET, "/kafka-ws/v1/ticket", None).await?;
        match (status, body["ticket"].as_str()) {
            (200, Some(t)) => Ok(t.to_string()),
            _ => Err(LoadError::Api { context: "GET /kafka-ws/v1/ticket".into(), status, body: body.to_string() }),
        }
    }

    /// An open Server-Sent Events response of `path`.
    pub async fn open_stream(&self, path: &str) -> Result<reqwest::Response, LoadError> {
        let jwt = self.jwt.read().expect("jwt lock").clone();
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(jwt)
            .send()
            .await
            .map_err(|source| LoadError::Http { context: format!("GET {path}"), source })?;
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            return Err(LoadError::Api {
                context: format!("GET {path}"),
                status,
                body: resp.text().await.unwrap_or_default(),
            });
        }
        Ok(resp)
    }

    /// The newest `seq` in `device`'s history, None while it has none.
    pub async fn last_seq(&self, device: &str) -> Result<Option<u64>, LoadError> {
        let path = format!("/history/device/{device}/history?attr=seq&lastN=1");
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await?;
        match status {
            200 => Ok(body.as_array().and_then(|a| a.first()).and_then(|p| p["value"].as_u64())),
            404 => Ok(None),
            _ => Err(LoadError::Api { context: format!("GET {path}"), status, body: body.to_string() }),
        }
    }
}
