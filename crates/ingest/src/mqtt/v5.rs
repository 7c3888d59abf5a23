//! MQTT 5 adapter: turns ntex-mqtt v5 packets into [`Connection`] calls and the outcomes
//! back into v5 reason codes.
//!
//! Every PUBLISH gets an answer: PUBACK 0x00 once the reading is durable, or a negative
//! PUBACK (the connection stays up). QoS 2 never gets here: CONNACK advertises maximum
//! QoS 1 and ntex-mqtt disconnects a client that ignores it (DISCONNECT 0x9B).

use std::sync::Arc;

use ntex_mqtt::v5::{self, codec};

use super::registry::{CloseReason, Outbound};
use super::session::{self, ConnectParams, Connection, DeviceSink, Protocol, Refusal, Will};
use super::{ConnectionError, Shared, SubscriptionRequest};
use crate::IngestError;

/// CONNECT → authenticate, attach the session, start its outbound task.
pub(super) async fn handshake(
    shared: &Arc<Shared>,
    handshake: v5::Handshake,
) -> Result<v5::HandshakeAck<Connection>, ConnectionError> {
    let pkt = handshake.packet();
    let will = pkt.last_will.as_ref().map(|w| Will::new(&w.topic, &w.message));
    let requested_expiry = pkt.session_expiry_interval_secs;
    let params = ConnectParams {
        protocol: Protocol::V5,
        client_id: &pkt.client_id,
        username: pkt.username.as_deref(),
        password: pkt.password.as_deref(),
        clean_start: pkt.clean_start,
        session_expiry_secs: requested_expiry,
        keep_alive_secs: pkt.keep_alive,
        will,
        certificate: super::tls::client_certificate(handshake.io()),
    };
    match session::connect(shared, params).await {
        Ok(accepted) => {
            let sink = handshake.sink();
            let outbound = accepted.conn.outbound_task(V5Sink(sink));
            let keep_alive = accepted.keep_alive_secs;
            let ack = handshake
                .ack(accepted.conn)
                // [MQTT-3.1.2-22]: the server closes after 1.5 × keep-alive without a packet.
                .keep_alive(keep_alive.saturating_add(keep_alive / 2))
                .max_send(Some(shared.config.max_inflight))
                .with(|ack| {
                    ack.session_present = accepted.session_present;
                    ack.assigned_client_id = accepted.assigned_client_id.map(Into::into);
                    if accepted.keep_alive_capped {
                        ack.server_keepalive_sec = Some(keep_alive);
                    }
                    if accepted.session_expiry_secs != requested_expiry {
                        ack.session_expiry_interval_secs = Some(accepted.session_expiry_secs);
                    }
                    // Ingot offers each device its own topics only.
                    ack.wildcard_subscription_available = false;
                    ack.shared_subscription_available = false;
                    ack.subscription_identifiers_available = false;
                });
            // Spawned tasks first run after this handler returns, so after the CONNACK is written.
            ntex_rt::spawn(outbound);
            Ok(ack)
        }
        Err(refusal) => Ok(handshake.failed(connack_code(refusal))),
    }
}

fn connack_code(refusal: Refusal) -> codec::ConnectAckReason {
    match refusal {
        Refusal::BadCredentials => codec::ConnectAckReason::BadUserNameOrPassword,
        Refusal::BadCertificate(_) => codec::ConnectAckReason::NotAuthorized,
        Refusal::UnknownDevice | Refusal::BadIdentity { from_client_id: false } => {
            codec::ConnectAckReason::NotAuthorized
        }
        Refusal::BadIdentity { from_client_id: true } | Refusal::ClientIdRequired => {
            codec::ConnectAckReason::ClientIdentifierNotValid
        }
        Refusal::Unavailable => codec::ConnectAckReason::ServerUnavailable,
        Refusal::TooManyConnections | Refusal::TooManySessions => codec::ConnectAckReason::QuotaExceeded,
    }
}

/// PUBLISH → store, answer with the matching PUBACK reason code.
pub(super) async fn publish(conn: &Connection, publish: v5::Publish) -> Result<v5::PublishAck, ConnectionError> {
    let payload = super::read_payload(conn, publish.payload_size(), publish.packet_size(), publish.read_all()).await?;
    let outcome = conn.publish(publish.publish_topic(), &payload).await;
    Ok(match outcome {
        Ok(()) => publish.ack(),
        Err(e) => publish.ack().reason_code(puback_code(&e)),
    })
}

/// PUBACK reason for a refused message. MQTT 5 allows no 0x95 (packet too large) in a
/// PUBACK; an over-limit payload that still fits the packet limit gets 0x97.
fn puback_code(e: &IngestError) -> codec::PublishAckReason {
    match e {
        IngestError::ForeignTopic => codec::PublishAckReason::NotAuthorized,
        IngestError::BadTopic => codec::PublishAckReason::TopicNameInvalid,
        IngestError::Payload(_) => codec::PublishAckReason::PayloadFormatInvalid,
        IngestError::TooLarge(_) | IngestError::TooManyAttributes(_) => codec::PublishAckReason::QuotaExceeded,
        IngestError::Revoked => codec::PublishAckReason::NotAuthorized,
        IngestError::Bus(_) | IngestError::Unavailable => codec::PublishAckReason::UnspecifiedError,
    }
}

/// SUBSCRIBE, UNSUBSCRIBE, DISCONNECT, PINGREQ, AUTH.
pub(super) async fn protocol(
    conn: &Connection,
    msg: v5::ProtocolMessage,
) -> Result<v5::ProtocolMessageAck, ConnectionError> {
    Ok(match msg {
        v5::ProtocolMessage::Subscribe(mut subscribe) => {
            super::subscribe_each(conn, subscribe.iter_mut());
            subscribe.ack()
        }
        v5::ProtocolMessage::Unsubscribe(unsubscribe) => {
            conn.unsubscribe_each(unsubscribe.iter());
            unsubscribe.ack()
        }
        v5::ProtocolMessage::Disconnect(disconnect) => {
            let keep_will = disconnect.packet().reason_code == codec::DisconnectReasonCode::DisconnectWithWillMessage;
            conn.disconnected_by_client(keep_will);
            disconnect.ack()
        }
        other => other.ack(),
    })
}

impl SubscriptionRequest for v5::control::Subscription<'_> {
    fn filter(&self) -> &str {
        self.topic()
    }
    fn requested(&self) -> v5::QoS {
        self.options().qos
    }
    fn grant(&mut self, qos: v5::QoS) {
        self.confirm(qos);
    }
    fn refuse(&mut self) {
        self.fail(codec::SubscribeAckReason::NotAuthorized);
    }
}

struct V5Sink(v5::MqttSink);

impl DeviceSink for V5Sink {
    fn send_qos0(&self, msg: &Outbound) -> bool {
        self.0.publish(msg.topic.as_str()).send_at_most_once(msg.wire_payload()).is_ok()
    }

    async fn send_qos1(&self, msg: &Outbound) -> bool {
        match self.0.publish(msg.topic.as_str()).send_at_least_once(msg.wire_payload()).await {
            Ok(ack) => ack.reason_code == codec::PublishAckReason::Success,
            Err(_) => false,
        }
    }

    fn close(&self, reason: CloseReason) {
        let code = match reason {
            CloseReason::TakenOver => codec::DisconnectReasonCode::SessionTakenOver,
            CloseReason::ServerShutdown => codec::DisconnectReasonCode::ServerShuttingDown,
            CloseReason::Ended => codec::DisconnectReasonCode::NormalDisconnection,
            CloseReason::NotAuthorized => codec::DisconnectReasonCode::NotAuthorized,
        };
        self.0.close_with_reason(codec::Disconnect::new(code));
    }
}
