//! Tenants' own CAs ("trusted CAs", `/x509/v1/trusted-cas`) and the checks a client
//! certificate passes on the MQTTS listener.
//!
//! A tenant that runs its own PKI registers its root CA; devices with certificates from
//! it (CN `tenant:device`, as Ingot's own) then connect on 8883. Two stages:
//!
//! - **TLS** ([`ClientRoots`]): the chain must end at Ingot's CA or at any tenant's
//!   registered CA, within its dates and for client authentication. The set changes
//!   while the server runs: the verifier is rebuilt and swapped whole (an `ArcSwap`),
//!   on this node at once and on the others when the `x509.trusted-cas` event reaches
//!   them (and every minute anyway, for an event a node missed).
//! - **CONNECT** ([`CertificateRegistry::admit`]): the certificate must be registered
//!   for the device its CN names and not revoked; or, unregistered, it must have been
//!   issued by one of *that* tenant's CAs (another tenant's CA cannot speak for it),
//!   which must allow auto-registration: then this CONNECT registers it (dojot's
//!   `autoRegistered`). Refusals say why, in a log line and a counted reason.
//!
//! dojot (0.5 to 0.6) had only stubs for these routes; the shapes follow its later
//! schemas (`caPem`, `allowAutoRegistration`, `caFingerprint`). Like dojot, a trusted CA
//! must be a root (self-signed) CA and a certificate must be issued by it directly.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bus::{Bus, Mode};
use ingest::{CertificateRefusal, CertificateRegistry, ClientCertificate, DeviceAuthError};
use model::{DeviceEvent, DeviceRef, EventKind};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use store::certificates::{CertificateRecord, TrustedCaInsert};
pub use store::certificates::{TrustedCaPage, TrustedCaRecord};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;
use crate::certificates::{CertificateService, Owner, fingerprint, ms};

/// A trusted CA must stay valid at least this long when it is registered (dojot's
/// `externalCaCertMinimumValidityDays` default).
const MIN_REMAINING_DAYS: i64 = 1;
/// How often every node of a cluster re-reads the trusted CAs, whatever the events.
const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// The per-node bus group through which nodes follow each other's CA changes.
pub const FOLLOW_GROUP: &str = "pki";

/// The CAs the MQTTS listener trusts at the TLS handshake: Ingot's and every tenant's.
/// It is rustls's client-certificate verifier, rebuilt when the set changes; a refusal
/// is logged with its reason and counted (`ingot_client_certificates_refused_total`),
/// since TLS alone would only tell the server "disconnected".
///
/// It sends no CA names in its certificate request: with many tenants' CAs the list
/// would be long, and device clients send the certificate they are given anyway.
#[derive(Debug)]
pub struct ClientRoots {
    ingot_ca: CertificateDer<'static>,
    current: ArcSwap<Verifier>,
}

#[derive(Debug)]
struct Verifier(Arc<dyn ClientCertVerifier>);

impl ClientRoots {
    /// Trusting Ingot's CA (`ingot_ca_pem`) only, until [`ClientRoots::set`].
    pub fn new(ingot_ca_pem: &str) -> Result<Arc<Self>, PkiError> {
        let ingot_ca = CertificateDer::from_pem_slice(ingot_ca_pem.as_bytes())
            .map_err(|_| PkiError::BadStoredCa("no certificate"))?;
        let verifier = build_verifier(std::slice::from_ref(&ingot_ca))?;
        Ok(Arc::new(Self { ingot_ca, current: ArcSwap::from_pointee(verifier) }))
    }

    /// Trusts Ingot's CA and `cas` (PEM), from now on. A CA that cannot be used is
    /// skipped with a warning (they are checked when registered).
    pub fn set<'a>(&self, cas: impl IntoIterator<Item = &'a str>) -> Result<usize, PkiError> {
        let mut roots = vec![self.ingot_ca.clone()];
        for pem in cas {
            match CertificateDer::from_pem_slice(pem.as_bytes()) {
                Ok(der) if build_verifier(std::slice::from_ref(&der)).is_ok() => roots.push(der),
                _ => tracing::warn!(ca = %pem_fingerprint(pem), "a stored trusted CA is unusable; skipped"),
            }
        }
        let count = roots.len() - 1;
        self.current.store(Arc::new(build_verifier(&roots)?));
        Ok(count)
    }
}

fn pem_fingerprint(pem: &str) -> String {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_or_else(|_| "?".into(), |d| fingerprint(&d))
}

/// AWS-LC's provider: unlike ring's it checks P-521 signatures (P-521 device keys).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn build_verifier(roots: &[CertificateDer<'static>]) -> Result<Verifier, PkiError> {
    let mut store = rustls::RootCertStore::empty();
    for der in roots {
        store.add(der.clone())?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
        .build()
        .map_err(|e| PkiError::ClientVerifier(e.to_string()))?;
    Ok(Verifier(verifier))
}

impl ClientCertVerifier for ClientRoots {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current.load().0.verify_client_cert(end_entity, intermediates, now).inspect_err(|e| {
            use rustls::CertificateError as C;
            let reason = match e {
                rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired",
                rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => "not_yet_valid",
                rustls::Error::InvalidCertificate(C::UnknownIssuer) => "unknown_ca",
                rustls::Error::InvalidCertificate(C::BadSignature) => "bad_signature",
                rustls::Error::InvalidCertificate(C::Revoked) => "revoked",
                _ => "invalid",
            };
            let fingerprint = fingerprint(end_entity);
            metrics::counter!("ingot_client_certificates_refused_total", "reason" => reason).increment(1);
            tracing::warn!(reason, certificate = %fingerprint, error = %e, "client certificate refused at the TLS handshake");
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current.load().0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current.load().0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.current.load().0.supported_verify_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}

/// Whether `ca_pem` issued `cert` (DER) for client authentication, valid now.
fn issued_by(cert: &[u8], ca_pem: &str) -> bool {
    let Ok(ca) = CertificateDer::from_pem_slice(ca_pem.as_bytes()) else { return false };
    let Ok(verifier) = build_verifier(&[ca]) else { return false };
    verifier.0.verify_client_cert(&CertificateDer::from(cert), &[], UnixTime::now()).is_ok()
}

/// What a registered trusted CA certificate says of itself.
struct CaFacts {
    der: CertificateDer<'static>,
    subject_dn: String,
    not_before_ms: i64,
    not_after_ms: i64,
}

/// The rules a CA must pass to be trusted: one PEM certificate, a CA, self-signed (a
/// root), valid now and for at least a day more, not Ingot's own CA nor with its CN.
fn check_ca(pem: &str, ingot_ca: &CertificateDer<'_>) -> Result<CaFacts, PkiError> {
    let bad = |m: &str| PkiError::BadCertificate(m.to_string());
    let mut certs = CertificateDer::pem_slice_iter(pem.trim().as_bytes());
    let der = match (certs.next(), certs.next()) {
        (Some(Ok(der)), None) => der,
        _ => return Err(bad("caPem must be one certificate in PEM")),
    };
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| bad("caPem cannot be read as an X.509 certificate"))?;
    if !cert.is_ca() {
        return Err(bad("the certificate is not a CA (basicConstraints cA is not set)"));
    }
    if cert.subject() != cert.issuer() || cert.verify_signature(None).is_err() {
        return Err(bad("the CA must be a root CA: self-signed, with a signature that verifies"));
    }
    let (not_before, not_after) = (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if not_before > now || not_after - now < MIN_REMAINING_DAYS * 86_400 {
        return Err(bad(&format!("the CA must be valid now and for at least {MIN_REMAINING_DAYS} more day(s)")));
    }
    if der.as_ref() == ingot_ca.as_ref() {
        return Err(bad("this is Ingot's own CA, which every tenant trusts already"));
    }
    let cn = |c: &X509Certificate<'_>| {
        c.subject().iter_common_name().next().and_then(|n| n.as_str().ok()).map(str::to_string)
    };
    if let Ok((_, ingot)) = X509Certificate::from_der(ingot_ca)
        && cn(&ingot).is_some()
        && cn(&ingot) == cn(&cert)
    {
        return Err(bad("the CA's CN is that of Ingot's own CA (dojot's rule: they must differ)"));
    }
    // The TLS stage must be able to check certificates it issued.
    build_verifier(std::slice::from_ref(&der)).map_err(|e| bad(&format!("the CA cannot be used: {e}")))?;
    Ok(CaFacts {
        subject_dn: cert.subject().to_string(),
        not_before_ms: not_before * 1000,
        not_after_ms: not_after * 1000,
        der: der.into_owned(),
    })
}

impl CertificateService {
    /// Trusts the tenant's CA `pem` (`POST /x509/v1/trusted-cas`); returns its fingerprint.
    pub async fn register_ca(
        &self,
        tenant: &str,
        pem: &str,
        allow_auto_registration: bool,
    ) -> Result<String, PkiError> {
        let facts = check_ca(pem, &self.ingot_ca_der()?)?;
        let fp = fingerprint(&facts.der);
        let now = ms(OffsetDateTime::now_utc());
        let record = TrustedCaRecord {
            tenant: tenant.to_string(),
            fingerprint: fp.clone(),
            pem: pem.trim().to_string() + "\n",
            subject_dn: facts.subject_dn,
            not_before_ms: facts.not_before_ms,
            not_after_ms: facts.not_after_ms,
            allow_auto_registration,
            created_ms: now,
            modified_ms: now,
        };
        match self.store.insert_trusted_ca(record, self.max_trusted_cas).await? {
            TrustedCaInsert::Inserted => {}
            TrustedCaInsert::Exists => return Err(PkiError::Exists(format!("the CA {fp} is trusted already"))),
            TrustedCaInsert::Full => {
                return Err(PkiError::BadCertificate(format!(
                    "a tenant may have at most {} trusted CAs (--max-trusted-cas)",
                    self.max_trusted_cas
                )));
            }
        }
        tracing::info!(%tenant, ca = %fp, allow_auto_registration, "trusted a tenant's CA");
        self.trusted_cas_changed(tenant, &fp).await?;
        Ok(fp)
    }

    pub async fn trusted_ca(&self, tenant: &str, fp: &str) -> Result<Option<TrustedCaRecord>, PkiError> {
        Ok(self.store.trusted_ca(tenant, &fp.to_uppercase()).await?)
    }

    /// A page (from 0) of the tenant's CAs, oldest first.
    pub async fn trusted_cas(&self, tenant: &str, page: u64, limit: u64) -> Result<TrustedCaPage, PkiError> {
        Ok(self.store.trusted_cas(tenant, page, limit).await?)
    }

    /// Lets the CA's certificates register at their first CONNECT, or not; false if the
    /// tenant has no such CA.
    pub async fn set_ca_auto_registration(&self, tenant: &str, fp: &str, allow: bool) -> Result<bool, PkiError> {
        let now = ms(OffsetDateTime::now_utc());
        Ok(self.store.set_trusted_ca_auto_registration(tenant, &fp.to_uppercase(), allow, now).await?)
    }

    /// Stops trusting the tenant's CA: the certificates registered from it go too, and
    /// are returned (the caller ends their live connections). `None`: no such CA.
    pub async fn remove_ca(&self, tenant: &str, fp: &str) -> Result<Option<Vec<CertificateRecord>>, PkiError> {
        let fp = fp.to_uppercase();
        let Some(gone) = self.store.delete_trusted_ca(tenant, &fp).await? else { return Ok(None) };
        tracing::info!(%tenant, ca = %fp, certificates = gone.len(), "a tenant's CA is no longer trusted");
        self.trusted_cas_changed(tenant, &fp).await?;
        Ok(Some(gone))
    }

    /// Registers a certificate one of the tenant's trusted CAs issued
    /// (`POST /x509/v1/certificates {"certificatePem"}`); its CN must be
    /// `<tenant>:<device>`.
    pub async fn register_external(&self, tenant: &str, pem: &str, owner: Option<Owner>) -> Result<String, PkiError> {
        let bad = |m: String| PkiError::BadCertificate(m);
        let der = CertificateDer::from_pem_slice(pem.trim().as_bytes())
            .map_err(|_| bad("certificatePem must be a certificate in PEM".into()))?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|_| bad("certificatePem cannot be read".into()))?;
        let cn = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or("");
        let device = DeviceRef::parse_colon(cn)
            .ok()
            .filter(|d| d.tenant == tenant)
            .ok_or_else(|| bad(format!("the certificate's CN must be '{tenant}:<device id>', not '{cn}'")))?;
        let owner = match owner {
            Some(Owner::Device(d)) if d != device.device_id => {
                return Err(bad(format!("belongsTo.device '{d}' is not the device of the CN '{cn}'")));
            }
            Some(o) => o,
            None => Owner::Device(device.device_id.clone()),
        };
        let ca = self.issuing_ca(tenant, &der).await?.ok_or_else(|| {
            bad("the certificate was not issued (directly, valid now, for client authentication) by one of this tenant's trusted CAs".into())
        })?;
        let record = external_record(tenant, &der, &cert, &ca, owner, false);
        let fp = record.fingerprint.clone();
        if !self.store.insert_certificate(record).await? {
            return Err(PkiError::Exists(format!("the certificate {fp} (or its CA's serial) is registered already")));
        }
        tracing::info!(%tenant, certificate = %fp, ca = %ca.fingerprint, "registered a certificate of a tenant's CA");
        Ok(fp)
    }

    /// The tenant's trusted CA that issued `der`, if any.
    async fn issuing_ca(&self, tenant: &str, der: &[u8]) -> Result<Option<TrustedCaRecord>, PkiError> {
        let cas = self.store.trusted_cas(tenant, 0, self.max_trusted_cas.max(1)).await?;
        Ok(cas.cas.into_iter().find(|ca| issued_by(der, &ca.pem)))
    }

    /// Makes this node trust the CAs in the store (at start, and after a change).
    pub async fn reload_roots(&self) -> Result<usize, PkiError> {
        let cas = self.store.all_trusted_cas().await?;
        self.roots.set(cas.iter().map(|c| c.pem.as_str()))
    }

    /// The verifier of the MQTTS listener, which [`CertificateService::reload_roots`] updates.
    pub fn client_roots(&self) -> Arc<ClientRoots> {
        self.roots.clone()
    }

    async fn trusted_cas_changed(&self, tenant: &str, ca: &str) -> Result<(), PkiError> {
        self.reload_roots().await?;
        let Some(bus) = self.bus.get() else { return Ok(()) };
        let event = DeviceEvent {
            kind: EventKind::TrustedCas,
            tenant: tenant.to_string(),
            data: serde_json::json!({"ca": ca}),
            ts: chrono::Utc::now(),
        };
        if let Err(e) = bus.publish_event(event).await {
            // Committed already: the other nodes catch up at their next periodic reload.
            tracing::warn!(error = %e, "the other nodes could not be told of a trusted CA change");
        }
        Ok(())
    }

    /// Makes this node a node of a cluster on `bus`: its CA changes are published, and
    /// every node's are followed (and the CAs re-read every minute, for a missed event).
    pub async fn follow(self: &Arc<Self>, bus: Arc<dyn Bus>) -> Result<(), PkiError> {
        let events = bus.subscribe_events(FOLLOW_GROUP, Mode::EachNode);
        bus.ready().await.map_err(|e| PkiError::ClientVerifier(format!("cannot follow the bus: {e}")))?;
        let _ = self.bus.set(bus);
        events.follow(Arc::downgrade(self), |pki, event| async move {
            if event.kind == EventKind::TrustedCas {
                pki.reload_roots().await?;
            }
            Ok::<(), PkiError>(())
        });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pki) = weak.upgrade() else { break };
                if let Err(e) = pki.reload_roots().await {
                    tracing::warn!(error = %e, "could not re-read the trusted CAs");
                }
            }
        });
        Ok(())
    }
}

fn external_record(
    tenant: &str,
    der: &[u8],
    cert: &X509Certificate<'_>,
    ca: &TrustedCaRecord,
    owner: Owner,
    auto_registered: bool,
) -> CertificateRecord {
    let (device, application) = match owner {
        Owner::Device(d) => (Some(d), None),
        Owner::Application(a) => (None, Some(a)),
    };
    CertificateRecord {
        fingerprint: fingerprint(&CertificateDer::from(der)),
        tenant: tenant.to_string(),
        device,
        application,
        pem: to_pem(der),
        serial: cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect(),
        not_after_ms: cert.validity().not_after.timestamp() * 1000,
        created_ms: ms(OffsetDateTime::now_utc()),
        revoked_ms: None,
        issuer: Some(ca.fingerprint.clone()),
        auto_registered,
    }
}

/// A DER certificate as PEM (64-character lines).
fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[async_trait::async_trait]
impl CertificateRegistry for CertificateService {
    async fn admit(&self, device: &DeviceRef, cert: &ClientCertificate) -> Result<(), DeviceAuthError> {
        let unavailable = |e: store::StoreError| {
            tracing::warn!(device = %device, error = %e, "cannot read the certificate registry");
            DeviceAuthError::Unavailable
        };
        let now = ms(OffsetDateTime::now_utc());
        if let Some(r) = self.store.certificate_any(&cert.fingerprint).await.map_err(unavailable)? {
            if r.tenant != device.tenant || r.device.as_deref() != Some(device.device_id.as_str()) {
                return Err(CertificateRefusal::NotThisDevice.into());
            }
            if r.revoked_ms.is_some() {
                return Err(CertificateRefusal::Revoked.into());
            }
            if let Some(issuer) = &r.issuer {
                match self.store.trusted_ca(&device.tenant, issuer).await.map_err(unavailable)? {
                    None => return Err(CertificateRefusal::WrongCa.into()),
                    Some(ca) if ca.not_after_ms <= now => return Err(CertificateRefusal::CaExpired.into()),
                    Some(_) => {}
                }
            }
            return Ok(());
        }
        // Unregistered: only one of the device's tenant's CAs may vouch for it.
        let ca = match self.issuing_ca(&device.tenant, &cert.der).await {
            Ok(Some(ca)) => ca,
            // Ingot's CA issued it, but the registry does not know it (a restored database).
            Ok(None) if issued_by(&cert.der, &self.ca_pem()) => return Err(CertificateRefusal::Unregistered.into()),
            Ok(None) => return Err(CertificateRefusal::WrongCa.into()),
            Err(PkiError::Store(e)) => return Err(unavailable(e)),
            Err(_) => return Err(DeviceAuthError::Unavailable),
        };
        if ca.not_after_ms <= now {
            return Err(CertificateRefusal::CaExpired.into());
        }
        if !ca.allow_auto_registration {
            return Err(CertificateRefusal::Unregistered.into());
        }
        let Ok((_, parsed)) = X509Certificate::from_der(&cert.der) else {
            return Err(CertificateRefusal::Unregistered.into());
        };
        let record =
            external_record(&device.tenant, &cert.der, &parsed, &ca, Owner::Device(device.device_id.clone()), true);
        // false: another CONNECT registered it at the same moment, which is as good.
        if self.store.insert_certificate(record).await.map_err(unavailable)? {
            tracing::info!(device = %device, certificate = %cert.fingerprint, ca = %ca.fingerprint, "auto-registered a device certificate at CONNECT");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use time::Duration as Days;

    use super::*;
    use crate::CertificateAuthority;

    fn ca_params(cn: &str, days: std::ops::Range<i64>) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = (now + Days::days(days.start), now + Days::days(days.end));
        params
    }

    fn root(cn: &str, days: std::ops::Range<i64>) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        (ca_params(cn, days).self_signed(&key).unwrap().pem(), key)
    }

    #[test]
    fn only_valid_root_cas_other_than_ingots_may_be_trusted() {
        let ingot = CertificateAuthority::generate().unwrap();
        let ingot_der = CertificateDer::from_pem_slice(ingot.cert_pem.as_bytes()).unwrap();
        let (good, good_key) = root("Acme Devices", -1..365);
        let facts = check_ca(&good, &ingot_der).unwrap();
        assert!(facts.subject_dn.contains("CN=Acme Devices"), "{}", facts.subject_dn);
        let intermediate = {
            let issuer = Issuer::from_ca_cert_pem(&good, good_key).unwrap();
            ca_params("Acme Line 2", -1..30).signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap().pem()
        };
        let leaf = {
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, "acme:d1");
            params.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
        };
        let ingot_named = root(&ingot_subject_cn(&ingot.cert_pem), -1..30).0;
        let cases = [
            (intermediate, "root CA"),
            (leaf, "not a CA"),
            (root("Old", -30..-1).0, "valid now"),
            (root("Nearly over", -30..0).0, "valid now"),
            (root("Not yet", 2..30).0, "valid now"),
            (ingot.cert_pem.clone(), "Ingot's own"),
            (ingot_named, "Ingot's own"),
            (format!("{good}{good}"), "one certificate"),
            ("junk".into(), "one certificate"),
        ];
        for (pem, why) in cases {
            match check_ca(&pem, &ingot_der) {
                Err(PkiError::BadCertificate(m)) => assert!(m.contains(why), "{why}: {m}"),
                other => panic!("{why}: {:?}", other.map(|f| f.subject_dn)),
            }
        }
    }

    fn ingot_subject_cn(pem: &str) -> String {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_string()
    }
}
