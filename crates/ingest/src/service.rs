//! [`IngestService`]: what every device agent does, independent of protocol.

use std::sync::Arc;

use bus::{Bus, BusError};
use chrono::Utc;
use model::data::PayloadLimits;
use model::topic::{DeviceTopic, TopicKind};
use model::{DeviceData, DeviceRef, PayloadError};
use serde_json::{Map, Value};

/// Where agents look devices up: implemented by the `devices` service.
#[async_trait::async_trait]
pub trait DeviceDirectory: Send + Sync + 'static {
    /// Checks that `device` exists and that `secret` is its current credential.
    /// `None` is accepted only for a tenant in dojot's "unsecured mode".
    async fn verify_device(&self, device: &DeviceRef, secret: Option<&[u8]>) -> Result<(), DeviceAuthError>;
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
            Self::Bus(_) => "unavailable",
        }
    }
}

/// The shared logic of device agents.
pub struct IngestService {
    bus: Arc<dyn Bus>,
    directory: Arc<dyn DeviceDirectory>,
    limits: PayloadLimits,
    max_payload: usize,
}

impl IngestService {
    pub fn new(
        bus: Arc<dyn Bus>,
        directory: Arc<dyn DeviceDirectory>,
        limits: PayloadLimits,
        max_payload: usize,
    ) -> Self {
        Self { bus, directory, limits, max_payload }
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
        let ident = login.username.filter(|u| !u.is_empty()).unwrap_or(login.client_id);
        let device = DeviceRef::parse_colon(ident).map_err(|_| DeviceAuthError::BadIdentity)?;
        self.directory.verify_device(&device, login.password).await?;
        Ok(device)
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
    pub async fn ingest_payload(
        &self,
        agent: &'static str,
        device: &DeviceRef,
        payload: &[u8],
    ) -> Result<(), IngestError> {
        let result = self.parse_payload(device, payload);
        self.publish(agent, device, result).await
    }

    /// Like [`IngestService::ingest_payload`] for an already parsed JSON object (HTTP).
    pub async fn ingest_attrs(
        &self,
        agent: &'static str,
        device: &DeviceRef,
        attrs: Map<String, Value>,
    ) -> Result<(), IngestError> {
        let result = DeviceData::from_attrs(device, attrs, Utc::now(), &self.limits).map_err(IngestError::from);
        self.publish(agent, device, result).await
    }

    fn parse_payload(&self, device: &DeviceRef, payload: &[u8]) -> Result<DeviceData, IngestError> {
        if payload.len() > self.max_payload {
            return Err(IngestError::TooLarge(self.max_payload));
        }
        Ok(DeviceData::from_payload(device, payload, Utc::now(), &self.limits)?)
    }

    async fn publish(
        &self,
        agent: &'static str,
        device: &DeviceRef,
        data: Result<DeviceData, IngestError>,
    ) -> Result<(), IngestError> {
        let outcome = match data {
            Ok(data) => self.bus.publish_data(data).await.map_err(IngestError::from),
            Err(e) => Err(e),
        };
        match &outcome {
            Ok(()) => metrics::counter!("ingot_messages_in_total", "agent" => agent, "tenant" => device.tenant.clone())
                .increment(1),
            Err(e) => self.count_rejected(agent, &device.tenant, e.reason()),
        }
        outcome
    }

    /// Counts a rejected message (or connection) for metrics.
    pub fn count_rejected(&self, agent: &'static str, tenant: &str, reason: &'static str) {
        metrics::counter!("ingot_messages_rejected_total", "agent" => agent, "tenant" => tenant.to_string(), "reason" => reason)
            .increment(1);
    }
}
