//! Ingot's certificate authority and the TLS configuration of its listeners.
//!
//! On first start [`TlsMaterial::load_or_create`] makes a CA (ECDSA P-256, ten years) and
//! a server certificate signed by it for `127.0.0.1`, `::1`, `localhost` and the host
//! name, and writes them under `<data-dir>/tls/` (`ca.pem` is what clients trust; keys
//! are mode 0600). Later starts reuse them, re-issuing the server certificate when it
//! is within 30 days of expiry or its names changed. A user-supplied certificate and key
//! ([`TlsMaterial::from_files`]) replace the generated server certificate.

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
    /// Loads the CA and server certificate from `dir`, creating what is missing.
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Self, PkiError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let (ca_pem, ca_key) = load_or_create_ca(dir)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
        let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
        let names_path = dir.join("server.names");
        let wanted = names.join(",");
        let current = fs::read_to_string(&names_path).ok();
        let expiry = fs::read_to_string(dir.join("server.not_after")).ok().and_then(|s| s.trim().parse::<i64>().ok());
        let fresh = expiry.is_some_and(|t| t - OffsetDateTime::now_utc().unix_timestamp() > RENEW_BEFORE_DAYS * 86_400);
        if !(cert_path.exists() && key_path.exists() && fresh && current.as_deref() == Some(wanted.as_str())) {
            issue_server(dir, &issuer, names)?;
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

fn load_or_create_ca(dir: &Path) -> Result<(String, KeyPair), PkiError> {
    let (ca_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if ca_path.exists() && key_path.exists() {
        let pem = fs::read_to_string(&ca_path).map_err(io(&ca_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key =
            KeyPair::from_pem(&key_pem).map_err(|_| PkiError::BadPem { path: key_path, what: "CA private key" })?;
        return Ok((pem, key));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ingot");
    dn.push(DnType::CommonName, format!("Ingot CA ({})", hostname().unwrap_or_else(|| "local".into())));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    let cert = params.self_signed(&key)?;
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
    fs::write(&ca_path, cert.pem()).map_err(io(&ca_path))?;
    tracing::info!(path = %ca_path.display(), "created Ingot's certificate authority");
    Ok((cert.pem(), key))
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

    #[test]
    fn creates_once_then_reuses_and_reissues_on_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let a = TlsMaterial::load_or_create(dir.path(), &names).unwrap();
        assert_eq!(a.chain.len(), 2, "server certificate and CA");
        let b = TlsMaterial::load_or_create(dir.path(), &names).unwrap();
        assert_eq!(a.chain[0], b.chain[0], "reused");
        let ca = fs::read(dir.path().join("ca.pem")).unwrap();
        let c = TlsMaterial::load_or_create(dir.path(), &["localhost".to_string()]).unwrap();
        assert_ne!(a.chain[0], c.chain[0], "names changed: re-issued");
        assert_eq!(ca, fs::read(dir.path().join("ca.pem")).unwrap(), "same CA");
        assert!(c.server_config(&[b"h2", b"http/1.1"]).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["ca.key", "server.key"] {
                assert_eq!(fs::metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
            }
        }
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
