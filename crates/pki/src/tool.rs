//! `ingot cert`: what dojot's certreq script did, and a CA and server certificate for
//! users who bring their own PKI.
//!
//! `request` logs in to an Ingot (or dojot) API, makes an ECDSA P-256 key and a CSR
//! (CN = the device id) for each device **on this machine** (the private key never
//! travels), has the CA sign it (`POST /x509/v1/certificates`) and writes what
//! `mosquitto_pub --cert/--key/--cafile` need, in certreq's layout:
//! `./cert_<id>/cert.pem`, `./cert_<id>/private.key` (mode 0600) and `./ca/ca.pem`.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{Value, json};

use crate::{CertificateAuthority, PkiError, write_private};

/// Why a certificate request failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("HTTP request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{what}: HTTP {status}: {body}")]
    Api { what: String, status: u16, body: String },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// A logged-in client of the x509 API.
pub struct CertClient {
    base: String,
    http: reqwest::Client,
    jwt: String,
}

impl CertClient {
    /// Logs in (`POST /auth`); over HTTPS, the server's certificate is checked against
    /// `ca_pem` (Ingot's `tls/ca.pem`).
    pub async fn login(base: &str, user: &str, password: &str, ca_pem: Option<&[u8]>) -> Result<Self, ToolError> {
        let base = base.trim_end_matches('/').to_string();
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            let cert =
                reqwest::Certificate::from_pem(pem).map_err(|source| ToolError::Http { url: base.clone(), source })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|source| ToolError::Http { url: base.clone(), source })?;
        let (status, body) =
            send(http.post(format!("{base}/auth")).json(&json!({"username": user, "passwd": password})), &base).await?;
        match (status, body["jwt"].as_str()) {
            (200, Some(jwt)) => Ok(Self { jwt: jwt.to_string(), base, http }),
            _ => Err(ToolError::Api { what: format!("login as {user}"), status, body: body.to_string() }),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, ToolError> {
        let url = format!("{}{path}", self.base);
        let mut rb = self.http.request(method.clone(), &url).bearer_auth(&self.jwt);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let (status, value) = send(rb, &url).await?;
        if !(200..300).contains(&status) {
            return Err(ToolError::Api { what: format!("{method} {path}"), status, body: value.to_string() });
        }
        Ok(value)
    }

    /// Every device id of the user's tenant.
    pub async fn device_ids(&self) -> Result<Vec<String>, ToolError> {
        let ids = self.call(reqwest::Method::GET, "/device?idsOnly=true", None).await?;
        Ok(ids
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }

    /// Writes the CA certificate to `<out>/ca/ca.pem`.
    pub async fn save_ca(&self, out: &Path) -> Result<PathBuf, ToolError> {
        let ca = self.call(reqwest::Method::GET, "/x509/v1/ca", None).await?;
        let path = out.join("ca").join("ca.pem");
        write_file(&path, ca["caPem"].as_str().unwrap_or_default().as_bytes(), false)?;
        Ok(path)
    }

    /// A new key and certificate for `device`, written to `<out>/cert_<device>/`; returns
    /// the certificate's fingerprint.
    pub async fn request(&self, device: &str, out: &Path) -> Result<String, ToolError> {
        let key = KeyPair::generate().map_err(PkiError::from)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, device);
        let csr = params.serialize_request(&key).and_then(|c| c.pem()).map_err(PkiError::from)?;
        let body = json!({"csr": csr, "belongsTo": {"device": device}});
        let issued = self.call(reqwest::Method::POST, "/x509/v1/certificates", Some(body)).await?;
        let dir = out.join(format!("cert_{device}"));
        write_file(&dir.join("private.key"), key.serialize_pem().as_bytes(), true)?;
        write_file(&dir.join("cert.pem"), issued["certificatePem"].as_str().unwrap_or_default().as_bytes(), false)?;
        Ok(issued["certificateFingerprint"].as_str().unwrap_or_default().to_string())
    }
}

async fn send(rb: reqwest::RequestBuilder, url: &str) -> Result<(u16, Value), ToolError> {
    let resp = rb.send().await.map_err(|source| ToolError::Http { url: url.to_string(), source })?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|source| ToolError::Http { url: url.to_string(), source })?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), ToolError> {
    let io = |source| ToolError::Io { path: path.to_path_buf(), source };
    if private {
        return write_private(path, bytes).map_err(io);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)
}

/// Makes a new CA (ECDSA P-256, ten years) in `dir`: `ca.pem` and `ca.key` (0600), for
/// users who bring their own PKI (`--tls-cert`/`--tls-key` with a server certificate
/// from [`make_server`]). Refuses to overwrite an existing CA.
pub fn make_ca(dir: &Path) -> Result<(), ToolError> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert.exists() || key.exists() {
        return Err(ToolError::Io {
            path: cert,
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a CA is already there; remove it first"),
        });
    }
    let ca = CertificateAuthority::generate()?;
    write_file(&cert, ca.cert_pem.as_bytes(), false)?;
    write_file(&key, ca.key_pem.as_bytes(), true)
}

/// Issues a server certificate for `names` from the CA in `ca_dir` into `out`
/// (`server.pem`, `server.key`).
pub fn make_server(ca_dir: &Path, out: &Path, names: &[String]) -> Result<(), ToolError> {
    let ca = CertificateAuthority::from_dir(ca_dir)?.ok_or_else(|| ToolError::Io {
        path: ca_dir.join("ca.pem"),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no ca.pem and ca.key there (ingot cert ca makes them)",
        ),
    })?;
    std::fs::create_dir_all(out).map_err(|source| ToolError::Io { path: out.to_path_buf(), source })?;
    crate::issue_server(out, &ca.issuer()?, names)?;
    Ok(())
}
