//! One device connection: read packets, hand each to the session in arrival order, write
//! the answers in that same order as they become ready. mini-redis's split: [`Transport`]
//! moves bytes, `wire` (with `v3`/`v5`) turns them into packets, `session` acts on them.
//!
//! Why a loop of our own rather than a framework's: several publishes of one connection
//! are in flight at once, up to `max_inflight` (v5's "receive maximum"). Each PUBLISH is
//! put on the bus as soon as it is decoded, so a device's readings keep their order; its
//! PUBACK goes out once the reading is durable, and PUBACKs go out in the order the
//! PUBLISHes came ([MQTT-4.6.0-2]). Readings of one connection then share commits, and
//! every answer that is ready by then leaves in one write. ntex-mqtt 8, used before,
//! could not keep the order with more than one publish in flight (BENCHMARKS.md, lever
//! 3), and held ~5 KB of per-connection state even when idle; here an idle plain-TCP
//! connection holds no buffer at all (it waits for readiness before taking one).
//!
//! Limits: a packet larger than `max_payload + PACKET_HEADROOM` ends the connection (v5
//! DISCONNECT 0x95); no whole packet within 1.5 × keep-alive ends it (0x8D), even when a
//! packet started and stopped half-way; a peer that does not read its answers within
//! that time is dropped; CONNECT must come within [`CONNECT_TIMEOUT`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};

use super::Shared;
use super::registry::{Outbound, Qos};
use super::session::{self, ConnectParams, Connection, Refusal};
use super::v3::V3;
use super::v5::V5;
use super::wire::{self, Answer, Close, Inbound, Wire};
use crate::{ClientCertificate, IngestError, Submitted};

/// How long a client has, once connected, to send its CONNECT.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Buffer space asked for per read.
const READ_CHUNK: usize = 4096;

/// A device's byte stream: plain TCP, or TLS over it.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Transport {
    /// Reads what has arrived into `buf`; 0 at the end of the stream. Plain TCP waits
    /// for data before taking buffer space, so that an idle connection holds none.
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(s) => loop {
                s.readable().await?;
                buf.reserve(READ_CHUNK);
                match s.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    read => return read,
                }
            },
            Self::Tls(s) => {
                buf.reserve(READ_CHUNK);
                s.read_buf(buf).await
            }
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(buf).await,
            Self::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
        };
    }
}

/// Serves one connection from its first byte to its end.
pub(super) async fn serve(shared: Arc<Shared>, mut io: Transport, certificate: Option<ClientCertificate>) {
    let max_size = shared.config.max_packet();
    let mut buf = BytesMut::new();
    let level = match timeout(CONNECT_TIMEOUT, read_connect(&mut io, &mut buf, max_size)).await {
        Ok(Ok(level)) => level,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "mqtt connection closed before CONNECT");
            return;
        }
        Err(_) => {
            tracing::debug!("mqtt connection sent no CONNECT in time");
            return;
        }
    };
    // Boxed once the version is known: the task then holds one connection's state, not
    // room for the CONNECT phase's as well (rustc lays out an `async fn`'s arguments and
    // its callee's future side by side).
    match level {
        4 => run::<V3>(shared, io, buf, certificate).await,
        5 => run::<V5>(shared, io, buf, certificate).await,
        level => {
            metrics::counter!("ingot_mqtt_connections_refused_total", "reason" => Refusal::UnsupportedVersion.reason())
                .increment(1);
            tracing::info!(level, "mqtt connection refused: unsupported protocol level");
            let mut out = BytesMut::new();
            V3::refuse(Refusal::UnsupportedVersion, &mut out);
            let _ = timeout(CONNECT_TIMEOUT, io.write_all(&out)).await;
            io.shutdown().await;
        }
    }
}

/// Reads until `buf` starts with a whole CONNECT; returns its protocol level.
async fn read_connect(io: &mut Transport, buf: &mut BytesMut, max_size: usize) -> io::Result<u8> {
    loop {
        match wire::connect_level(buf, max_size) {
            Ok(Some(level)) => return Ok(level),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if io.read(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// How a connection ended.
enum End {
    /// The device left (DISCONNECT, end of stream, a broken socket): nothing to tell it.
    Client,
    /// The server ends it; v5 says why.
    Server(Close),
}

/// An answer waiting its turn, in arrival order.
enum Turn {
    /// A PUBLISH on its way to durability; `pkid` 0 for QoS 0 (counted, not answered).
    Publish { pkid: u16, submitted: Submitted },
    /// An answer known at once.
    Ready(Option<Reply>),
}

/// A turn that came.
enum Reply {
    Published { pkid: u16, outcome: Result<(), IngestError> },
    SubAck { pkid: u16, granted: Vec<Option<Qos>> },
    UnsubAck { pkid: u16, filters: usize },
    PingResp,
}

impl Future for Turn {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        match &mut *self {
            Self::Publish { pkid, submitted } => {
                Pin::new(submitted).poll(cx).map(|outcome| Reply::Published { pkid: *pkid, outcome })
            }
            Self::Ready(reply) => Poll::Ready(reply.take().expect("a turn is polled until ready only once")),
        }
    }
}

/// Authenticates the CONNECT at the start of `buf`, then runs the connection.
async fn run<W: Wire>(shared: Arc<Shared>, io: Transport, buf: BytesMut, certificate: Option<ClientCertificate>) {
    // The handshake's state is boxed and gone once it is over: the task then holds no
    // room for it while the connection lives (rustc does not overlap it with the loop's).
    let Some((conn, mut state)) = Box::pin(handshake::<W>(shared, io, buf, certificate)).await else { return };
    let end = state.run::<W>(&conn).await;
    if let Some((_, msg)) = state.actuation.take() {
        conn.actuated(msg, false);
    }
    if let End::Server(close) = end {
        tracing::debug!(device = %conn.device, client_id = %conn.client_id, reason = ?close, "mqtt connection closed by the server");
        W::disconnect(close, &mut state.out);
        if !state.out.is_empty() {
            let _ = timeout(conn.packet_timeout(), state.io.write_all(&state.out)).await;
        }
    }
    state.io.shutdown().await;
}

/// Reads the CONNECT, authenticates it and answers; the connection and its loop's state
/// when accepted (the CONNACK waits in the loop's output).
async fn handshake<W: Wire>(
    shared: Arc<Shared>,
    mut io: Transport,
    mut buf: BytesMut,
    certificate: Option<ClientCertificate>,
) -> Option<(Connection, Loop)> {
    let max_size = shared.config.max_packet();
    let mut connect = match W::decode_connect(&mut buf, max_size) {
        Ok(connect) => connect,
        Err(e) => {
            tracing::debug!(error = %e, "mqtt CONNECT unreadable");
            return None;
        }
    };
    let session_expiry_secs = connect.session_expiry_secs.unwrap_or(if connect.clean_start {
        0
    } else {
        // v3 has no expiry of its own: a persistent session lives for the configured time.
        shared.config.session_expiry_secs
    });
    let will = connect.will.take();
    let params = ConnectParams {
        protocol: W::PROTOCOL,
        client_id: &connect.client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
        clean_start: connect.clean_start,
        session_expiry_secs,
        keep_alive_secs: connect.keep_alive_secs,
        will,
        certificate,
    };
    let mut out = BytesMut::new();
    let accepted = match session::connect(&shared, params).await {
        Ok(accepted) => accepted,
        Err(refusal) => {
            W::refuse(refusal, &mut out);
            let _ = timeout(CONNECT_TIMEOUT, io.write_all(&out)).await;
            io.shutdown().await;
            return None;
        }
    };
    W::connack(&accepted, connect.session_expiry_secs, &shared.config, &mut out);
    let state = Loop {
        max_size,
        max_inflight: usize::from(shared.config.max_inflight.max(1)),
        client_max_size: connect.max_packet_size.map_or(usize::MAX, |n| n as usize),
        io,
        read: buf,
        out,
        turns: FuturesOrdered::new(),
        actuation: None,
        actuation_stopped: false,
        next_pkid: 0,
    };
    Some((accepted.conn, state))
}

/// The state of a connected device's loop.
struct Loop {
    max_size: usize,
    max_inflight: usize,
    /// The largest packet the device accepts (v5), for actuation.
    client_max_size: usize,
    io: Transport,
    /// Bytes read and not yet decoded.
    read: BytesMut,
    /// Bytes to write.
    out: BytesMut,
    /// Answers in arrival order.
    turns: FuturesOrdered<Turn>,
    /// The QoS 1 actuation message the device has not acknowledged yet, with its packet
    /// id: one at a time, so that a device gets them in order.
    actuation: Option<(u16, Outbound)>,
    /// A message went undelivered: the rest wait for the session's next connection.
    actuation_stopped: bool,
    next_pkid: u16,
}

impl Loop {
    async fn run<W: Wire>(&mut self, conn: &Connection) -> End {
        let idle = conn.packet_timeout();
        // When the last whole packet came; the timer is moved on only when it fires, not
        // on every packet.
        let mut last_packet = Instant::now();
        let keep_alive = sleep_until(last_packet + idle);
        tokio::pin!(keep_alive);
        // Registered once, renewed after each wake-up: actuation queued, or close.
        let wake = conn.notified();
        tokio::pin!(wake);
        if let Some(reason) = conn.close_reason() {
            return End::Server(Close::Session(reason));
        }
        self.actuate::<W>(conn);
        loop {
            if !self.out.is_empty() {
                match timeout(idle, self.io.write_all(&self.out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return End::Client,
                }
                // Not kept: an idle connection holds no buffer.
                self.out = BytesMut::new();
            }
            if self.read.is_empty() && self.read.capacity() > 0 {
                // Not kept either (the CONNECT's buffer included).
                self.read = BytesMut::new();
            }
            let reading = self.turns.len() < self.max_inflight;
            if !reading {
                // Waiting on the server, not on the device.
                last_packet = Instant::now();
            }
            tokio::select! {
                biased;
                Some(reply) = self.turns.next() => {
                    if let Err(end) = self.answer::<W>(conn, reply) {
                        return end;
                    }
                    // And every answer ready behind it, for the same write. (Polled
                    // without a waker; the select above registers the task's again
                    // before it sleeps.)
                    while let Some(Some(reply)) = self.turns.next().now_or_never() {
                        if let Err(end) = self.answer::<W>(conn, reply) {
                            return end;
                        }
                    }
                }
                () = &mut wake => {
                    wake.set(conn.notified());
                    if let Some(reason) = conn.close_reason() {
                        return End::Server(Close::Session(reason));
                    }
                    self.actuate::<W>(conn);
                }
                read = self.io.read(&mut self.read), if reading => match read {
                    Ok(0) | Err(_) => return End::Client,
                    Ok(_) => {}
                },
                () = &mut keep_alive, if reading => {
                    if last_packet + idle <= Instant::now() {
                        return End::Server(Close::KeepAlive);
                    }
                    keep_alive.as_mut().reset(last_packet + idle);
                }
            }
            // Every whole packet read so far, as far as the in-flight limit allows.
            while self.turns.len() < self.max_inflight {
                match W::decode(&mut self.read, self.max_size) {
                    Ok(Some(packet)) => {
                        last_packet = Instant::now();
                        if let Err(end) = self.handle::<W>(conn, packet).await {
                            return end;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(device = %conn.device, error = %e, "mqtt packet refused");
                        return End::Server(e.close());
                    }
                }
            }
        }
    }

    /// Acts on one packet from the device.
    async fn handle<W: Wire>(&mut self, conn: &Connection, packet: Inbound) -> Result<(), End> {
        match packet {
            Inbound::Publish(p) => {
                if p.qos > 1 {
                    return Err(End::Server(Close::QosNotSupported));
                }
                if p.topic_alias {
                    return Err(End::Server(Close::TopicAlias));
                }
                let pkid = if p.qos == 1 { p.pkid } else { 0 };
                // Boxed: kept inline, its state (~600 bytes) would be part of every
                // connection's task for as long as it lives, idle or not.
                let turn = match Box::pin(conn.submit(&p.topic, &p.payload)).await {
                    Ok(submitted) => Turn::Publish { pkid, submitted },
                    Err(e) => Turn::Ready(Some(Reply::Published { pkid, outcome: Err(e) })),
                };
                self.turns.push_back(turn);
            }
            Inbound::PubAck { pkid, accepted } => {
                if self.actuation.as_ref().is_some_and(|(id, _)| *id == pkid)
                    && let Some((_, msg)) = self.actuation.take()
                {
                    conn.actuated(msg, accepted);
                    self.actuation_stopped = !accepted;
                    self.actuate::<W>(conn);
                }
            }
            Inbound::Subscribe { pkid, filters } => {
                let granted = filters.iter().map(|(filter, qos)| conn.subscribe(filter, *qos).ok()).collect();
                self.turns.push_back(Turn::Ready(Some(Reply::SubAck { pkid, granted })));
            }
            Inbound::Unsubscribe { pkid, filters } => {
                conn.unsubscribe_each(filters.iter().map(String::as_str));
                self.turns.push_back(Turn::Ready(Some(Reply::UnsubAck { pkid, filters: filters.len() })));
            }
            Inbound::PingReq => self.turns.push_back(Turn::Ready(Some(Reply::PingResp))),
            Inbound::Disconnect { keep_will } => {
                conn.disconnected_by_client(keep_will);
                return Err(End::Client);
            }
            Inbound::Unexpected(what) => {
                tracing::debug!(device = %conn.device, packet = what, "mqtt packet out of place");
                return Err(End::Server(Close::Protocol));
            }
        }
        Ok(())
    }

    /// Writes the answer whose turn came.
    fn answer<W: Wire>(&mut self, conn: &Connection, reply: Reply) -> Result<(), End> {
        let answer = match &reply {
            Reply::Published { pkid, outcome } => {
                conn.published(outcome);
                if *pkid == 0 {
                    return Ok(());
                }
                Answer::PubAck { pkid: *pkid, outcome }
            }
            Reply::SubAck { pkid, granted } => Answer::SubAck { pkid: *pkid, granted },
            Reply::UnsubAck { pkid, filters } => Answer::UnsubAck { pkid: *pkid, filters: *filters },
            Reply::PingResp => Answer::PingResp,
        };
        W::encode(answer, &mut self.out).map_err(End::Server)
    }

    /// Writes the session's queued actuation messages: QoS 0 ones at once, QoS 1 ones one
    /// at a time, each after the device acknowledged the one before.
    fn actuate<W: Wire>(&mut self, conn: &Connection) {
        while !self.actuation_stopped && self.actuation.is_none() {
            let Some(msg) = conn.next_outbound() else { return };
            let pkid = if msg.qos == Qos::AtLeastOnce { self.next_pkid() } else { 0 };
            let start = self.out.len();
            let answer = Answer::Publish { topic: &msg.topic, qos: msg.qos, pkid, payload: &msg.payload };
            if W::encode(answer, &mut self.out).is_err() || self.out.len() - start > self.client_max_size {
                // Larger than the device accepts: not sent, and not delivered.
                self.out.truncate(start);
                conn.actuated(msg, false);
                self.actuation_stopped = true;
            } else if msg.qos == Qos::AtLeastOnce {
                self.actuation = Some((pkid, msg));
            } else {
                conn.actuated(msg, true);
            }
        }
    }

    /// A packet id for our next QoS 1 message: 1..=65535 (one is in flight at a time).
    fn next_pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }
}
