//! What every [`Bus`] must do, tested once and run on each implementation: the
//! in-process [`MemoryBus`] always, [`NatsBus`] when a NATS server is configured
//! (`INGOT_TEST_NATS_URL`, started by scripts/test.sh). Where the two differ on purpose
//! (when a publish resolves; what becomes of an unacknowledged delivery) each module
//! tests its own.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use model::{DeviceData, DeviceEvent};
use serde_json::json;

use crate::nats::tests::bus as nats_bus;
use crate::{Bus, Delivery, MemoryBus, Mode, Subscription};

/// One bus of each implementation, each its own (a NATS bus gets a prefix of its own).
async fn buses(test: &str) -> Vec<(&'static str, Arc<dyn Bus>)> {
    let mut all: Vec<(&'static str, Arc<dyn Bus>)> = vec![("memory", Arc::new(MemoryBus::new(1024)))];
    if let Some(nats) = nats_bus(&crate::nats::tests::prefix(test)).await {
        all.push(("nats", Arc::new(nats)));
    }
    all
}

fn reading(device: &str, seq: i64) -> DeviceData {
    let serde_json::Value::Object(attrs) = json!({"seq": seq}) else { unreachable!() };
    DeviceData::new("admin", device, Utc::now(), attrs)
}

async fn next<T>(sub: &mut Subscription<T>) -> Delivery<T> {
    tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.expect("a delivery within 5 s").expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_durable_group_gets_every_reading_in_publish_order() {
    for (name, bus) in buses("groups").await {
        let mut history = bus.subscribe_data("history", Mode::Durable);
        let mut flows = bus.subscribe_data("flows", Mode::Durable);
        // Publishes on the in-process bus resolve when both groups acked: publish from a
        // task of its own while this one acks.
        let publisher = {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    bus.publish_data(reading(&format!("d{}", i % 3), i)).await.unwrap();
                }
            })
        };
        for i in 0..200 {
            for sub in [&mut history, &mut flows] {
                let d = next(sub).await;
                assert_eq!(d.msg.attrs["seq"], i, "{name}: every group, in publish order");
                d.ack();
            }
        }
        publisher.await.unwrap();
        assert!(bus.dead_groups().is_empty(), "{name}: {:?}", bus.dead_groups());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_sent_ahead_keep_their_order_and_all_become_durable() {
    for (name, bus) in buses("ahead").await {
        let mut history = bus.subscribe_data("history", Mode::Durable);
        bus.ready().await.unwrap();
        // One sender, nothing awaited in between: the way a connection pipelines.
        let mut durable = Vec::new();
        for i in 0..50 {
            durable.push(bus.send_data(reading("d", i)).await.unwrap());
        }
        for i in 0..50 {
            let d = next(&mut history).await;
            assert_eq!(d.msg.attrs["seq"], i, "{name}: in the order sent");
            d.ack();
        }
        for (i, d) in durable.into_iter().enumerate() {
            tokio::time::timeout(Duration::from_secs(5), d).await.expect("durable within 5 s").unwrap_or_else(|e| {
                panic!("{name}: reading {i} not durable: {e}");
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_durable_and_lossy_subscribers_alike() {
    for (name, bus) in buses("events").await {
        let mut relay = bus.subscribe_events("mqtt", Mode::Durable);
        let mut live = bus.subscribe_events("ws", Mode::Lossy);
        bus.ready().await.unwrap(); // a NATS subscription reaches its server
        let sent: Vec<DeviceEvent> =
            (0..5).map(|i| DeviceEvent::credentials("acme", &format!("d{i}"), Utc::now())).collect();
        let publisher = {
            let (bus, sent) = (bus.clone(), sent.clone());
            tokio::spawn(async move {
                for e in sent {
                    bus.publish_event(e).await.unwrap();
                }
            })
        };
        for e in &sent {
            let d = next(&mut relay).await;
            assert_eq!(&*d.msg, e, "{name}");
            d.ack();
            assert_eq!(&*next(&mut live).await.msg, e, "{name}: lossy, but nothing was lost here");
        }
        publisher.await.unwrap();
    }
}
