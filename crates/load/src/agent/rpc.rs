//! Go's `net/rpc` over gob, both sides, as far as go-lo needs: the agent calls
//! `Server.Run` on a load test built with go-lo's library ([`Client`]); [`serve`] is the
//! other side, for load tests written in Rust (and the agent's tests).
//!
//! A call is an `rpc.Request{ServiceMethod, Seq}` then the argument, each a gob value on
//! the connection's one gob stream; the answer is an `rpc.Response{ServiceMethod, Seq,
//! Error}` then the reply. go-lo's argument and reply are its empty `NullArg`. Calls may
//! be answered out of order; `Seq` pairs them.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::gob::{self, Decoder, Encoder, Fields, GobError, STRING, StructDef, UINT, Val};

pub const REQUEST: StructDef = StructDef { name: "Request", fields: &[("ServiceMethod", STRING), ("Seq", UINT)] };
pub const RESPONSE: StructDef =
    StructDef { name: "Response", fields: &[("ServiceMethod", STRING), ("Seq", UINT), ("Error", STRING)] };
pub const NULL_ARG: StructDef = StructDef { name: "NullArg", fields: &[] };
/// The method go-lo's load tests serve.
pub const RUN: &str = "Server.Run";

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("the load test's RPC connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the load test's RPC connection: {0}")]
    Gob(#[from] GobError),
    #[error("the load test closed its RPC connection")]
    Closed,
}

/// One end of a gob stream in each direction.
struct Conn {
    stream: TcpStream,
    enc: Encoder,
    dec: Decoder,
    buf: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self { stream, enc: Encoder::default(), dec: Decoder::default(), buf: Vec::new() }
    }

    /// The next value (type definitions on the way are learnt).
    async fn value(&mut self) -> Result<Fields, RpcError> {
        loop {
            if let Some((body, used)) = gob::split_message(&self.buf)? {
                let value = self.dec.message(body)?;
                self.buf.drain(..used);
                if let Some((_, fields)) = value {
                    return Ok(fields);
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(RpcError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, header: (&StructDef, &[Val]), body: (&StructDef, &[Val])) -> Result<(), RpcError> {
        let mut out = Vec::new();
        self.enc.encode(header.0, header.1, &mut out);
        self.enc.encode(body.0, body.1, &mut out);
        self.stream.write_all(&out).await?;
        Ok(())
    }
}

fn text(fields: &[(String, Val)], name: &str) -> String {
    match gob::field(fields, name) {
        Some(Val::Str(s)) => s.clone(),
        _ => String::new(),
    }
}

fn number(fields: &[(String, Val)], name: &str) -> u64 {
    match gob::field(fields, name) {
        Some(Val::Uint(n)) => *n,
        _ => 0,
    }
}

/// The agent's side: calls `Server.Run`.
pub struct Client {
    conn: Conn,
    seq: u64,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { conn: Conn::new(stream), seq: 0 })
    }

    /// Sends a call; its sequence number.
    pub async fn call(&mut self) -> Result<u64, RpcError> {
        let seq = self.seq;
        self.seq += 1;
        let header = [Val::Str(RUN.into()), Val::Uint(seq)];
        self.conn.send((&REQUEST, &header), (&NULL_ARG, &[])).await?;
        Ok(seq)
    }

    /// The next answer: its sequence number, and the error the load test returned, if any.
    pub async fn answer(&mut self) -> Result<(u64, Option<String>), RpcError> {
        let header = self.conn.value().await?;
        self.conn.value().await?;
        let error = text(&header, "Error");
        Ok((number(&header, "Seq"), (!error.is_empty()).then_some(error)))
    }
}

/// The load test's side: answers calls on `stream` until it closes, running `run` for
/// each `Server.Run` (its `Err` goes back as the call's error).
pub async fn serve<F, Fut>(stream: TcpStream, run: F) -> Result<(), RpcError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut conn = Conn::new(stream);
    loop {
        let request = match conn.value().await {
            Ok(r) => r,
            Err(RpcError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        conn.value().await?;
        let (method, seq) = (text(&request, "ServiceMethod"), number(&request, "Seq"));
        let error = if method == RUN {
            run(seq).await.err().unwrap_or_default()
        } else {
            format!("rpc: can't find method {method}")
        };
        let header = [Val::Str(method), Val::Uint(seq), Val::Str(error)];
        conn.send((&RESPONSE, &header), (&NULL_ARG, &[])).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_answered_with_their_sequence_numbers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            serve(stream, |seq| async move { if seq == 2 { Err("boom".to_string()) } else { Ok(()) } }).await.unwrap();
        });
        let mut client = Client::connect(addr).await.unwrap();
        for want in 0..3 {
            assert_eq!(client.call().await.unwrap(), want);
        }
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(client.answer().await.unwrap());
        }
        assert_eq!(answers, [(0, None), (1, None), (2, Some("boom".to_string()))]);
    }
}
