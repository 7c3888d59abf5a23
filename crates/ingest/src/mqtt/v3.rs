//! MQTT 3.1.1 on the wire (rumqttc's `mqttbytes::v4` codec).
//!
//! v3 has no negative PUBACK, so a refused message (foreign topic, bad payload) is
//! acknowledged and dropped — as dojot's VerneMQ agent did — and counted. A storage
//! failure is not acknowledged: the connection is closed, so the device resends. v3
//! cannot say why the server closes; it just does.

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{self, ConnectReturnCode, Packet, SubscribeReasonCode};
use rumqttc::mqttbytes::{Error, QoS};

use super::registry::Qos;
use super::session::{Accepted, Protocol, Refusal};
use super::wire::{self, Answer, Close, Connect, Inbound, Publish, Wire, WireError};
use crate::IngestError;

/// MQTT 3.1.1.
pub(crate) struct V3;

impl Wire for V3 {
    const PROTOCOL: Protocol = Protocol::V3;

    fn decode_connect(buf: &mut BytesMut, max_size: usize) -> Result<Connect, WireError> {
        let Some(Packet::Connect(c)) = read(buf, max_size)? else {
            return Err(WireError::Malformed("expected CONNECT".into()));
        };
        let will = c.last_will.as_ref().map(|w| wire::will(w.topic.as_bytes(), &w.message)).transpose()?;
        let (username, password) = match c.login {
            Some(login) => (Some(login.username), Some(login.password.into_bytes())),
            None => (None, None),
        };
        Ok(Connect {
            client_id: c.client_id,
            username,
            password,
            clean_start: c.clean_session,
            keep_alive_secs: c.keep_alive,
            will,
            session_expiry_secs: None,
            max_packet_size: None,
        })
    }

    fn decode(buf: &mut BytesMut, max_size: usize) -> Result<Option<Inbound>, WireError> {
        let Some(packet) = read(buf, max_size)? else { return Ok(None) };
        Ok(Some(match packet {
            Packet::Publish(p) => Inbound::Publish(Publish {
                topic: p.topic,
                qos: p.qos as u8,
                pkid: p.pkid,
                payload: p.payload,
                topic_alias: false,
            }),
            Packet::PubAck(a) => Inbound::PubAck { pkid: a.pkid, accepted: true },
            Packet::Subscribe(s) => Inbound::Subscribe {
                pkid: s.pkid,
                filters: s.filters.into_iter().map(|f| (f.path, wire::requested(f.qos as u8))).collect(),
            },
            Packet::Unsubscribe(u) => Inbound::Unsubscribe { pkid: u.pkid, filters: u.topics },
            Packet::PingReq => Inbound::PingReq,
            Packet::Disconnect => Inbound::Disconnect { keep_will: false },
            Packet::Connect(_) => Inbound::Unexpected("CONNECT"),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => Inbound::Unexpected("QoS 2 flow"),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Inbound::Unexpected("a server's packet")
            }
        }))
    }

    fn connack(accepted: &Accepted, _: Option<u32>, _: &super::MqttConfig, buf: &mut BytesMut) {
        write(Packet::ConnAck(v4::ConnAck::new(ConnectReturnCode::Success, accepted.session_present)), buf);
    }

    fn refuse(refusal: Refusal, buf: &mut BytesMut) {
        let code = match refusal {
            Refusal::BadCredentials => ConnectReturnCode::BadUserNamePassword,
            Refusal::BadCertificate(_) | Refusal::UnknownDevice | Refusal::BadIdentity { .. } => {
                ConnectReturnCode::NotAuthorized
            }
            Refusal::ClientIdRequired => ConnectReturnCode::BadClientId,
            Refusal::Unavailable | Refusal::TooManyConnections | Refusal::TooManySessions => {
                ConnectReturnCode::ServiceUnavailable
            }
            Refusal::UnsupportedVersion => ConnectReturnCode::RefusedProtocolVersion,
        };
        write(Packet::ConnAck(v4::ConnAck::new(code, false)), buf);
    }

    fn encode(answer: Answer<'_>, buf: &mut BytesMut) -> Result<(), Close> {
        let packet = match answer {
            Answer::PubAck { pkid, outcome } => match outcome {
                // Not stored and not acked: the connection closes, the device resends later.
                Err(IngestError::Bus(_) | IngestError::Unavailable) => return Err(Close::Storage),
                // v3 cannot refuse a PUBLISH; the connection is closing anyway.
                Err(IngestError::Revoked) => return Err(Close::Session(super::registry::CloseReason::NotAuthorized)),
                // Stored, or refused (counted and logged by the connection): ack and drop.
                Ok(()) | Err(_) => Packet::PubAck(v4::PubAck::new(pkid)),
            },
            Answer::SubAck { pkid, granted } => Packet::SubAck(v4::SubAck::new(
                pkid,
                granted
                    .iter()
                    .map(|g| g.map_or(SubscribeReasonCode::Failure, |q| SubscribeReasonCode::Success(qos_out(q))))
                    .collect(),
            )),
            Answer::UnsubAck { pkid, .. } => Packet::UnsubAck(v4::UnsubAck::new(pkid)),
            Answer::PingResp => Packet::PingResp,
            Answer::Publish { topic, qos, pkid, payload } => Packet::Publish(v4::Publish {
                dup: false,
                qos: qos_out(qos),
                retain: false,
                topic: topic.to_string(),
                pkid,
                payload: payload.clone(),
            }),
        };
        write(packet, buf);
        Ok(())
    }

    fn disconnect(_: Close, _: &mut BytesMut) {}
}

fn read(buf: &mut BytesMut, max_size: usize) -> Result<Option<Packet>, WireError> {
    match Packet::read(buf, max_size) {
        Ok(packet) => Ok(Some(packet)),
        Err(Error::InsufficientBytes(_)) => Ok(None),
        Err(Error::PayloadSizeLimitExceeded(_)) => Err(WireError::TooLarge(max_size)),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

fn write(packet: Packet, buf: &mut BytesMut) {
    // Only what this server builds is written, and it always fits the format.
    if let Err(e) = packet.write(buf, usize::MAX) {
        tracing::error!(error = %e, "an MQTT packet could not be encoded");
    }
}

fn qos_out(qos: Qos) -> QoS {
    match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}
