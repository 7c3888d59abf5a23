//! Packets as the connection loop sees them, whatever the protocol version, and the
//! [`Wire`] each version implements to read and write them.
//!
//! The bytes themselves are rumqttc's codecs (`mqttbytes` v4 for 3.1.1, v5 for 5): the
//! adapters in `v3` and `v5` turn their packets into these types and back, and decide
//! what only one version can say (reason codes, CONNACK properties).

use bytes::{Bytes, BytesMut};

use super::registry::{CloseReason, Qos};
use super::session::{Accepted, Protocol, Refusal, Will};
use crate::IngestError;

/// A CONNECT, whatever its version.
#[derive(Debug)]
pub(crate) struct Connect {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub clean_start: bool,
    pub keep_alive_secs: u16,
    pub will: Option<Will>,
    /// v5 only; v3 has none (the session lives for the configured time when persistent).
    pub session_expiry_secs: Option<u32>,
    /// The largest packet the client accepts (v5 only).
    pub max_packet_size: Option<u32>,
}

/// A PUBLISH from a device.
#[derive(Debug)]
pub(crate) struct Publish {
    pub topic: String,
    /// 0, 1 or 2 as sent (2 is refused by the connection).
    pub qos: u8,
    /// 0 for QoS 0.
    pub pkid: u16,
    pub payload: Bytes,
    /// The PUBLISH used a topic alias (v5), which CONNACK did not allow.
    pub topic_alias: bool,
}

/// A packet from a connected device.
#[derive(Debug)]
pub(crate) enum Inbound {
    Publish(Publish),
    /// The device acknowledged one of our QoS 1 messages; `accepted` is false for a v5
    /// negative PUBACK.
    PubAck {
        pkid: u16,
        accepted: bool,
    },
    Subscribe {
        pkid: u16,
        filters: Vec<(String, Qos)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// `keep_will`: v5's "disconnect with will message".
    Disconnect {
        keep_will: bool,
    },
    /// A packet no client may send to this server now (a second CONNECT, QoS 2 flow
    /// control, a CONNACK…): a protocol error.
    Unexpected(&'static str),
}

/// Why the server ends a connection; v5 says it in a DISCONNECT, v3 just closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// The session ended the connection (taken over, revoked, shutting down).
    Session(CloseReason),
    /// No packet within 1.5 × keep-alive.
    KeepAlive,
    /// A packet larger than the configured limit.
    TooLarge,
    /// A QoS 2 PUBLISH: CONNACK advertised QoS 1 at most.
    QosNotSupported,
    /// A topic alias: CONNACK allowed none.
    TopicAlias,
    /// Bytes that are not MQTT.
    Malformed,
    /// A packet out of place.
    Protocol,
    /// A reading could not be stored, and v3 cannot say so in its PUBACK.
    Storage,
}

/// Why a packet could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("packet larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed packet: {0}")]
    Malformed(String),
}

impl WireError {
    pub fn close(&self) -> Close {
        match self {
            Self::TooLarge(_) => Close::TooLarge,
            Self::Malformed(_) => Close::Malformed,
        }
    }
}

/// A packet to the device.
pub(crate) enum Answer<'a> {
    /// The outcome of a QoS 1 PUBLISH.
    PubAck {
        pkid: u16,
        outcome: &'a Result<(), IngestError>,
    },
    /// Granted QoS per filter, `None` refused.
    SubAck {
        pkid: u16,
        granted: &'a [Option<Qos>],
    },
    UnsubAck {
        pkid: u16,
        filters: usize,
    },
    PingResp,
    /// Actuation.
    Publish {
        topic: &'a str,
        qos: Qos,
        pkid: u16,
        payload: &'a Bytes,
    },
}

/// One protocol version on the wire.
pub(crate) trait Wire: Send + Sync + 'static {
    const PROTOCOL: Protocol;

    /// Reads a CONNECT from the start of `buf` (one whole frame).
    fn decode_connect(buf: &mut BytesMut, max_size: usize) -> Result<Connect, WireError>;

    /// Reads the next packet; `None` while `buf` holds no whole one.
    fn decode(buf: &mut BytesMut, max_size: usize) -> Result<Option<Inbound>, WireError>;

    /// Writes a CONNACK accepting `accepted`; `requested_expiry` is what the client asked.
    fn connack(accepted: &Accepted, requested_expiry: Option<u32>, config: &super::MqttConfig, buf: &mut BytesMut);

    /// Writes a CONNACK refusing the connection.
    fn refuse(refusal: Refusal, buf: &mut BytesMut);

    /// Writes `answer`. A QoS 1 outcome that this version cannot answer ends the
    /// connection instead: `Err` says why.
    fn encode(answer: Answer<'_>, buf: &mut BytesMut) -> Result<(), Close>;

    /// Writes what tells the device why the server closes (v5 DISCONNECT; v3 nothing).
    fn disconnect(reason: Close, buf: &mut BytesMut);
}

/// The protocol level of the CONNECT at the start of `buf`, once a whole frame is there.
/// `Ok(None)`: more bytes are needed.
pub(crate) fn connect_level(buf: &[u8], max_size: usize) -> Result<Option<u8>, WireError> {
    use rumqttc::mqttbytes::{Error, PacketType, check};
    let header = match check(buf.iter(), max_size) {
        Ok(header) => header,
        Err(Error::InsufficientBytes(_)) => return Ok(None),
        Err(Error::PayloadSizeLimitExceeded(_)) => return Err(WireError::TooLarge(max_size)),
        Err(e) => return Err(WireError::Malformed(e.to_string())),
    };
    if !matches!(header.packet_type(), Ok(PacketType::Connect)) {
        return Err(WireError::Malformed("the first packet is not CONNECT".into()));
    }
    // The fixed header: the type byte, then the remaining length in 1–4 bytes, each but
    // the last with its top bit set (`check` validated them). Then the variable header:
    // protocol name (2-byte length + "MQTT"), then the level.
    let length_bytes = buf[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
    let variable = &buf[1 + length_bytes..header.frame_length()];
    let name_len = match variable {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => return Err(WireError::Malformed("CONNECT too short".into())),
    };
    match variable.get(2 + name_len) {
        Some(level) if &variable[2..2 + name_len] == b"MQTT" => Ok(Some(*level)),
        _ => Err(WireError::Malformed("CONNECT without the MQTT protocol name".into())),
    }
}

/// A SUBSCRIBE's requested QoS (0–2) as the session keeps it: QoS 2 subscriptions are
/// granted QoS 1.
pub(crate) fn requested(qos: u8) -> Qos {
    if qos == 0 { Qos::AtMostOnce } else { Qos::AtLeastOnce }
}

/// A will from its topic and message as the codecs hand them over.
pub(crate) fn will(topic: &[u8], message: &Bytes) -> Result<Will, WireError> {
    let topic = std::str::from_utf8(topic).map_err(|_| WireError::Malformed("will topic is not UTF-8".into()))?;
    Ok(Will { topic: topic.to_string(), payload: message.clone() })
}

/// The codecs on input no client should send: every packet kind, mutated, cut and
/// padded, and plain noise. Nothing may panic, and a packet is never read beyond the
/// bytes there are. (The network-level fuzz target is `fuzz/mqtt_server`.)
#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::super::v3::V3;
    use super::super::v5::V5;
    use super::{Inbound, Wire, connect_level};

    /// xorshift64*: reproducible without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// One of each packet a client sends, in 3.1.1 and 5 (hand-made, as on the wire).
    fn seeds() -> Vec<Vec<u8>> {
        let field = |s: &[u8]| [&(s.len() as u16).to_be_bytes()[..], s].concat();
        let frame = |byte1: u8, body: Vec<u8>| [&[byte1, body.len() as u8][..], &body].concat();
        let connect = |level: u8| {
            let mut body = [field(b"MQTT"), vec![level, 0b1110_1110, 0, 60]].concat();
            if level == 5 {
                body.extend([5, 0x11, 0, 0, 0, 10]); // session expiry 10 s
            }
            body.extend(field(b"client"));
            if level == 5 {
                body.push(0); // will properties
            }
            body.extend(field(b"acme:dev1/attrs"));
            body.extend(field(br#"{"will":1}"#));
            body.extend(field(b"acme:dev1"));
            body.extend(field(b"s3cret"));
            frame(0x10, body)
        };
        let publish = |level: u8, qos: u8| {
            let mut body = field(b"acme:dev1/attrs");
            if qos > 0 {
                body.extend([0, 7]);
            }
            if level == 5 {
                body.extend([3, 0x23, 0, 1]); // topic alias 1
            }
            body.extend(br#"{"t":21.5}"#);
            frame(0x30 | (qos << 1), body)
        };
        let subscribe = |level: u8| {
            let mut body = vec![0, 9];
            if level == 5 {
                body.push(0);
            }
            body.extend(field(b"acme:dev1/config"));
            body.push(1);
            frame(0x82, body)
        };
        let mut all = Vec::new();
        for level in [4, 5] {
            all.push(connect(level));
            for qos in 0..3 {
                all.push(publish(level, qos));
            }
            all.push(subscribe(level));
            all.push(frame(
                0xA2,
                [vec![0, 3], if level == 5 { vec![0] } else { vec![] }, field(b"acme:dev1/config")].concat(),
            ));
        }
        all.extend([
            vec![0x40, 2, 0, 1],
            vec![0x40, 4, 0, 1, 0x87, 0],
            vec![0xC0, 0],
            vec![0xE0, 0],
            vec![0xE0, 2, 4, 0],
        ]);
        all
    }

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            match rng.below(5) {
                0 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
                1 if !bytes.is_empty() => bytes.truncate(rng.below(bytes.len())),
                2 => {
                    let i = rng.below(bytes.len() + 1);
                    bytes.insert(i, rng.next() as u8);
                }
                3 => bytes.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
                _ => {
                    // A length field claiming more than there is.
                    let i = rng.below(bytes.len().max(1)).min(bytes.len().saturating_sub(1));
                    if let Some(b) = bytes.get_mut(i) {
                        *b = 0xff;
                    }
                }
            }
        }
        bytes
    }

    fn drain<W: Wire>(bytes: &[u8], max_size: usize) {
        let mut buf = BytesMut::from(bytes);
        let _ = connect_level(bytes, max_size);
        if W::decode_connect(&mut buf.clone(), max_size).is_ok() {
            let _ = W::decode_connect(&mut buf, max_size);
        }
        for _ in 0..bytes.len() + 1 {
            let before = buf.len();
            match W::decode(&mut buf, max_size) {
                Ok(Some(Inbound::Publish(p))) => assert!(p.payload.len() <= before, "payload within the input"),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
            assert!(buf.len() < before, "a packet read consumes bytes");
        }
    }

    #[test]
    fn garbage_never_panics_either_codec() {
        let seeds = seeds();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..60_000 {
            let input = if round % 10 == 0 {
                (0..rng.below(64)).map(|_| rng.next() as u8).collect()
            } else {
                let seed = rng.below(seeds.len());
                let first = mutate(&mut rng, &seeds[seed]);
                // Sometimes a second packet behind the first, as a stream has.
                if rng.below(3) == 0 { [first, seeds[rng.below(seeds.len())].clone()].concat() } else { first }
            };
            for max_size in [64, 4096] {
                drain::<V3>(&input, max_size);
                drain::<V5>(&input, max_size);
            }
        }
    }

    #[test]
    fn the_seeds_decode_as_what_they_are() {
        let seeds = seeds();
        let mut connect = BytesMut::from(&seeds[0][..]);
        assert_eq!(connect_level(&connect, 4096).unwrap(), Some(4));
        let c = V3::decode_connect(&mut connect, 4096).unwrap();
        assert_eq!((c.client_id.as_str(), c.username.as_deref()), ("client", Some("acme:dev1")));
        assert_eq!(c.will.unwrap().topic, "acme:dev1/attrs");
        let mut connect5 = BytesMut::from(&seeds[6][..]);
        assert_eq!(connect_level(&connect5, 4096).unwrap(), Some(5));
        assert_eq!(V5::decode_connect(&mut connect5, 4096).unwrap().session_expiry_secs, Some(10));
        let mut publish5 = BytesMut::from(&seeds[9][..]);
        match V5::decode(&mut publish5, 4096).unwrap() {
            Some(Inbound::Publish(p)) => assert!(p.topic_alias && p.qos == 2 && p.pkid == 7),
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
        let mut disconnect = BytesMut::from(&[0xE0, 0][..]);
        assert!(matches!(V5::decode(&mut disconnect, 4096).unwrap(), Some(Inbound::Disconnect { keep_will: false })));
        let mut with_will = BytesMut::from(&[0xE0, 2, 4, 0][..]);
        assert!(matches!(V5::decode(&mut with_will, 4096).unwrap(), Some(Inbound::Disconnect { keep_will: true })));
        let mut too_large = BytesMut::from(&seeds[1][..]);
        assert!(matches!(V3::decode(&mut too_large, 8), Err(super::WireError::TooLarge(8))));
    }
}
