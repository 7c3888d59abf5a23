//! Foo load generator and Foo server for the proxy benchmark (`bench/proxy.sh`).
//!
//! ```text
//! foo_bench server --listen 127.0.0.1:18001
//! foo_bench load   --target 127.0.0.1:18002 --conns 64 --depth 16 --seconds 10 [--rate 50000]
//! foo_bench idle   --target 127.0.0.1:18002 --conns 9900 --seconds 10
//! ```
//!
//! `load` without `--rate` is closed loop: every connection keeps `--depth` requests in
//! flight (pipelined) and sends a new one per reply, which measures the maximum rate.
//! With `--rate` it is open loop: requests leave on a fixed schedule spread over the
//! connections, which measures latency at a given load. The round trip of every request is
//! recorded (send to reply, replies come in order); the result is one JSON line on stdout.
//! `idle` opens connections, makes one round trip on each, holds them, and prints `ready`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// A Foo server answering every `REQ n` with `ACK n`.
    Server {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Load generator.
    Load {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 64)]
        conns: usize,
        /// Requests in flight per connection (closed loop only).
        #[arg(long, default_value_t = 16)]
        depth: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Total requests per second (open loop); closed loop when absent.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Many idle connections.
    Idle {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        conns: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Mode::Server { listen } => server(listen).await,
            Mode::Load { target, conns, depth, seconds, rate } => load(target, conns, depth, seconds, rate).await,
            Mode::Idle { target, conns, seconds } => idle(target, conns, seconds).await,
        }
    })
}

async fn server(listen: SocketAddr) -> std::io::Result<()> {
    // SO_REUSEADDR: the previous run's connections may still be in TIME_WAIT.
    let socket = if listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    let listener = socket.listen(4096)?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = Vec::new();
            let mut out = Vec::with_capacity(64 * 1024);
            loop {
                let n = match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Some(pos) = memchr::memchr(b'\n', &pending[start..]) {
                    let line = &pending[start..start + pos];
                    match line.strip_prefix(b"REQ ") {
                        Some(rest) => {
                            let seq_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                            out.extend_from_slice(b"ACK ");
                            out.extend_from_slice(&rest[..seq_len]);
                            out.push(b'\n');
                        }
                        None => out.extend_from_slice(b"NAK 0 ERRDECODE\n"),
                    }
                    start += pos + 1;
                }
                pending.drain(..start);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
        });
    }
}

struct ConnResult {
    rtts_ns: Vec<u64>,
}

async fn load(target: SocketAddr, conns: usize, depth: usize, seconds: u64, rate: Option<f64>) -> std::io::Result<()> {
    let duration = Duration::from_secs(seconds);
    if rate.is_some_and(|r| !(r.is_finite() && r >= 1.0)) || conns == 0 || depth == 0 {
        return Err(std::io::Error::other("--rate must be at least 1, --conns and --depth at least 1"));
    }
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_millis(200);
    for i in 0..conns {
        let stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        let per_conn_rate = rate.map(|r| r / conns as f64);
        // Spread the open-loop schedules so connections do not all send at the same instant.
        let offset = Duration::from_secs_f64(per_conn_rate.map_or(0.0, |r| i as f64 / conns as f64 / r));
        tasks.push(tokio::spawn(async move {
            match per_conn_rate {
                None => closed_loop(stream, depth, start, duration).await,
                Some(r) => open_loop(stream, r, start + offset, duration).await,
            }
        }));
    }
    let cpu_before = own_cpu_seconds();
    let mut rtts = Vec::new();
    for task in tasks {
        let result = task.await.map_err(std::io::Error::other)??;
        rtts.extend(result.rtts_ns);
    }
    let cpu = own_cpu_seconds() - cpu_before;
    rtts.sort_unstable();
    let pct = |p: f64| rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1))).copied();
    let us = |v: Option<u64>| v.map_or(f64::NAN, |ns| ns as f64 / 1000.0);
    println!(
        "{{\"messages\":{},\"msgs_per_s\":{:.0},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"loadgen_cpu_s\":{:.2}}}",
        rtts.len(),
        rtts.len() as f64 / duration.as_secs_f64(),
        us(pct(0.50)),
        us(pct(0.99)),
        us(pct(0.999)),
        cpu
    );
    Ok(())
}

/// Keeps `depth` requests in flight; stops sending at `start + duration` and counts only
/// the replies to requests sent inside the measured interval.
async fn closed_loop(
    stream: TcpStream,
    depth: usize,
    start: Instant,
    duration: Duration,
) -> std::io::Result<ConnResult> {
    tokio::time::sleep_until(start.into()).await;
    let end = start + duration;
    let (mut read, mut write) = stream.into_split();
    let mut in_flight = VecDeque::with_capacity(depth);
    let mut rtts_ns = Vec::new();
    let mut seq = 0u64;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial = 0usize;
    let now = Instant::now();
    for _ in 0..depth {
        seq += 1;
        out.extend_from_slice(format!("REQ {seq} bench\n").as_bytes());
        in_flight.push_back(now);
    }
    write.write_all(&out).await?;
    while !in_flight.is_empty() {
        let n = read.read(&mut buf[partial..]).await?;
        if n == 0 {
            return Err(std::io::Error::other("server closed"));
        }
        let now = Instant::now();
        let data = &buf[..partial + n];
        let lines = memchr::memchr_iter(b'\n', data).count();
        let consumed = memchr::memrchr(b'\n', data).map_or(0, |p| p + 1);
        buf.copy_within(consumed..partial + n, 0);
        partial = partial + n - consumed;
        out.clear();
        for _ in 0..lines {
            if let Some(sent) = in_flight.pop_front() {
                rtts_ns.push((now - sent).as_nanos() as u64);
            }
            if now < end {
                seq += 1;
                out.extend_from_slice(format!("REQ {seq} bench\n").as_bytes());
                in_flight.push_back(now);
            }
        }
        if !out.is_empty() {
            write.write_all(&out).await?;
        }
    }
    Ok(ConnResult { rtts_ns })
}

/// Sends at `rate` requests/s on a fixed schedule: every millisecond tick the requests that
/// are due leave in one write (as a pipelining client would); replies are read concurrently.
/// The round trip is measured from the actual write.
async fn open_loop(stream: TcpStream, rate: f64, start: Instant, duration: Duration) -> std::io::Result<ConnResult> {
    let (mut read, mut write) = stream.into_split();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, u64)>();
    let total = (rate * duration.as_secs_f64()) as u64;
    let reader = tokio::spawn(async move {
        let mut rtts_ns = Vec::with_capacity(total as usize);
        let mut buf = vec![0u8; 64 * 1024];
        let (mut batch_sent, mut batch_left) = (Instant::now(), 0u64);
        let mut received = 0u64;
        while received < total {
            let n = read.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("server closed"));
            }
            let now = Instant::now();
            for _ in memchr::memchr_iter(b'\n', &buf[..n]) {
                while batch_left == 0 {
                    (batch_sent, batch_left) =
                        sent_rx.recv().await.ok_or_else(|| std::io::Error::other("sender gone"))?;
                }
                rtts_ns.push((now - batch_sent).as_nanos() as u64);
                batch_left -= 1;
                received += 1;
            }
        }
        Ok(rtts_ns)
    });
    tokio::time::sleep_until(start.into()).await;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    let mut out = Vec::new();
    while sent < total {
        ticks.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        if due <= sent {
            continue;
        }
        out.clear();
        for seq in sent..due {
            out.extend_from_slice(format!("REQ {seq} bench\n").as_bytes());
        }
        let _ = sent_tx.send((Instant::now(), due - sent));
        write.write_all(&out).await?;
        sent = due;
    }
    let rtts_ns = reader.await.map_err(std::io::Error::other)??;
    Ok(ConnResult { rtts_ns })
}

async fn idle(target: SocketAddr, conns: usize, seconds: u64) -> std::io::Result<()> {
    let mut streams = Vec::with_capacity(conns);
    let started = Instant::now();
    // Connect in waves so that the listen backlog never overflows.
    for wave in (0..conns).collect::<Vec<_>>().chunks(100) {
        let mut pending = Vec::new();
        for _ in wave {
            pending.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(target).await?;
                stream.write_all(b"REQ 1 hello\n").await?;
                let mut buf = [0u8; 64];
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::other("closed"));
                }
                Ok::<_, std::io::Error>(stream)
            }));
        }
        for task in pending {
            streams.push(task.await.map_err(std::io::Error::other)??);
        }
    }
    println!("ready {} connections in {:.1} s", streams.len(), started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok(())
}

/// This process's user + system CPU seconds (Linux).
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some(close) = stat.rfind(')') else { return 0.0 };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}
