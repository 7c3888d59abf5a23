//! MQTT 5 on the wire (rumqttc's `mqttbytes::v5` codec).
//!
//! Every PUBLISH gets an answer: PUBACK 0x00 once the reading is durable, or a negative
//! PUBACK (the connection stays up). CONNACK advertises maximum QoS 1, no topic aliases,
//! no wildcard or shared subscriptions and our receive maximum; a client that ignores it
//! is disconnected with the matching reason code (0x9B, 0x94).

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{
    self, ConnAckProperties, ConnectReturnCode, DisconnectReasonCode, Packet, PubAckReason, SubscribeReasonCode,
    UnsubAckReason,
};
use rumqttc::v5::mqttbytes::{Error, QoS};

use super::registry::{CloseReason, Qos};
use super::session::{Accepted, Protocol, Refusal};
use super::wire::{self, Answer, Close, Connect, Inbound, Publish, Wire, WireError};
use crate::IngestError;

/// MQTT 5.
pub(crate) struct V5;

impl Wire for V5 {
    const PROTOCOL: Protocol = Protocol::V5;

    fn decode_connect(buf: &mut BytesMut, max_size: usize) -> Result<Connect, WireError> {
        let Some(Packet::Connect(c, will, login)) = read(buf, max_size)? else {
            return Err(WireError::Malformed("expected CONNECT".into()));
        };
        let will = will.as_ref().map(|w| wire::will(&w.topic, &w.message)).transpose()?;
        let (username, password) = match login {
            Some(login) => (Some(login.username), Some(login.password.into_bytes())),
            None => (None, None),
        };
        let properties = c.properties.as_ref();
        Ok(Connect {
            client_id: c.client_id,
            username,
            password,
            clean_start: c.clean_start,
            keep_alive_secs: c.keep_alive,
            will,
            // Absent means 0: the session ends with the connection.
            session_expiry_secs: Some(properties.and_then(|p| p.session_expiry_interval).unwrap_or(0)),
            max_packet_size: properties.and_then(|p| p.max_packet_size),
        })
    }

    fn decode(buf: &mut BytesMut, max_size: usize) -> Result<Option<Inbound>, WireError> {
        // rumqttc reads a DISCONNECT without reason code (remaining length 0, "normal")
        // as an error; MQTT 5 allows it.
        if buf.starts_with(&[0xE0, 0x00]) {
            let _ = buf.split_to(2);
            return Ok(Some(Inbound::Disconnect { keep_will: false }));
        }
        let Some(packet) = read(buf, max_size)? else { return Ok(None) };
        Ok(Some(match packet {
            Packet::Publish(p) => Inbound::Publish(Publish {
                topic: String::from_utf8(p.topic.to_vec())
                    .map_err(|_| WireError::Malformed("topic is not UTF-8".into()))?,
                qos: p.qos as u8,
                pkid: p.pkid,
                payload: p.payload,
                topic_alias: p.properties.as_ref().is_some_and(|p| p.topic_alias.is_some()),
            }),
            Packet::PubAck(a) => Inbound::PubAck { pkid: a.pkid, accepted: a.reason == PubAckReason::Success },
            Packet::Subscribe(s) => Inbound::Subscribe {
                pkid: s.pkid,
                filters: s.filters.into_iter().map(|f| (f.path, wire::requested(f.qos as u8))).collect(),
            },
            Packet::Unsubscribe(u) => Inbound::Unsubscribe { pkid: u.pkid, filters: u.filters },
            Packet::PingReq(_) => Inbound::PingReq,
            Packet::Disconnect(d) => {
                Inbound::Disconnect { keep_will: d.reason_code == DisconnectReasonCode::DisconnectWithWillMessage }
            }
            Packet::Connect(..) => Inbound::Unexpected("CONNECT"),
            Packet::Auth(_) => Inbound::Unexpected("AUTH"),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => Inbound::Unexpected("QoS 2 flow"),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp(_) => {
                Inbound::Unexpected("a server's packet")
            }
        }))
    }

    fn connack(accepted: &Accepted, requested_expiry: Option<u32>, config: &super::MqttConfig, buf: &mut BytesMut) {
        let properties = ConnAckProperties {
            session_expiry_interval: (Some(accepted.session_expiry_secs) != requested_expiry)
                .then_some(accepted.session_expiry_secs),
            receive_max: Some(config.max_inflight.max(1)),
            max_qos: Some(1),
            retain_available: None,
            max_packet_size: u32::try_from(config.max_packet()).ok(),
            assigned_client_identifier: accepted.assigned_client_id.clone(),
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            // Ingot offers each device its own topics only.
            wildcard_subscription_available: Some(0),
            subscription_identifiers_available: Some(0),
            shared_subscription_available: Some(0),
            server_keep_alive: accepted.keep_alive_capped.then_some(accepted.keep_alive_secs),
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        };
        let ack = v5::ConnAck {
            session_present: accepted.session_present,
            code: ConnectReturnCode::Success,
            properties: Some(properties),
        };
        write(Packet::ConnAck(ack), buf);
    }

    fn refuse(refusal: Refusal, buf: &mut BytesMut) {
        let code = match refusal {
            Refusal::BadCredentials => ConnectReturnCode::BadUserNamePassword,
            Refusal::BadCertificate(_) | Refusal::UnknownDevice | Refusal::BadIdentity { from_client_id: false } => {
                ConnectReturnCode::NotAuthorized
            }
            Refusal::BadIdentity { from_client_id: true } | Refusal::ClientIdRequired => {
                ConnectReturnCode::ClientIdentifierNotValid
            }
            Refusal::Unavailable => ConnectReturnCode::ServerUnavailable,
            Refusal::TooManyConnections | Refusal::TooManySessions => ConnectReturnCode::QuotaExceeded,
            Refusal::UnsupportedVersion => ConnectReturnCode::UnsupportedProtocolVersion,
        };
        write(Packet::ConnAck(v5::ConnAck { session_present: false, code, properties: None }), buf);
    }

    fn encode(answer: Answer<'_>, buf: &mut BytesMut) -> Result<(), Close> {
        let packet = match answer {
            Answer::PubAck { pkid, outcome } => {
                let reason = match outcome {
                    Ok(()) => PubAckReason::Success,
                    Err(e) => puback_code(e),
                };
                Packet::PubAck(v5::PubAck { pkid, reason, properties: None })
            }
            Answer::SubAck { pkid, granted } => Packet::SubAck(v5::SubAck {
                pkid,
                return_codes: granted
                    .iter()
                    .map(|g| g.map_or(SubscribeReasonCode::NotAuthorized, |q| SubscribeReasonCode::Success(qos_out(q))))
                    .collect(),
                properties: None,
            }),
            Answer::UnsubAck { pkid, filters } => Packet::UnsubAck(v5::UnsubAck {
                pkid,
                reasons: vec![UnsubAckReason::Success; filters],
                properties: None,
            }),
            Answer::PingResp => Packet::PingResp(v5::PingResp),
            Answer::Publish { topic, qos, pkid, payload } => Packet::Publish(v5::Publish {
                dup: false,
                qos: qos_out(qos),
                retain: false,
                topic: bytes::Bytes::copy_from_slice(topic.as_bytes()),
                pkid,
                payload: payload.clone(),
                properties: None,
            }),
        };
        write(packet, buf);
        Ok(())
    }

    fn disconnect(reason: Close, buf: &mut BytesMut) {
        let code = match reason {
            Close::Session(CloseReason::TakenOver) => DisconnectReasonCode::SessionTakenOver,
            Close::Session(CloseReason::ServerShutdown) => DisconnectReasonCode::ServerShuttingDown,
            Close::Session(CloseReason::Ended) => DisconnectReasonCode::NormalDisconnection,
            Close::Session(CloseReason::NotAuthorized) => DisconnectReasonCode::NotAuthorized,
            Close::KeepAlive => DisconnectReasonCode::KeepAliveTimeout,
            Close::TooLarge => DisconnectReasonCode::PacketTooLarge,
            Close::QosNotSupported => DisconnectReasonCode::QoSNotSupported,
            Close::TopicAlias => DisconnectReasonCode::TopicAliasInvalid,
            Close::Malformed => DisconnectReasonCode::MalformedPacket,
            Close::Protocol => DisconnectReasonCode::ProtocolError,
            Close::Storage => DisconnectReasonCode::UnspecifiedError,
        };
        // By hand: rumqttc 0.25 writes a reason code without properties as remaining
        // length 1 followed by two bytes. Reason code and an empty property length (some
        // clients, rumqttc's among them, read no DISCONNECT without it).
        buf.extend_from_slice(&[0xE0, 2, code as u8, 0]);
    }
}

/// PUBACK reason for a refused message. MQTT 5 allows no 0x95 (packet too large) in a
/// PUBACK; an over-limit payload that still fits the packet limit gets 0x97.
fn puback_code(e: &IngestError) -> PubAckReason {
    match e {
        IngestError::ForeignTopic | IngestError::Revoked => PubAckReason::NotAuthorized,
        IngestError::BadTopic => PubAckReason::TopicNameInvalid,
        IngestError::Payload(_) => PubAckReason::PayloadFormatInvalid,
        IngestError::TooLarge(_) | IngestError::TooManyAttributes(_) => PubAckReason::QuotaExceeded,
        IngestError::Bus(_) | IngestError::Unavailable => PubAckReason::UnspecifiedError,
    }
}

fn read(buf: &mut BytesMut, max_size: usize) -> Result<Option<Packet>, WireError> {
    match Packet::read(buf, Some(u32::try_from(max_size).unwrap_or(u32::MAX))) {
        Ok(packet) => Ok(Some(packet)),
        Err(Error::InsufficientBytes(_)) => Ok(None),
        Err(Error::PayloadSizeLimitExceeded { .. }) => Err(WireError::TooLarge(max_size)),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

fn write(packet: Packet, buf: &mut BytesMut) {
    // Only what this server builds is written, and it always fits the format.
    if let Err(e) = packet.write(buf, None) {
        tracing::error!(error = %e, "an MQTT packet could not be encoded");
    }
}

fn qos_out(qos: Qos) -> QoS {
    match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}
