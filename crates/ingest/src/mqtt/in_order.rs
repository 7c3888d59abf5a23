//! One packet at a time per connection, so readings reach the bus in the order sent.
//!
//! ntex-mqtt's dispatcher runs the handler of the first pending packet inline and spawns
//! the handlers of packets decoded while it is still busy. A spawned handler is first
//! polled by the executor later, possibly after a handler created after it, so two
//! pipelined PUBLISHes could reach the bus out of order. This middleware replaces
//! ntex-mqtt's in-flight limiter: it reports "not ready" while a packet is being handled,
//! so the dispatcher decodes the next packet only once the previous one is done, and
//! every handler runs inline, in arrival order.
//!
//! One exception: a PUBLISH whose payload had not fully arrived when its header was
//! decoded. The codec hands over the header first and the rest of the payload later, as
//! a payload chunk the dispatcher must decode, while the handler waits for it. So while
//! the running handler awaits its payload the middleware is ready: chunks pass through
//! at once, and a packet decoded after the last chunk (before the handler finished)
//! waits its turn in a first-come queue, which also holds `ready` back until it is empty.
//! Without this, such a PUBLISH never completed and its connection hung, ignoring
//! keep-alive and end of stream (found by `fuzz/mqtt_server`, see FUZZING.md).
//!
//! The cost: a connection's QoS 1 publishes are stored one after another (each waits for
//! durability before the next starts). Throughput comes from many connections, whose
//! readings the bus batches together (group commit).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

use ntex_mqtt::{v3, v5};
use ntex_service::{Middleware, Service, ServiceCtx};
use ntex_util::task::LocalWaker;

/// What the middleware needs to know about a decoded item.
pub(crate) trait Item {
    /// A piece of the payload of the PUBLISH being handled.
    fn is_payload_chunk(&self) -> bool;
    /// The last piece of that payload.
    fn ends_payload(&self) -> bool;
    /// A PUBLISH whose payload is still to come as chunks.
    fn awaits_payload(&self) -> bool;
}

/// v3 and v5 decode into types of the same shape; one implementation serves both.
macro_rules! impl_item {
    ($decoded:ty) => {
        impl Item for $decoded {
            fn is_payload_chunk(&self) -> bool {
                matches!(self, Self::PayloadChunk(..))
            }
            fn ends_payload(&self) -> bool {
                matches!(self, Self::PayloadChunk(_, true))
            }
            fn awaits_payload(&self) -> bool {
                matches!(self, Self::Publish(p, first, _) if first.len() < p.payload_size as usize)
            }
        }
    };
}

impl_item!(v3::codec::Decoded);
impl_item!(v5::codec::Decoded);

/// The middleware; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InOrder;

impl<S, C> Middleware<S, C> for InOrder {
    type Service = InOrderService<S>;

    fn create(&self, service: S, _: C) -> Self::Service {
        InOrderService {
            service,
            busy: Cell::new(false),
            awaiting_payload: Cell::new(false),
            queue: RefCell::new(VecDeque::new()),
            next_id: Cell::new(0),
            ready: LocalWaker::new(),
        }
    }
}

pub(crate) struct InOrderService<S> {
    service: S,
    /// A packet's handler is running.
    busy: Cell<bool>,
    /// That handler is a PUBLISH's, waiting for payload chunks.
    awaiting_payload: Cell<bool>,
    /// Packets that arrived while busy, first come first served.
    queue: RefCell<VecDeque<(u64, Option<Waker>)>>,
    next_id: Cell<u64>,
    /// The dispatcher waiting in `ready`.
    ready: LocalWaker,
}

impl<S> InOrderService<S> {
    fn is_ready(&self) -> bool {
        if self.busy.get() { self.awaiting_payload.get() } else { self.queue.borrow().is_empty() }
    }

    /// Something changed: the first queued packet and the dispatcher may go on.
    fn wake(&self) {
        if let Some((_, Some(waker))) = self.queue.borrow().front() {
            waker.wake_by_ref();
        }
        self.ready.wake();
    }

    /// Waits until no handler runs and every packet queued before this one has started.
    async fn turn(&self) {
        if !self.busy.get() && self.queue.borrow().is_empty() {
            return;
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.queue.borrow_mut().push_back((id, None));
        let mut queued = Queued(self, id);
        poll_fn(|cx| {
            let mut queue = self.queue.borrow_mut();
            let first = queue.front_mut().expect("a queued packet is in the queue");
            if first.0 == id && !self.busy.get() {
                queue.pop_front();
                Poll::Ready(())
            } else {
                if let Some(entry) = queue.iter_mut().find(|(i, _)| *i == id) {
                    entry.1 = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await;
        queued.1 = u64::MAX; // left the queue by its turn
    }
}

/// Takes a packet whose handler is dropped before its turn out of the queue.
struct Queued<'a, S>(&'a InOrderService<S>, u64);

impl<S> Drop for Queued<'_, S> {
    fn drop(&mut self) {
        if self.1 != u64::MAX {
            self.0.queue.borrow_mut().retain(|(i, _)| *i != self.1);
            self.0.wake();
        }
    }
}

/// Marks the service idle again when a call ends, however it ends.
struct Busy<'a, S>(&'a InOrderService<S>);

impl<S> Drop for Busy<'_, S> {
    fn drop(&mut self) {
        self.0.busy.set(false);
        self.0.awaiting_payload.set(false);
        self.0.wake();
    }
}

impl<S, Req> Service<Req> for InOrderService<S>
where
    S: Service<Req>,
    Req: Item,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn ready(&self, ctx: ServiceCtx<'_, Self>) -> Result<(), Self::Error> {
        poll_fn(|cx| {
            if self.is_ready() {
                Poll::Ready(())
            } else {
                self.ready.register(cx.waker());
                Poll::Pending
            }
        })
        .await;
        ctx.ready(&self.service).await
    }

    async fn call(&self, req: Req, ctx: ServiceCtx<'_, Self>) -> Result<Self::Response, Self::Error> {
        if req.is_payload_chunk() {
            // Feeds the running PUBLISH handler; no turn of its own.
            if req.ends_payload() {
                self.awaiting_payload.set(false);
            }
            return ctx.call(&self.service, req).await;
        }
        self.turn().await;
        self.busy.set(true);
        self.awaiting_payload.set(req.awaits_payload());
        let _busy = Busy(self);
        ctx.call(&self.service, req).await
    }

    ntex_service::forward_shutdown!(service);
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::time::Duration;

    use ntex_service::{Pipeline, fn_service};

    use super::*;

    /// A packet (`Packet(true)`: a PUBLISH awaiting its payload) or a payload chunk.
    #[derive(Debug, Clone, Copy)]
    enum Test {
        Packet(bool),
        Chunk { last: bool },
    }

    impl Item for Test {
        fn is_payload_chunk(&self) -> bool {
            matches!(self, Self::Chunk { .. })
        }
        fn ends_payload(&self) -> bool {
            matches!(self, Self::Chunk { last: true })
        }
        fn awaits_payload(&self) -> bool {
            matches!(self, Self::Packet(true))
        }
    }

    fn run<F: Future<Output = ()> + 'static>(test: F) {
        ntex_rt::System::new("in-order-test", ntex_net::DefaultRuntime).block_on(test);
    }

    async fn is_ready<S: Service<Test>>(svc: &Pipeline<S>) -> bool {
        tokio::time::timeout(Duration::from_millis(20), svc.ready()).await.is_ok()
    }

    #[test]
    fn not_ready_while_a_call_runs() {
        run(async {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let rx = Rc::new(Cell::new(Some(rx)));
            let inner = fn_service(move |_: Test| {
                let rx = rx.take();
                async move {
                    if let Some(rx) = rx {
                        let _ = rx.await;
                    }
                    Ok::<_, ()>(())
                }
            });
            let svc = Pipeline::new(InOrder.create(inner, ()));
            let call = ntex_rt::spawn({
                let svc = svc.clone();
                async move { svc.call(Test::Packet(false)).await }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!is_ready(&svc).await, "must not be ready while the first call runs");
            tx.send(()).unwrap();
            call.await.unwrap().unwrap();
            tokio::time::timeout(Duration::from_millis(200), svc.ready()).await.unwrap().unwrap();
        });
    }

    /// Regression (fuzz/mqtt_server): the handler of a PUBLISH awaiting its payload must
    /// get its chunks, and packets decoded meanwhile must still run in arrival order.
    #[test]
    fn chunks_reach_a_waiting_publish_and_later_packets_keep_their_order() {
        run(async {
            let (chunk_tx, chunk_rx) = tokio::sync::oneshot::channel::<()>();
            let chunk_tx = Rc::new(Cell::new(Some(chunk_tx)));
            let chunk_rx = Rc::new(Cell::new(Some(chunk_rx)));
            let order = Rc::new(RefCell::new(Vec::new()));
            let inner = fn_service({
                let order = order.clone();
                move |req: Test| {
                    let (order, chunk_tx, chunk_rx) = (order.clone(), chunk_tx.clone(), chunk_rx.clone());
                    async move {
                        match req {
                            Test::Packet(true) => {
                                // The publish handler: waits for its payload.
                                chunk_rx.take().unwrap().await.unwrap();
                                tokio::time::sleep(Duration::from_millis(30)).await;
                                order.borrow_mut().push("publish");
                            }
                            Test::Chunk { .. } => chunk_tx.take().unwrap().send(()).unwrap(),
                            Test::Packet(false) => order.borrow_mut().push("next"),
                        }
                        Ok::<_, ()>(())
                    }
                }
            });
            let svc = Pipeline::new(InOrder.create(inner, ()));
            // As ntex-mqtt's dispatcher does: readiness checked before decoding, not per call.
            let spawn = |req| {
                let svc = svc.clone();
                ntex_rt::spawn(async move { svc.call_nowait(req).await })
            };
            let publish = spawn(Test::Packet(true));
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(is_ready(&svc).await, "ready for the payload chunk");
            let chunk = spawn(Test::Chunk { last: true });
            let next = spawn(Test::Packet(false));
            tokio::time::timeout(Duration::from_secs(1), publish)
                .await
                .expect("the publish completes")
                .unwrap()
                .unwrap();
            chunk.await.unwrap().unwrap();
            next.await.unwrap().unwrap();
            assert_eq!(*order.borrow(), ["publish", "next"]);
        });
    }
}
