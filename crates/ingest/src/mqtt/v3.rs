//! MQTT 3.1.1 adapter: turns ntex-mqtt v3 packets into [`Connection`] calls and the
//! outcomes back into v3 answers.
//!
//! v3 has no negative PUBACK, so a refused message (foreign topic, bad payload) is
//! acknowledged and dropped — as dojot's VerneMQ agent did — and counted. A storage
//! failure is not acknowledged: the connection is closed, so the device resends.

use std::sync::Arc;

use ntex_mqtt::v3::{self, codec};

use super::registry::{CloseReason, Outbound};
use super::session::{self, ConnectParams, Connection, DeviceSink, Protocol, Refusal, Will};
use super::{ConnectionError, Shared, SubscriptionRequest};
use crate::IngestError;

/// CONNECT → authenticate, attach the session, start its outbound task.
pub(super) async fn handshake(
    shared: &Arc<Shared>,
    handshake: v3::Handshake,
) -> Result<v3::HandshakeAck<Connection>, ConnectionError> {
    let pkt = handshake.packet();
    let will = pkt.last_will.as_ref().map(|w| Will::new(&w.topic, &w.message));
    let params = ConnectParams {
        protocol: Protocol::V3,
        client_id: &pkt.client_id,
        username: pkt.username.as_deref(),
        password: pkt.password.as_deref(),
        clean_start: pkt.clean_session,
        // v3 has no expiry of its own: a persistent session lives for the configured time.
        session_expiry_secs: if pkt.clean_session { 0 } else { shared.config.session_expiry_secs },
        keep_alive_secs: pkt.keep_alive,
        will,
        certificate: super::tls::client_certificate(handshake.io()),
    };
    match session::connect(shared, params).await {
        Ok(accepted) => {
            let sink = handshake.sink();
            let outbound = accepted.conn.outbound_task(V3Sink(sink));
            let keep_alive = accepted.keep_alive_secs;
            let ack = handshake
                .ack(accepted.conn, accepted.session_present)
                // [MQTT-3.1.2-24]: the server closes after 1.5 × keep-alive without a packet.
                .idle_timeout(ntex_util::time::Seconds(keep_alive.saturating_add(keep_alive / 2)))
                .max_send(Some(shared.config.max_inflight));
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
        Refusal::UnknownDevice | Refusal::BadIdentity { .. } => codec::ConnectAckReason::NotAuthorized,
        Refusal::ClientIdRequired => codec::ConnectAckReason::IdentifierRejected,
        Refusal::Unavailable | Refusal::TooManyConnections | Refusal::TooManySessions => {
            codec::ConnectAckReason::ServiceUnavailable
        }
    }
}

/// PUBLISH → store; `Ok` makes ntex-mqtt send the PUBACK (QoS 1).
pub(super) async fn publish(conn: &Connection, publish: v3::Publish) -> Result<(), ConnectionError> {
    let payload = super::read_payload(conn, publish.payload_size(), publish.packet_size(), publish.read_all()).await?;
    match conn.publish(publish.publish_topic(), &payload).await {
        Ok(()) => Ok(()),
        Err(IngestError::Bus(e)) => Err(ConnectionError::Storage(e.to_string())),
        // Not stored and not acked: the connection closes, the device resends later.
        Err(e @ IngestError::Unavailable) => Err(ConnectionError::Storage(e.to_string())),
        // v3 cannot refuse a PUBLISH; the connection is closing anyway.
        Err(IngestError::Revoked) => Err(ConnectionError::Revoked),
        // Refused (counted and logged by the connection): ack and drop.
        Err(_) => Ok(()),
    }
}

/// SUBSCRIBE, UNSUBSCRIBE, DISCONNECT, PINGREQ.
pub(super) async fn protocol(
    conn: &Connection,
    msg: v3::ProtocolMessage,
) -> Result<v3::ProtocolMessageAck, ConnectionError> {
    Ok(match msg {
        v3::ProtocolMessage::Subscribe(mut subscribe) => {
            super::subscribe_each(conn, subscribe.iter_mut());
            subscribe.ack()
        }
        v3::ProtocolMessage::Unsubscribe(unsubscribe) => {
            conn.unsubscribe_each(unsubscribe.iter());
            unsubscribe.ack()
        }
        v3::ProtocolMessage::Disconnect(disconnect) => {
            conn.disconnected_by_client(false);
            disconnect.ack()
        }
        other => other.ack(),
    })
}

impl SubscriptionRequest for v3::control::Subscription<'_> {
    fn filter(&self) -> &str {
        self.topic()
    }
    fn requested(&self) -> v3::QoS {
        self.qos()
    }
    fn grant(&mut self, qos: v3::QoS) {
        self.confirm(qos);
    }
    fn refuse(&mut self) {
        self.fail();
    }
}

struct V3Sink(v3::MqttSink);

impl DeviceSink for V3Sink {
    fn send_qos0(&self, msg: &Outbound) -> bool {
        self.0.publish(msg.topic.as_str()).send_at_most_once(msg.wire_payload()).is_ok()
    }

    async fn send_qos1(&self, msg: &Outbound) -> bool {
        self.0.publish(msg.topic.as_str()).send_at_least_once(msg.wire_payload()).await.is_ok()
    }

    fn close(&self, _reason: CloseReason) {
        // v3 cannot say why; the connection just ends.
        self.0.close();
    }
}
