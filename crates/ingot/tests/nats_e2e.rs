//! Ingot on a NATS server that goes away and comes back (see `support::outage`): with
//! the NATS bus, a reading is acknowledged once JetStream stored it, so while NATS is down
//! none is. The server is a private one of this test, since this test crashes it.

mod support;

use std::time::Duration;

use support::Server;
use support::outage::{Backend, assert_refused_while_down_then_recovered};

#[tokio::test]
async fn readings_are_refused_while_nats_is_down_and_accepted_again_when_it_is_back() {
    // The suite's server (INGOT_TEST_NATS_URL) says nats-server is available here.
    if support::missing("INGOT_TEST_NATS_URL") {
        return;
    }
    let nats = Backend::start("nats.sh");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--bus", &nats.url, "--bus-max-bytes", &(64 << 20).to_string()]);
    // A publish waits up to JetStream's 5 s acknowledgement timeout before it fails.
    assert_refused_while_down_then_recovered(&[&server], &nats, Duration::from_secs(8), true).await;
}

/// The same with two nodes on one PostgreSQL: HTTP readings go to one, MQTT readings to
/// the other; both refuse while NATS is down and recover by themselves.
#[tokio::test]
async fn two_nodes_refuse_while_nats_restarts_and_lose_no_acknowledged_reading() {
    if support::missing("INGOT_TEST_NATS_URL") || support::missing("INGOT_TEST_POSTGRES_URL") {
        return;
    }
    let nats = Backend::start("nats.sh");
    let db = store::testing::TestDb::create().await.expect("checked above").keep();
    let max_bytes = (64 << 20).to_string();
    let args = ["--store", &db, "--bus", &nats.url, "--bus-max-bytes", &max_bytes, "--bus-ack-wait-secs", "2"];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (Server::start(dir_a.path(), &args), Server::start(dir_b.path(), &args));
    assert_refused_while_down_then_recovered(&[&a, &b], &nats, Duration::from_secs(8), true).await;
}
