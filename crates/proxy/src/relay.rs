//! One proxied connection: bytes copied both ways, unchanged, while the lines are counted.
//!
//! Each direction is a loop of "wait until readable, read what is there, count the lines,
//! write it all out". Both directions run concurrently inside the connection's task, so
//! pipelined requests and responses flow independently (no lock-step).
//!
//! Memory per connection is bounded: a direction reads into at most one [`CHUNK_BYTES`]
//! buffer and does not read again until that buffer has been written, so a peer that
//! never reads stops the other side through TCP backpressure instead of growing a queue.
//! The buffer is released whenever the socket has nothing more to read, so idle
//! connections hold no buffer at all.
//!
//! End of stream in one direction is passed on with `shutdown(Write)` (half-close) while
//! the other direction keeps going. If the remaining direction then sees no traffic for
//! [`RelayConfig::half_closed_idle`] (checked once per period, so one to two periods), the
//! connection is closed, so a peer that vanished unnoticed cannot hold it forever.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::scanner::{LineScanner, LineTooLong, Tally};
use crate::stats::Stats;

/// Read buffer per direction while data is flowing.
pub const CHUNK_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// Longest line (without its newline) accepted in either direction.
    pub max_line_bytes: usize,
    /// After one direction has ended, how long the other may stay silent.
    pub half_closed_idle: Duration,
}

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::ClientToServer => "client->server",
            Direction::ServerToClient => "server->client",
        })
    }
}

/// Why a connection ended other than by both sides closing.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{direction}: {source}")]
    LineTooLong { direction: Direction, source: LineTooLong },
    #[error("{direction}: {source}")]
    Io { direction: Direction, source: io::Error },
    #[error("{direction} silent for {idle:?} after the other direction closed")]
    HalfClosedIdle { direction: Direction, idle: Duration },
}

/// How a connection that ended normally went.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelaySummary {
    pub client_to_server_bytes: u64,
    pub server_to_client_bytes: u64,
}

/// Relays between `client` and `server` until both directions are closed or one fails.
/// Both sockets are closed when this returns.
pub async fn relay(
    client: TcpStream,
    server: TcpStream,
    config: RelayConfig,
    stats: &Stats,
) -> Result<RelaySummary, RelayError> {
    // Reads so far in either direction; the half-closed idle check watches it change.
    let reads = AtomicU64::new(0);

    let upstream = pump(Direction::ClientToServer, &client, &server, config, stats, &reads);
    let downstream = pump(Direction::ServerToClient, &server, &client, config, stats, &reads);
    tokio::pin!(upstream, downstream);

    let mut summary = RelaySummary::default();
    let remaining = tokio::select! {
        bytes = &mut upstream => {
            summary.client_to_server_bytes = bytes?;
            Direction::ServerToClient
        }
        bytes = &mut downstream => {
            summary.server_to_client_bytes = bytes?;
            Direction::ClientToServer
        }
    };

    // One side is half-closed; finish the other, but not forever if it stays silent: a
    // whole idle period without a single read ends the connection (after one to two periods).
    let idle = config.half_closed_idle;
    let mut reads_seen = reads.load(Ordering::Relaxed);
    loop {
        let finished = tokio::select! {
            bytes = &mut upstream, if remaining == Direction::ClientToServer => Some(bytes),
            bytes = &mut downstream, if remaining == Direction::ServerToClient => Some(bytes),
            () = tokio::time::sleep(idle) => None,
        };
        match finished {
            Some(bytes) => {
                match remaining {
                    Direction::ClientToServer => summary.client_to_server_bytes = bytes?,
                    Direction::ServerToClient => summary.server_to_client_bytes = bytes?,
                }
                return Ok(summary);
            }
            None => {
                let reads_now = reads.load(Ordering::Relaxed);
                if reads_now == reads_seen {
                    return Err(RelayError::HalfClosedIdle { direction: remaining, idle });
                }
                reads_seen = reads_now;
            }
        }
    }
}

/// Copies one direction until end of stream (then half-closes `dst`) or an error.
/// Returns the number of bytes forwarded.
async fn pump(
    direction: Direction,
    src: &TcpStream,
    dst: &TcpStream,
    config: RelayConfig,
    stats: &Stats,
    reads: &AtomicU64,
) -> Result<u64, RelayError> {
    let io_err = |source: io::Error| RelayError::Io { direction, source };
    let mut scanner = LineScanner::new(config.max_line_bytes);
    let mut forwarded = 0u64;
    loop {
        src.readable().await.map_err(io_err)?;
        // Allocated only while there is data: idle connections hold no buffer.
        let mut buf = Vec::with_capacity(CHUNK_BYTES);
        loop {
            let read = match read_chunk(src, &mut buf) {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            match read {
                Read::Nothing => break,
                Read::End => {
                    let mut tally = Tally::default();
                    scanner.finish(&mut tally);
                    stats.record(&tally);
                    // The peer may already be gone; the connection ends either way.
                    let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                    return Ok(forwarded);
                }
                Read::Data { drained } => {
                    reads.fetch_add(1, Ordering::Relaxed);
                    let mut tally = Tally::default();
                    let scanned = scanner.scan(&buf, &mut tally);
                    stats.record(&tally);
                    if let Err(too_long) = scanned {
                        write_all(dst, &buf[..too_long.forwardable]).await.map_err(io_err)?;
                        return Err(RelayError::LineTooLong { direction, source: too_long });
                    }
                    write_all(dst, &buf).await.map_err(io_err)?;
                    forwarded += buf.len() as u64;
                    buf.clear();
                    if drained {
                        break;
                    }
                }
            }
        }
    }
}

enum Read {
    /// Nothing to read now: wait for readiness.
    Nothing,
    /// The peer closed its sending side.
    End,
    /// `buf` holds new bytes; `drained` when the read did not fill the buffer.
    Data { drained: bool },
}

/// One non-blocking read into `buf`'s spare capacity.
///
/// A read that does not fill the buffer has emptied the socket, so the readiness is
/// cleared right away (reported to tokio as "would block"); the next wait then goes to
/// epoll instead of costing one more `read` that fails with EAGAIN. Data that arrives
/// meanwhile raises a new readiness event, which tokio does not let this clear lose.
fn read_chunk(src: &TcpStream, buf: &mut Vec<u8>) -> io::Result<Read> {
    let mut read = Read::Nothing;
    let result = src.try_io(Interest::READABLE, || {
        let n = src.try_read_buf(buf)?;
        if n == 0 {
            read = Read::End;
            return Ok(());
        }
        let drained = buf.len() < buf.capacity();
        read = Read::Data { drained };
        if drained { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(()) }
    });
    match result {
        Ok(()) => Ok(read),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(read),
        Err(e) => Err(e),
    }
}

/// Writes all of `data`, waiting for the socket to accept more when its buffer is full
/// (this wait is the backpressure on the other side).
async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of sockets: (the end the test drives, the end given to the relay).
    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (outer, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (outer.expect("connect"), accepted.expect("accept").0)
    }

    fn config(max_line_bytes: usize, half_closed_idle: Duration) -> RelayConfig {
        RelayConfig { max_line_bytes, half_closed_idle }
    }

    #[tokio::test]
    async fn half_closed_connection_with_a_silent_peer_is_closed_after_the_idle_time() {
        let (mut client, client_inner) = socket_pair().await;
        let (_server, server_inner) = socket_pair().await;
        let stats = Stats::default();
        let relay = relay(client_inner, server_inner, config(1024, Duration::from_millis(200)), &stats);
        let started = std::time::Instant::now();
        client.shutdown().await.expect("half-close");
        let result = tokio::time::timeout(Duration::from_secs(5), relay).await.expect("relay ends");
        let started = started.elapsed();
        assert!(
            matches!(result, Err(RelayError::HalfClosedIdle { direction: Direction::ServerToClient, .. })),
            "{result:?}"
        );
        assert!(started >= Duration::from_millis(200), "{started:?}");
    }

    #[tokio::test]
    async fn over_long_line_forwards_the_complete_lines_before_it_then_fails() {
        let (mut client, client_inner) = socket_pair().await;
        let (mut server, server_inner) = socket_pair().await;
        let relay = tokio::spawn(async move {
            let stats = Stats::default();
            relay(client_inner, server_inner, config(16, Duration::from_secs(60)), &stats).await
        });
        client.write_all(b"REQ 1\nREQ 2\nREQ 3 this line is far too long\n").await.expect("write");
        let result = tokio::time::timeout(Duration::from_secs(5), relay).await.expect("relay ends").expect("join");
        assert!(matches!(result, Err(RelayError::LineTooLong { direction: Direction::ClientToServer, .. })));
        let mut forwarded = Vec::new();
        server.read_to_end(&mut forwarded).await.expect("read");
        assert_eq!(forwarded, b"REQ 1\nREQ 2\n");
    }

    #[tokio::test]
    async fn both_directions_flow_and_are_counted() {
        let (mut client, client_inner) = socket_pair().await;
        let (mut server, server_inner) = socket_pair().await;
        let stats = std::sync::Arc::new(Stats::default());
        let relay_stats = std::sync::Arc::clone(&stats);
        let relay = tokio::spawn(async move {
            relay(client_inner, server_inner, config(1024, Duration::from_secs(60)), &relay_stats).await
        });
        client.write_all(b"REQ 1\nREQ 2\nbad\n").await.expect("write");
        client.shutdown().await.expect("half-close");
        let mut to_server = Vec::new();
        server.read_to_end(&mut to_server).await.expect("read");
        assert_eq!(to_server, b"REQ 1\nREQ 2\nbad\n");
        server.write_all(b"ACK 1\nNAK 2\nNAK 0 ERRDECODE").await.expect("write");
        server.shutdown().await.expect("close");
        let mut to_client = Vec::new();
        client.read_to_end(&mut to_client).await.expect("read");
        assert_eq!(to_client, b"ACK 1\nNAK 2\nNAK 0 ERRDECODE");
        let summary = relay.await.expect("join").expect("relay ok");
        assert_eq!((summary.client_to_server_bytes, summary.server_to_client_bytes), (16, 27));
        let report = stats.report();
        assert_eq!((report.msg_req, report.msg_ack, report.msg_nak, report.msg_malformed), (2, 1, 2, 1));
    }
}
