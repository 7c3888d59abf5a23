//! Ingot's certificate authority and the TLS configuration of its listeners.
//!
//! On first start [`CertificateAuthority::load_or_create`] makes a CA (ECDSA P-256, ten
//! years) and keeps it in the store (secret `ca`: certificate and key), so that every
//! node of a cluster on one database issues under one CA; an installation from before
//! has its `<data-dir>/tls/ca.pem` and `ca.key` imported instead. Then
//! [`TlsMaterial::load_or_create`] issues this node's server certificate for `127.0.0.1`,
//! `::1`, `localhost` and the host name, and writes it under `<data-dir>/tls/` with
//! `ca.pem` (what clients trust); keys are mode 0600. Later starts reuse the server
//! certificate, re-issuing it when it is within 30 days of expiry, its names changed or
//! the CA did. A user-supplied certificate and key ([`TlsMaterial::from_files`]) replace
//! the generated server certificate.

pub mod certificates;
pub mod tool;
pub mod trusted;

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use store::SharedStore;
use time::{Duration, OffsetDateTime};

/// The one error type of the PKI room.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} holds no usable {what}")]
    BadPem { path: PathBuf, what: &'static str },
    #[error("TLS configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot keep the CA in the store: {0}")]
    Store(#[from] store::StoreError),
    #[error("the stored CA is unusable ({0}); the store was changed by hand")]
    BadStoredCa(&'static str),
    #[error("cannot verify client certificates: {0}")]
    ClientVerifier(String),
    /// A certificate signing request broke one of the rules (an HTTP 400).
    #[error("{0}")]
    BadCsr(String),
    /// A CA or certificate sent to be trusted or registered broke one of the rules (400).
    #[error("{0}")]
    BadCertificate(String),
    /// The tenant has this CA or certificate already (409).
    #[error("{0}")]
    Exists(String),
}

/// Ingot's certificate authority: its certificate and private key (PEM).
pub struct CertificateAuthority {
    pub cert_pem: String,
    pub(crate) key_pem: String,
}

/// The CA's name in the store.
const CA_SECRET: &str = "ca";

impl CertificateAuthority {
    /// The installation's CA, from the store: imported from `legacy_dir` (`ca.pem` and
    /// `ca.key` of an installation from before the CA moved into the store) or created
    /// on first start. When several nodes start at once, all use the first one stored.
    pub async fn load_or_create(store: &SharedStore, legacy_dir: &Path) -> Result<Self, PkiError> {
        if let Some(bundle) = store.secret(CA_SECRET).await? {
            return Self::from_bundle(&bundle);
        }
        let candidate = match Self::from_dir(legacy_dir)? {
            Some(old) => {
                tracing::info!(dir = %legacy_dir.display(), "moved Ingot's CA into the store (ca.key there is no longer used)");
                old
            }
            None => Self::generate()?,
        };
        let stored = store.secret_or_insert(CA_SECRET, candidate.bundle()).await?;
        Self::from_bundle(&stored)
    }

    pub(crate) fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Ingot");
        dn.push(DnType::CommonName, format!("Ingot CA ({})", hostname().unwrap_or_else(|| "local".into())));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        tracing::info!("created Ingot's certificate authority");
        Ok(Self { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// `ca.pem` and `ca.key` in `dir`, if both are there.
    pub(crate) fn from_dir(dir: &Path) -> Result<Option<Self>, PkiError> {
        let (ca_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        if !(ca_path.exists() && key_path.exists()) {
            return Ok(None);
        }
        let cert_pem = fs::read_to_string(&ca_path).map_err(io(&ca_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
        KeyPair::from_pem(&key_pem).map_err(|_| PkiError::BadPem { path: key_path, what: "CA private key" })?;
        Ok(Some(Self { cert_pem, key_pem }))
    }

    /// Certificate then key, as stored.
    fn bundle(&self) -> Vec<u8> {
        format!("{}{}", self.cert_pem, self.key_pem).into_bytes()
    }

    fn from_bundle(bundle: &[u8]) -> Result<Self, PkiError> {
        let text = std::str::from_utf8(bundle).map_err(|_| PkiError::BadStoredCa("not text"))?;
        let at = text.find("-----BEGIN PRIVATE KEY-----").ok_or(PkiError::BadStoredCa("no private key"))?;
        let (cert_pem, key_pem) = (text[..at].to_string(), text[at..].to_string());
        KeyPair::from_pem(&key_pem).map_err(|_| PkiError::BadStoredCa("unreadable private key"))?;
        if CertificateDer::pem_slice_iter(cert_pem.as_bytes()).filter_map(Result::ok).next().is_none() {
            return Err(PkiError::BadStoredCa("no certificate"));
        }
        Ok(Self { cert_pem, key_pem })
    }

    pub(crate) fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(|_| PkiError::BadStoredCa("unreadable private key"))?;
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, key)?)
    }
}

/// Certificates and key a TLS listener serves.
pub struct TlsMaterial {
    /// Server certificate first, then its issuer.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Where clients find the CA certificate to trust (generated material only).
    pub ca_path: Option<PathBuf>,
}

const SERVER_VALIDITY_DAYS: i64 = 365;
const RENEW_BEFORE_DAYS: i64 = 30;

/// The names the generated server certificate covers.
pub fn default_server_names() -> Vec<String> {
    let mut names = vec!["127.0.0.1".to_string(), "::1".to_string(), "localhost".to_string()];
    if let Some(host) = hostname().filter(|h| !names.contains(h)) {
        names.push(host);
    }
    names
}

fn hostname() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

impl TlsMaterial {
    /// This node's server certificate from `dir`, issued by `ca` if missing, expiring, for
    /// other names or from another CA; writes `ca`'s certificate there as `ca.pem`.
    pub fn load_or_create(dir: &Path, ca: &CertificateAuthority, names: &[String]) -> Result<Self, PkiError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let ca_path = dir.join("ca.pem");
        let same_ca = fs::read_to_string(&ca_path).is_ok_and(|pem| pem == ca.cert_pem);
        if !same_ca {
            fs::write(&ca_path, &ca.cert_pem).map_err(io(&ca_path))?;
        }
        let ca_pem = &ca.cert_pem;
        let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
        let names_path = dir.join("server.names");
        let wanted = names.join(",");
        let current = fs::read_to_string(&names_path).ok();
        let expiry = fs::read_to_string(dir.join("server.not_after")).ok().and_then(|s| s.trim().parse::<i64>().ok());
        let fresh = expiry.is_some_and(|t| t - OffsetDateTime::now_utc().unix_timestamp() > RENEW_BEFORE_DAYS * 86_400);
        if !(same_ca && cert_path.exists() && key_path.exists() && fresh && current.as_deref() == Some(wanted.as_str()))
        {
            issue_server(dir, &ca.issuer()?, names)?;
            tracing::info!(names = %wanted, "issued a TLS server certificate from Ingot's CA");
        }
        let mut chain = read_certs(&cert_path)?;
        chain.extend(CertificateDer::pem_slice_iter(ca_pem.as_bytes()).filter_map(Result::ok));
        Ok(Self { chain, key: read_key(&key_path)?, ca_path: Some(dir.join("ca.pem")) })
    }

    /// A user-supplied certificate chain and key (PEM).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, PkiError> {
        Ok(Self { chain: read_certs(cert)?, key: read_key(key)?, ca_path: None })
    }

    /// rustls server configuration: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1, no
    /// client certificates, no SNI needed (one certificate).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl TlsMaterial {
    /// rustls configuration of the mutual-TLS MQTT listener: TLS 1.2 and 1.3, this
    /// certificate, and a client certificate required and verified (chain, dates, use)
    /// against `roots` (Ingot's CA and the tenants' own, changed while it runs). Which
    /// certificates are valid for which device is the MQTT agent's question at CONNECT
    /// (`certificates`).
    pub fn mutual_tls_config(&self, roots: Arc<trusted::ClientRoots>) -> Result<Arc<ServerConfig>, PkiError> {
        let config = ServerConfig::builder_with_provider(trusted::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(roots)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        Ok(Arc::new(config))
    }
}

fn issue_server(dir: &Path, issuer: &Issuer<'_, KeyPair>, names: &[String]) -> Result<(), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, names.iter().find(|n| n.parse::<IpAddr>().is_err()).cloned().unwrap_or_default());
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(SERVER_VALIDITY_DAYS);
    let cert = params.signed_by(&key, issuer)?;
    let key_path = dir.join("server.key");
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
    let cert_path = dir.join("server.pem");
    fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
    let meta = [("server.names", names.join(",")), ("server.not_after", params.not_after.unix_timestamp().to_string())];
    for (file, content) in meta {
        let p = dir.join(file);
        fs::write(&p, content).map_err(io(&p))?;
    }
    Ok(())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let bytes = fs::read(path).map_err(io(path))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(PkiError::BadPem { path: path.to_path_buf(), what: "certificate" });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let bytes = fs::read(path).map_err(io(path))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|_| PkiError::BadPem { path: path.to_path_buf(), what: "private key" })
}

/// Writes `bytes` to `path` so that only its owner can read it (mode 0600 on Unix),
/// creating the parent directory if needed and replacing an existing file atomically:
/// the bytes go to a new private file next to `path`, are synced, and that file is
/// renamed over `path`. A crash therefore never leaves a truncated key behind, and the
/// looser mode of a file being replaced never carries over. Used for every key Ingot
/// keeps (CA and server keys here, the JWT secret in `auth`).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    // A leftover from a crash: never reuse it (its mode is not ours to trust).
    if let Err(e) = fs::remove_file(&tmp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(e);
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes).and_then(|_| f.sync_all())?;
    drop(f);
    fs::rename(&tmp, path)?;
    // The rename itself must survive a power loss too.
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_once_then_reuses_and_reissues_on_new_names_or_a_new_ca() {
        for engine in store::testing::engines().await {
            let dir = tempfile::tempdir().unwrap();
            let ca = CertificateAuthority::load_or_create(&engine.store, dir.path()).await.unwrap();
            let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
            let a = TlsMaterial::load_or_create(dir.path(), &ca, &names).unwrap();
            assert_eq!(a.chain.len(), 2, "server certificate and CA");
            assert!(!dir.path().join("ca.key").exists(), "the CA key is in the store, not in a file");
            let again = CertificateAuthority::load_or_create(&engine.reopen().await, dir.path()).await.unwrap();
            assert_eq!(again.cert_pem, ca.cert_pem, "{}: one CA per store", engine.name);
            let b = TlsMaterial::load_or_create(dir.path(), &again, &names).unwrap();
            assert_eq!(a.chain[0], b.chain[0], "reused");
            let c = TlsMaterial::load_or_create(dir.path(), &ca, &["localhost".to_string()]).unwrap();
            assert_ne!(a.chain[0], c.chain[0], "names changed: re-issued");
            assert_eq!(fs::read_to_string(dir.path().join("ca.pem")).unwrap(), ca.cert_pem, "ca.pem is the CA");
            assert!(c.server_config(&[b"h2", b"http/1.1"]).is_ok());
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(dir.path().join("server.key")).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
            // This data directory, on another store (another CA): the server certificate follows.
            let other = store::testing::Engine::sqlite();
            let other_ca =
                CertificateAuthority::load_or_create(&other.store, tempfile::tempdir().unwrap().path()).await.unwrap();
            let d = TlsMaterial::load_or_create(dir.path(), &other_ca, &["localhost".to_string()]).unwrap();
            assert_ne!(c.chain[0], d.chain[0], "another CA: re-issued");
            assert_eq!(fs::read_to_string(dir.path().join("ca.pem")).unwrap(), other_ca.cert_pem);
        }
    }

    #[tokio::test]
    async fn an_old_installations_ca_files_are_imported() {
        let dir = tempfile::tempdir().unwrap();
        let old = CertificateAuthority::generate().unwrap();
        fs::write(dir.path().join("ca.pem"), &old.cert_pem).unwrap();
        write_private(&dir.path().join("ca.key"), old.key_pem.as_bytes()).unwrap();
        let engine = store::testing::Engine::sqlite();
        let ca = CertificateAuthority::load_or_create(&engine.store, dir.path()).await.unwrap();
        assert_eq!(ca.cert_pem, old.cert_pem, "clients that trust the old ca.pem keep trusting");
        let stored = engine.store.secret("ca").await.unwrap().unwrap();
        assert_eq!(CertificateAuthority::from_bundle(&stored).unwrap().key_pem, old.key_pem);
    }

    #[test]
    fn write_private_replaces_and_stays_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/secret.key");
        write_private(&p, b"first").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first", "parent directory created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_private(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second", "replaced");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600,
                "a loose mode does not carry over"
            );
        }
        let left: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["secret.key"], "no temporary file left behind");
    }

    #[test]
    fn user_files_must_hold_pem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.pem");
        fs::write(&p, "not a certificate").unwrap();
        assert!(matches!(TlsMaterial::from_files(&p, &p), Err(PkiError::BadPem { .. })));
    }
}
