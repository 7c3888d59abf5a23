//! Device certificates: dojot's x509-identity-mgmt on Ingot's CA. A user sends a CSR
//! made with plain OpenSSL; the CA signs it with the CN rewritten to `<tenant>:<CN>` (as
//! dojot did), a random serial, a short validity (`--cert-validity-days`) and client
//! authentication as its only use; the certificate is recorded in the store's registry
//! (`store::certificates`) by its SHA-256 fingerprint, which the MQTT agent checks at
//! every mutual-TLS CONNECT. Revoking marks it there (and so on the CRL); the CA key
//! never leaves the server.
//!
//! CSR rules, as dojot's: a subject of a CN only, at most 255 characters of
//! `[A-Za-z0-9 ]`; RSA of at least 2048 bits or ECDSA on P-256, P-384 or P-521; a valid
//! signature. P-521 is why `pki` links AWS-LC beside ring: ring neither checks P-521
//! signatures (the CSR's, the handshake's) nor writes P-521 keys into certificates
//! (rcgen's P-521 needs its AWS-LC backend).

use std::sync::Arc;

use rcgen::{
    CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    KeyIdMethod, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use store::SharedStore;
pub use store::certificates::{CertificateFilter, CertificatePage, CertificateRecord};
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::trusted::ClientRoots;
use crate::{CertificateAuthority, PkiError};

/// Longest CN accepted in a CSR (dojot's rule).
const MAX_CN_LEN: usize = 255;

/// What a certificate belongs to (dojot's `belongsTo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Device(String),
    Application(String),
}

/// A newly issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub fingerprint: String,
    pub pem: String,
}

/// Issues, lists and revokes device certificates under the installation's CA, and
/// keeps the tenants' own CAs (`trusted`).
pub struct CertificateService {
    pub(crate) store: SharedStore,
    ca: Arc<CertificateAuthority>,
    validity: Duration,
    /// Most trusted CAs per tenant.
    pub(crate) max_trusted_cas: u64,
    /// What the MQTTS listener trusts (`trusted`).
    pub(crate) roots: Arc<ClientRoots>,
    /// Set when this node follows the others (`trusted`).
    pub(crate) bus: std::sync::OnceLock<Arc<dyn bus::Bus>>,
}

/// Defaults of [`CertificateService`]'s limits.
#[derive(Debug, Clone, Copy)]
pub struct CertificateConfig {
    /// Validity of the certificates the CA issues (`--cert-validity-days`).
    pub validity_days: u32,
    /// Most trusted CAs a tenant may register (`--max-trusted-cas`).
    pub max_trusted_cas: u64,
}

impl Default for CertificateConfig {
    fn default() -> Self {
        Self { validity_days: 90, max_trusted_cas: 10 }
    }
}

pub use model::secret::certificate_fingerprint as fingerprint;

impl CertificateService {
    /// Trusting Ingot's CA only until [`CertificateService::reload_roots`] reads the
    /// tenants' CAs.
    pub fn new(store: SharedStore, ca: Arc<CertificateAuthority>, config: CertificateConfig) -> Result<Self, PkiError> {
        Ok(Self {
            roots: ClientRoots::new(&ca.cert_pem)?,
            store,
            ca,
            validity: Duration::days(i64::from(config.validity_days.max(1))),
            max_trusted_cas: config.max_trusted_cas,
            bus: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn ca_pem(&self) -> String {
        self.ca.cert_pem.clone()
    }

    pub(crate) fn ingot_ca_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        CertificateDer::from_pem_slice(self.ca.cert_pem.as_bytes()).map_err(|_| PkiError::BadStoredCa("no certificate"))
    }

    /// The CA certificate and its fingerprint (`GET /x509/v1/ca`).
    pub fn ca(&self) -> Result<(String, String), PkiError> {
        Ok((fingerprint(&self.ingot_ca_der()?), self.ca.cert_pem.clone()))
    }

    /// Signs `csr_pem` for `tenant`, records the certificate and returns it.
    pub async fn issue(&self, tenant: &str, csr_pem: &str, owner: Option<Owner>) -> Result<Issued, PkiError> {
        let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.trim().as_bytes())
            .map_err(|_| PkiError::BadCsr("the csr is not a PEM certificate signing request".into()))?;
        let (cn, public_key) = read_csr(der.as_ref())?;
        let owner = match owner {
            Some(Owner::Device(d)) if d != cn => {
                return Err(PkiError::BadCsr(format!("belongsTo.device '{d}' is not the CSR's CN '{cn}'")));
            }
            Some(o) => o,
            None => Owner::Device(cn.clone()),
        };
        // Only the CSR's key and CN are taken: nothing else it asks for (names,
        // extensions) goes into the certificate.
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("{tenant}:{cn}"));
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let serial: [u8; 16] = rand_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + self.validity;
        let cert = params.signed_by(&public_key, &self.ca.issuer()?)?;
        let pem = cert.pem();
        let fingerprint = fingerprint(cert.der());
        let (device, application) = match owner {
            Owner::Device(d) => (Some(d), None),
            Owner::Application(a) => (None, Some(a)),
        };
        let record = CertificateRecord {
            fingerprint: fingerprint.clone(),
            tenant: tenant.to_string(),
            device,
            application,
            pem: pem.clone(),
            serial: hex(&serial),
            not_after_ms: ms(params.not_after),
            created_ms: ms(now),
            revoked_ms: None,
            issuer: None,
            auto_registered: false,
        };
        self.store.insert_certificate(record).await?;
        tracing::info!(%tenant, %fingerprint, "issued a device certificate");
        Ok(Issued { fingerprint, pem })
    }

    /// A certificate for `device` with a key made here (ECDSA P-256), for the console's
    /// "certificate files" button: the key is returned once and never stored.
    pub async fn issue_with_new_key(&self, tenant: &str, device: &str) -> Result<(Issued, String), PkiError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, device);
        let csr = params.serialize_request(&key)?.pem()?;
        let issued = self.issue(tenant, &csr, Some(Owner::Device(device.to_string()))).await?;
        Ok((issued, key.serialize_pem()))
    }

    pub async fn get(&self, tenant: &str, fingerprint: &str) -> Result<Option<CertificateRecord>, PkiError> {
        Ok(self.store.certificate(tenant, &fingerprint.to_uppercase()).await?)
    }

    /// A page (from 0) of the tenant's certificates, newest first.
    pub async fn list(
        &self,
        tenant: &str,
        filter: &CertificateFilter,
        page: u64,
        limit: u64,
    ) -> Result<CertificatePage, PkiError> {
        Ok(self.store.certificates(tenant, filter, page, limit).await?)
    }

    /// Changes what a valid certificate belongs to; false if there is no such one.
    pub async fn set_owner(&self, tenant: &str, fingerprint: &str, owner: &Owner) -> Result<bool, PkiError> {
        let (device, application) = match owner {
            Owner::Device(d) => (Some(d.as_str()), None),
            Owner::Application(a) => (None, Some(a.as_str())),
        };
        Ok(self.store.set_certificate_owner(tenant, &fingerprint.to_uppercase(), device, application).await?)
    }

    /// Revokes a certificate: it goes on the CRL and is refused at every later CONNECT.
    /// Returns it as it now is (the caller ends its live connections).
    pub async fn revoke(&self, tenant: &str, fingerprint: &str) -> Result<Option<CertificateRecord>, PkiError> {
        let now = OffsetDateTime::now_utc();
        let revoked = self.store.revoke_certificate(tenant, &fingerprint.to_uppercase(), ms(now)).await?;
        if let Some(c) = &revoked {
            tracing::info!(%tenant, fingerprint = %c.fingerprint, "revoked a device certificate");
        }
        Ok(revoked)
    }

    /// The CA's CRL (PEM): every revoked certificate not yet expired, signed now, valid
    /// for a day.
    pub async fn crl(&self) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let revoked = self.store.revoked_certificates(ms(now)).await?;
        let revoked_certs = revoked
            .iter()
            .map(|(serial, at)| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&unhex(serial)),
                revocation_time: OffsetDateTime::from_unix_timestamp(at / 1000).unwrap_or(now),
                reason_code: None,
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(1),
            crl_number: SerialNumber::from(now.unix_timestamp() as u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.ca.issuer()?)?.pem()?)
    }
}

/// Reads a CSR by dojot's rules: its signature must verify, its key be RSA of at least
/// 2048 bits or ECDSA on P-256, P-384 or P-521, and its subject one CN of
/// `[A-Za-z0-9 ]`, at most 255 characters. Returns the CN and the public key.
fn read_csr(der: &[u8]) -> Result<(String, rcgen::SubjectPublicKeyInfo), PkiError> {
    let (_, csr) =
        X509CertificationRequest::from_der(der).map_err(|_| PkiError::BadCsr("the csr cannot be read".into()))?;
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let p521 = match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => false,
        Ok(PublicKey::RSA(rsa)) => {
            return Err(PkiError::BadCsr(format!("an RSA key must have at least 2048 bits, not {}", rsa.key_size())));
        }
        Ok(PublicKey::EC(_)) => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(P256 | P384) => false,
                Some(P521) => true,
                _ => return Err(PkiError::BadCsr("an ECDSA key must be on P-256, P-384 or P-521".into())),
            }
        }
        _ => {
            return Err(PkiError::BadCsr(
                "the key must be RSA (2048 bits or more) or ECDSA (P-256, P-384, P-521)".into(),
            ));
        }
    };
    let bad_signature = || PkiError::BadCsr("the csr's signature does not verify".into());
    if p521 {
        // x509-parser's check knows P-256 and P-384 only: AWS-LC checks P-521.
        use aws_lc_rs::signature as sig;
        let algorithm = match csr.signature_algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.10045.4.3.2" => &sig::ECDSA_P521_SHA256_ASN1,
            "1.2.840.10045.4.3.3" => &sig::ECDSA_P521_SHA384_ASN1,
            "1.2.840.10045.4.3.4" => &sig::ECDSA_P521_SHA512_ASN1,
            _ => return Err(bad_signature()),
        };
        sig::UnparsedPublicKey::new(algorithm, &spki.subject_public_key.data[..])
            .verify(info.raw, &csr.signature_value.data)
            .map_err(|_| bad_signature())?;
    } else {
        csr.verify_signature().map_err(|_| bad_signature())?;
    }
    let mut cn = None;
    for attr in info.subject.iter_attributes() {
        if attr.attr_type().to_id_string() != "2.5.4.3" {
            return Err(PkiError::BadCsr("the CSR's subject must hold a CN only".into()));
        }
        let text =
            attr.as_str().map_err(|_| PkiError::BadCsr("the CSR's CN must be a UTF-8 or printable string".into()))?;
        if cn.replace(text.to_string()).is_some() {
            return Err(PkiError::BadCsr("the CSR's subject must hold one CN".into()));
        }
    }
    let cn = cn.ok_or_else(|| PkiError::BadCsr("the CSR's subject has no CN".into()))?;
    if cn.is_empty() || cn.len() > MAX_CN_LEN || !cn.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
        return Err(PkiError::BadCsr(format!(
            "the CSR's CN must be 1 to {MAX_CN_LEN} characters of A-Z, a-z, 0-9 and space"
        )));
    }
    let key = rcgen::SubjectPublicKeyInfo::from_der(spki.raw)
        .map_err(|e| PkiError::BadCsr(format!("the csr's key cannot be used ({e})")))?;
    Ok((cn, key))
}

/// Named curves, by OID.
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const P521: &str = "1.3.132.0.35";

fn rand_serial() -> [u8; 16] {
    let mut serial: [u8; 16] = rand::random();
    // Positive and never starting with a zero byte: 16 bytes exactly, as encoded.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    serial
}

pub(crate) fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};
    use x509_parser::prelude::*;

    use super::*;

    /// The CN of a DER certificate.
    fn common_name(der: &[u8]) -> Option<String> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(cert.subject().iter_common_name().next()?.as_str().ok()?.to_string())
    }

    async fn service() -> (CertificateService, store::testing::Engine) {
        let engine = store::testing::Engine::sqlite();
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(&engine.store, dir.path()).await.unwrap();
        let config = CertificateConfig { validity_days: 30, ..CertificateConfig::default() };
        (CertificateService::new(engine.store.clone(), Arc::new(ca), config).unwrap(), engine)
    }

    fn csr(subject: &[(DnType, &str)]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (ty, v) in subject {
            params.distinguished_name.push(ty.clone(), *v);
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[tokio::test]
    async fn a_csr_is_signed_with_the_tenant_in_its_cn_and_recorded() {
        let (svc, _dir) = service().await;
        let issued = svc.issue("acme", &csr(&[(DnType::CommonName, "a1b2c3")]), None).await.unwrap();
        assert_eq!(issued.fingerprint.len(), 32 * 3 - 1);
        assert!(issued.fingerprint.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase() || c == ':'));
        let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
        assert_eq!(fingerprint(&der), issued.fingerprint);
        assert_eq!(common_name(&der).as_deref(), Some("acme:a1b2c3"));
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
        assert_eq!(days, 30, "short-lived, as configured");
        let record = svc.get("acme", &issued.fingerprint.to_lowercase()).await.unwrap().unwrap();
        assert_eq!(record.device.as_deref(), Some("a1b2c3"), "the CN names the device");
        assert_eq!(svc.get("globex", &issued.fingerprint).await.unwrap(), None, "tenant isolation");
        // Serials are random.
        let other = svc.issue("acme", &csr(&[(DnType::CommonName, "a1b2c3")]), None).await.unwrap();
        let serial = |pem: &str| {
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            X509Certificate::from_der(&der).unwrap().1.raw_serial().to_vec()
        };
        assert_ne!(serial(&issued.pem), serial(&other.pem));
    }

    #[tokio::test]
    async fn rsa_and_every_curve_dojot_accepted_are_signed() {
        let (svc, _dir) = service().await;
        let algorithms = [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ECDSA_P521_SHA512,
            &rcgen::PKCS_ECDSA_P521_SHA256,
            &rcgen::PKCS_RSA_SHA256,
        ];
        for alg in algorithms {
            let key = if *alg == rcgen::PKCS_RSA_SHA256 {
                let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
                let pkcs8 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).unwrap();
                KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_ref().into(), alg).unwrap()
            } else {
                KeyPair::generate_for(alg).unwrap()
            };
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, "dev");
            let csr = params.serialize_request(&key).unwrap().pem().unwrap();
            let issued = svc.issue("acme", &csr, None).await.unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            assert_eq!(cert.public_key().raw, rcgen::PublicKeyData::subject_public_key_info(&key), "{alg:?}: its key");
        }
    }

    #[tokio::test]
    async fn csrs_breaking_dojots_rules_are_refused_with_the_reason() {
        let (svc, _dir) = service().await;
        let cases = [
            (csr(&[(DnType::CommonName, "dev"), (DnType::OrganizationName, "x")]), "CN only"),
            (csr(&[(DnType::CommonName, "dev;rm")]), "A-Z"),
            (csr(&[(DnType::CommonName, &"a".repeat(256))]), "A-Z"),
            (csr(&[(DnType::OrganizationName, "x")]), "CN only"),
            ("not a csr".to_string(), "PEM"),
        ];
        for (pem, why) in cases {
            match svc.issue("acme", &pem, None).await {
                Err(PkiError::BadCsr(m)) => assert!(m.contains(why), "{why}: {m}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        let mismatch =
            svc.issue("acme", &csr(&[(DnType::CommonName, "dev")]), Some(Owner::Device("other".into()))).await;
        assert!(matches!(mismatch, Err(PkiError::BadCsr(m)) if m.contains("belongsTo")));
        // A CSR whose signature does not match its key.
        let mut tampered = csr(&[(DnType::CommonName, "dev")]).into_bytes();
        let at = tampered.len() / 2;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert!(svc.issue("acme", &String::from_utf8(tampered).unwrap(), None).await.is_err());
    }

    #[tokio::test]
    async fn revoked_certificates_are_on_the_crl() {
        let (svc, _dir) = service().await;
        let issued = svc.issue("acme", &csr(&[(DnType::CommonName, "dev")]), None).await.unwrap();
        let serial = {
            let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
            X509Certificate::from_der(&der).unwrap().1.raw_serial().to_vec()
        };
        let listed = |pem: String| {
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap_or_else(|_| {
                let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
                CertificateDer::from(p.contents)
            });
            let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
            crl.iter_revoked_certificates().map(|r| r.raw_serial().to_vec()).collect::<Vec<_>>()
        };
        assert!(listed(svc.crl().await.unwrap()).is_empty());
        assert_eq!(svc.revoke("globex", &issued.fingerprint).await.unwrap(), None, "tenant isolation");
        assert!(svc.revoke("acme", &issued.fingerprint).await.unwrap().unwrap().revoked_ms.is_some());
        assert_eq!(listed(svc.crl().await.unwrap()), vec![serial]);
    }
}
