//! [`IngestService`]: what every device agent does, independent of protocol.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bus::{Bus, BusError};
use chrono::{DateTime, Utc};
use model::data::PayloadLimits;
use model::topic::{DeviceTopic, TopicKind};
use model::{DeviceData, DeviceRef, PayloadError};
use serde_json::{Map, Value};

use crate::budget::{Admission, AttrBudget};

/// Where agents look devices up: implemented by the `devices` service.
#[async_trait::async_trait]
pub trait DeviceDirectory: Send + Sync + 'static {
    /// Checks that `device` exists and that `secret` is its current credential.
    /// `None` is accepted only for a tenant in dojot's "unsecured mode".
    async fn verify_device(&self, device: &DeviceRef, secret: Option<&[u8]>) -> Result<DeviceAuth, DeviceAuthError>;
    /// Checks that `device` exists (for a device a client certificate names: whether the
    /// certificate is its own is the [`CertificateRegistry`]'s question).
    async fn check_device(&self, device: &DeviceRef) -> Result<(), DeviceAuthError>;
    /// The attribute labels `device` has history for (its distinct attributes so far).
    async fn stored_attrs(&self, device: &DeviceRef) -> Result<Vec<String>, DeviceAuthError>;
}

/// Where the MQTT agent checks client certificates: implemented by `pki`.
#[async_trait::async_trait]
pub trait CertificateRegistry: Send + Sync + 'static {
    /// Checks that `cert`, whose chain TLS verified against one of the CAs the listener
    /// trusts, may speak for `device` (the tenant and device its CN names): registered
    /// for that device and not revoked, or issued by one of that tenant's own CAs that
    /// registers its certificates at their first CONNECT (which this does). Refusals are
    /// [`DeviceAuthError::Certificate`], or `Unavailable`.
    async fn admit(&self, device: &DeviceRef, cert: &ClientCertificate) -> Result<(), DeviceAuthError>;
}

/// Why a client certificate was refused at CONNECT (TLS refuses expired ones and those
/// of CAs nobody trusts before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertificateRefusal {
    #[error("the certificate is not registered (and its CA does not register certificates at CONNECT)")]
    Unregistered,
    #[error("the certificate was revoked")]
    Revoked,
    #[error("the certificate belongs to another device")]
    NotThisDevice,
    #[error("the certificate's CA is not one of its tenant's")]
    WrongCa,
    #[error("the certificate's CA has expired")]
    CaExpired,
}

impl CertificateRefusal {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unregistered => "certificate_unregistered",
            Self::Revoked => "certificate_revoked",
            Self::NotThisDevice => "certificate_not_this_device",
            Self::WrongCa => "certificate_wrong_ca",
            Self::CaExpired => "certificate_ca_expired",
        }
    }
}

/// How a device that was let in proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAuth {
    /// With its current secret.
    Secret,
    /// Without one: its tenant is in dojot's unsecured mode.
    Unsecured,
    /// With a client certificate of its own (MQTT over mutual TLS).
    Certificate,
}

/// Why a device was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceAuthError {
    #[error("identity must be 'tenant:device'")]
    BadIdentity,
    #[error("no such device")]
    UnknownDevice,
    #[error("a device secret is required")]
    SecretRequired,
    #[error("wrong device secret")]
    BadSecret,
    #[error("client certificate refused: {0}")]
    Certificate(#[from] CertificateRefusal),
    #[error("device directory unavailable")]
    Unavailable,
}

impl DeviceAuthError {
    /// Short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadIdentity => "bad_identity",
            Self::UnknownDevice => "unknown_device",
            Self::SecretRequired => "secret_required",
            Self::BadSecret => "bad_secret",
            Self::Certificate(why) => why.reason(),
            Self::Unavailable => "unavailable",
        }
    }
}

/// What a device presents when it connects.
#[derive(Debug, Clone, Copy)]
pub struct DeviceLogin<'a> {
    /// MQTT username / HTTP user: `tenant:device`.
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// MQTT client id; mosca identified devices by a `tenant:device` client id.
    pub client_id: &'a str,
    /// The client certificate of a mutual-TLS connection: it alone identifies the device.
    pub certificate: Option<&'a ClientCertificate>,
}

/// A client certificate TLS verified against a trusted CA: what identifies the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// `model::secret::certificate_fingerprint` of its DER.
    pub fingerprint: String,
    /// Its subject's CN: `tenant:device`, as the CA writes it.
    pub common_name: String,
    /// The certificate itself (DER), for the registry to find its CA.
    pub der: Vec<u8>,
}

/// Why a message from an authenticated device was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("not this device's topic")]
    ForeignTopic,
    #[error("not a device data topic")]
    BadTopic,
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("payload larger than {0} bytes")]
    TooLarge(usize),
    #[error("the device would have more than {0} distinct attributes; send fewer labels or delete and recreate it")]
    TooManyAttributes(usize),
    /// The device was deleted or its credentials changed while it was connected.
    #[error("the device's credentials are no longer valid")]
    Revoked,
    #[error("the device directory is unavailable")]
    Unavailable,
    #[error("could not store the reading: {0}")]
    Bus(#[from] BusError),
}

impl IngestError {
    /// Short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ForeignTopic => "foreign_topic",
            Self::BadTopic => "bad_topic",
            Self::Payload(_) => "bad_payload",
            Self::TooLarge(_) => "too_large",
            Self::TooManyAttributes(_) => "too_many_attributes",
            Self::Revoked => "revoked",
            Self::Bus(_) | Self::Unavailable => "unavailable",
        }
    }
}

/// Default cap on distinct attribute labels per device (`--max-attrs-per-device`).
pub const DEFAULT_MAX_ATTRS_PER_DEVICE: usize = 1000;
/// Devices whose labels the attribute budget keeps in memory at most.
const BUDGET_DEVICES: usize = 100_000;

/// The shared logic of device agents.
pub struct IngestService {
    bus: Arc<dyn Bus>,
    directory: Arc<dyn DeviceDirectory>,
    /// Without one, client certificates are refused.
    certificates: Option<Arc<dyn CertificateRegistry>>,
    limits: PayloadLimits,
    max_payload: usize,
    budget: AttrBudget,
}

impl IngestService {
    pub fn new(
        bus: Arc<dyn Bus>,
        directory: Arc<dyn DeviceDirectory>,
        limits: PayloadLimits,
        max_payload: usize,
    ) -> Self {
        let budget = AttrBudget::new(DEFAULT_MAX_ATTRS_PER_DEVICE, BUDGET_DEVICES);
        Self { bus, directory, certificates: None, limits, max_payload, budget }
    }

    /// Client certificates (MQTT over mutual TLS) are checked by `registry`.
    pub fn with_certificates(mut self, registry: Arc<dyn CertificateRegistry>) -> Self {
        self.certificates = Some(registry);
        self
    }

    /// At most `max` distinct attribute labels per device (default
    /// [`DEFAULT_MAX_ATTRS_PER_DEVICE`]); readings beyond are refused.
    pub fn with_max_attrs_per_device(mut self, max: usize) -> Self {
        self.budget = AttrBudget::new(max, BUDGET_DEVICES);
        self
    }

    /// Forgets what is known of a deleted device (its history went with it).
    pub fn forget_device(&self, device: &DeviceRef) {
        self.budget.forget(device);
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Largest payload accepted, in bytes.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Authenticates a connecting device. The identity comes from the username
    /// (`tenant:device`), or, when there is none, from a `tenant:device` client id (mosca).
    pub async fn authenticate(&self, login: DeviceLogin<'_>) -> Result<DeviceRef, DeviceAuthError> {
        self.authenticate_how(login).await.map(|(device, _)| device)
    }

    /// [`Self::authenticate`], also saying how the device proved itself (the MQTT agent
    /// ends unsecured connections when their tenant leaves unsecured mode).
    pub async fn authenticate_how(&self, login: DeviceLogin<'_>) -> Result<(DeviceRef, DeviceAuth), DeviceAuthError> {
        if let Some(cert) = login.certificate {
            // The certificate names the device; a username, if sent, must agree.
            let device = DeviceRef::parse_colon(&cert.common_name).map_err(|_| DeviceAuthError::BadIdentity)?;
            if login.username.is_some_and(|u| !u.is_empty() && u != cert.common_name) {
                return Err(DeviceAuthError::BadIdentity);
            }
            self.directory.check_device(&device).await?;
            let registry = self.certificates.as_ref().ok_or(CertificateRefusal::Unregistered)?;
            registry.admit(&device, cert).await?;
            self.load_budget(&device).await;
            return Ok((device, DeviceAuth::Certificate));
        }
        let ident = login.username.filter(|u| !u.is_empty()).unwrap_or(login.client_id);
        let device = DeviceRef::parse_colon(ident).map_err(|_| DeviceAuthError::BadIdentity)?;
        let how = self.directory.verify_device(&device, login.password).await?;
        self.load_budget(&device).await;
        Ok((device, how))
    }

    /// Loads what a device that just proved itself has of its attribute budget, if not
    /// known yet, so that its first reading does not wait for the store: when 10,000
    /// devices connected at once, their first readings waited for 10,000 reads (issue 16).
    /// A failure is left for the first reading to meet (and report).
    async fn load_budget(&self, device: &DeviceRef) {
        if !self.budget.knows(device) {
            let _ = self.read_budget(device).await;
        }
    }

    /// Reads `device`'s stored labels into its attribute budget.
    async fn read_budget(&self, device: &DeviceRef) -> Result<(), DeviceAuthError> {
        let stored = self.directory.stored_attrs(device).await?;
        self.budget.load(device, stored);
        Ok(())
    }

    /// Checks that `device` may publish readings on `topic`.
    pub fn check_publish_topic(&self, device: &DeviceRef, topic: &str) -> Result<(), IngestError> {
        let t = DeviceTopic::parse(topic).ok_or(IngestError::BadTopic)?;
        if t.kind != TopicKind::Attrs {
            return Err(IngestError::BadTopic);
        }
        if &t.device != device {
            return Err(IngestError::ForeignTopic);
        }
        Ok(())
    }

    /// Checks that `device` may subscribe to `filter`: only its own config topics.
    pub fn check_subscribe_topic(&self, device: &DeviceRef, filter: &str) -> Result<DeviceTopic, IngestError> {
        let t = DeviceTopic::parse(filter).ok_or(IngestError::BadTopic)?;
        if t.kind != TopicKind::Config {
            return Err(IngestError::BadTopic);
        }
        if &t.device != device {
            return Err(IngestError::ForeignTopic);
        }
        Ok(t)
    }

    /// Turns a raw payload into a reading and publishes it; resolves once it is durable.
    /// `received_at` stamps a reading that carries no time of its own.
    pub async fn ingest_payload(
        &self,
        agent: &'static str,
        device: &DeviceRef,
        payload: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<(), IngestError> {
        self.submit_payload(agent, device, payload, received_at).await?.await
    }

    /// [`IngestService::ingest_payload`] in two steps: resolves once the reading is on the
    /// bus, after those this caller submitted before, with a future that resolves once it
    /// is durable. A connection submits its publishes one by one as they arrive and awaits
    /// their durability together, so they keep their order and share commits.
    pub async fn submit_payload(
        &self,
        agent: &'static str,
        device: &DeviceRef,
        payload: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Submitted, IngestError> {
        let result = self.parse_payload(device, payload, received_at);
        self.submit(agent, device, result).await
    }

    /// Like [`IngestService::ingest_payload`] for an already parsed JSON object (HTTP).
    pub async fn ingest_attrs(
        &self,
        agent: &'static str,
        device: &DeviceRef,
        attrs: Map<String, Value>,
    ) -> Result<(), IngestError> {
        let result = DeviceData::from_attrs(device, attrs, Utc::now(), &self.limits).map_err(IngestError::from);
        self.submit(agent, device, result).await?.await
    }

    fn parse_payload(
        &self,
        device: &DeviceRef,
        payload: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<DeviceData, IngestError> {
        if payload.len() > self.max_payload {
            return Err(IngestError::TooLarge(self.max_payload));
        }
        Ok(DeviceData::from_payload(device, payload, received_at, &self.limits)?)
    }

    /// Admits a reading and puts it on the bus; counted once its fate is known.
    async fn submit(
        &self,
        agent: &'static str,
        device: &DeviceRef,
        data: Result<DeviceData, IngestError>,
    ) -> Result<Submitted, IngestError> {
        let sent = match data {
            Ok(data) => match self.admit_attrs(device, &data.attrs).await {
                Ok(()) => self.bus.send_data(data).await.map_err(IngestError::from),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match sent {
            Ok(durable) => Ok(Submitted(Box::pin(counted(agent, device.tenant.clone(), durable)))),
            Err(e) => {
                count_rejected(agent, &device.tenant, e.reason());
                Err(e)
            }
        }
    }

    /// Checks the reading against the device's attribute budget (see [`AttrBudget`]).
    async fn admit_attrs(&self, device: &DeviceRef, attrs: &Map<String, Value>) -> Result<(), IngestError> {
        let mut admission = self.budget.admit(device, attrs);
        if admission == Admission::Unknown {
            // Boxed: rare (a device not seen since start), and a store read is a large
            // future that every connection's task would otherwise hold room for.
            Box::pin(self.read_budget(device)).await.map_err(|_| IngestError::Unavailable)?;
            admission = self.budget.admit(device, attrs);
        }
        match admission {
            Admission::OverLimit => Err(IngestError::TooManyAttributes(self.budget.max_per_device())),
            Admission::Admitted | Admission::Unknown => Ok(()),
        }
    }

    /// Counts a rejected message (or connection) for metrics.
    pub fn count_rejected(&self, agent: &'static str, tenant: &str, reason: &'static str) {
        count_rejected(agent, tenant, reason);
    }
}

fn count_rejected(agent: &'static str, tenant: &str, reason: &'static str) {
    metrics::counter!("ingot_messages_rejected_total", "agent" => agent, "tenant" => tenant.to_string(), "reason" => reason)
        .increment(1);
}

/// Waits for a submitted reading to become durable and counts its outcome.
async fn counted(agent: &'static str, tenant: String, durable: bus::Durable) -> Result<(), IngestError> {
    let outcome = durable.await.map_err(IngestError::from);
    match &outcome {
        Ok(()) => metrics::counter!("ingot_messages_in_total", "agent" => agent, "tenant" => tenant).increment(1),
        Err(e) => count_rejected(agent, &tenant, e.reason()),
    }
    outcome
}

/// A reading on the bus ([`IngestService::submit_payload`]): resolves once it is durable.
#[must_use = "a submitted reading is acknowledged only once this resolves"]
pub struct Submitted(Pin<Box<dyn Future<Output = Result<(), IngestError>> + Send>>);

impl Future for Submitted {
    type Output = Result<(), IngestError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}
