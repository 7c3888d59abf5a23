//! A real Foo server and client over TCP, written independently of the proxy's parser.
//!
//! The server answers every line in order: `REQ n ...` gets `ACK n ok` (or `NAK n nope`
//! when n is a multiple of 3), anything else `NAK 0 ERRDECODE`; a trailing `\r` is
//! accepted, and a last line without newline is answered at end of stream. It splits every
//! answer into two writes to exercise reassembly, and closes after the client half-closes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct FooServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FooServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FooServer {
    pub async fn start() -> FooServer {
        Self::start_on("127.0.0.1:0".parse().expect("addr")).await.expect("bind Foo server")
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FooServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        });
        Ok(FooServer { addr, task })
    }
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            if !pending.is_empty() {
                let _ = write_split(&mut stream, &answer(&pending)).await;
            }
            let _ = stream.shutdown().await;
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            if write_split(&mut stream, &answer(&line[..pos])).await.is_err() {
                return;
            }
        }
    }
}

async fn write_split(stream: &mut TcpStream, reply: &[u8]) -> std::io::Result<()> {
    let (a, b) = reply.split_at(reply.len() / 2);
    stream.write_all(a).await?;
    stream.flush().await?;
    stream.write_all(b).await
}

/// The server's reply to one line (given without `\n`).
pub fn answer(line: &[u8]) -> Vec<u8> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parsed = line.strip_prefix(b"REQ ").and_then(|rest| {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let valid_end = matches!(rest.get(digits), None | Some(b' '));
        let seq: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        valid_end.then_some(seq)
    });
    match parsed {
        Some(seq) if seq % 3 == 0 => format!("NAK {seq} nope\n").into_bytes(),
        Some(seq) => format!("ACK {seq} ok\n").into_bytes(),
        None => b"NAK 0 ERRDECODE\n".to_vec(),
    }
}

/// Sends `chunks` as separate writes (with a short pause between them so that they travel
/// as separate segments), half-closes, and returns everything received until end of stream.
pub async fn exchange(addr: SocketAddr, chunks: &[Vec<u8>]) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut received = Vec::new();
        read.read_to_end(&mut received).await.map(|_| received)
    });
    for (i, chunk) in chunks.iter().enumerate() {
        write.write_all(chunk).await.expect("write");
        if i % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    write.shutdown().await.expect("half-close");
    tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("response within 20 s")
        .expect("reader task")
        .expect("read until end of stream")
}

/// Cuts `bytes` at deterministic pseudo-random positions into pieces of 1..=max_piece bytes.
pub fn split_randomly(bytes: &[u8], seed: u64, max_piece: usize) -> Vec<Vec<u8>> {
    let mut state = seed | 1;
    let mut pieces = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state as usize % max_piece + 1).min(rest.len());
        pieces.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    pieces
}

/// One request/response round trip on an open connection.
pub async fn round_trip(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while reply.last() != Some(&b'\n') {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("reply within 5 s")
            .expect("read");
        assert!(n > 0, "connection closed before the reply to {request:?}");
        reply.push(byte[0]);
    }
    String::from_utf8(reply).expect("utf-8 reply")
}
