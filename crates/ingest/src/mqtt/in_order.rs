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
//! The cost: a connection's QoS 1 publishes are stored one after another (each waits for
//! durability before the next starts). Throughput comes from many connections, whose
//! readings the bus batches together (group commit).

use std::cell::Cell;
use std::future::poll_fn;
use std::task::Poll;

use ntex_service::{Middleware, Service, ServiceCtx};
use ntex_util::task::LocalWaker;

/// The middleware; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InOrder;

impl<S, C> Middleware<S, C> for InOrder {
    type Service = InOrderService<S>;

    fn create(&self, service: S, _: C) -> Self::Service {
        InOrderService { service, busy: Cell::new(false), idle: LocalWaker::new() }
    }
}

pub(crate) struct InOrderService<S> {
    service: S,
    busy: Cell<bool>,
    idle: LocalWaker,
}

/// Marks the service idle again when a call ends, however it ends.
struct Busy<'a>(&'a Cell<bool>, &'a LocalWaker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
        self.1.wake();
    }
}

impl<S, Req> Service<Req> for InOrderService<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn ready(&self, ctx: ServiceCtx<'_, Self>) -> Result<(), Self::Error> {
        poll_fn(|cx| {
            if self.busy.get() {
                self.idle.register(cx.waker());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        ctx.ready(&self.service).await
    }

    async fn call(&self, req: Req, ctx: ServiceCtx<'_, Self>) -> Result<Self::Response, Self::Error> {
        self.busy.set(true);
        let _busy = Busy(&self.busy, &self.idle);
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

    #[test]
    fn not_ready_while_a_call_runs() {
        ntex_rt::System::new("in-order-test", ntex_net::DefaultRuntime).block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let rx = Rc::new(Cell::new(Some(rx)));
            let inner = fn_service(move |()| {
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
                async move { svc.call(()).await }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let ready = tokio::time::timeout(Duration::from_millis(20), svc.ready()).await;
            assert!(ready.is_err(), "must not be ready while the first call runs");
            tx.send(()).unwrap();
            call.await.unwrap().unwrap();
            tokio::time::timeout(Duration::from_millis(200), svc.ready()).await.unwrap().unwrap();
        });
    }
}
