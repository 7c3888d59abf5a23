//! Connection workers: one thread per core, each with its own single-threaded tokio
//! runtime, and every connection pinned to one of them (as HAProxy's threads do).
//!
//! With the relay's two directions in one task, a connection's work never needs another
//! thread; a work-stealing runtime would still wake idle threads to look for work, and
//! those futex wake-ups and context switches cost more CPU than the relay itself on a
//! small machine (measured: about half the context switches, see BENCHMARKS.md). The
//! accepting runtime hands each new socket over through a channel, round robin.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::warn;

pub struct Workers {
    senders: Vec<mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` worker threads; `serve` is run (spawned) for every connection handed
    /// over. The threads end when the `Workers` is dropped, dropping their connections.
    pub fn start<F, Fut>(count: usize, serve: F) -> io::Result<Workers>
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut senders = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let (sender, mut receiver) = mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let serve = serve.clone();
            std::thread::Builder::new().name(format!("proxy-worker-{index}")).spawn(move || {
                runtime.block_on(async move {
                    while let Some((socket, peer)) = receiver.recv().await {
                        // Registers the socket with this thread's reactor.
                        match TcpStream::from_std(socket) {
                            Ok(stream) => {
                                tokio::spawn(serve(stream, peer));
                            }
                            Err(e) => warn!(%peer, error = %e, "cannot adopt connection"),
                        }
                    }
                });
            })?;
            senders.push(sender);
        }
        Ok(Workers { senders, next: AtomicUsize::new(0) })
    }

    /// Hands a freshly accepted connection to the next worker.
    pub fn dispatch(&self, stream: TcpStream, peer: SocketAddr) {
        // Deregisters the socket from the accepting runtime; it stays non-blocking.
        let socket = match stream.into_std() {
            Ok(socket) => socket,
            Err(e) => return warn!(%peer, error = %e, "cannot hand over connection"),
        };
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if self.senders[index].send((socket, peer)).is_err() {
            warn!(%peer, "connection worker is gone; closing connection");
        }
    }
}
