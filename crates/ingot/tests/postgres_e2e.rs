//! Ingot on a PostgreSQL server that goes away and comes back (see `support::outage`).
//! The server is a private one of this test, not the suite's shared one, since this test
//! crashes it.

mod support;

use std::time::Duration;

use support::Server;
use support::outage::{Backend, assert_refused_while_down_then_recovered};

#[tokio::test]
async fn readings_are_refused_while_postgres_is_down_and_accepted_again_when_it_is_back() {
    // The suite's server (INGOT_TEST_POSTGRES_URL) says PostgreSQL is available here.
    if support::missing("INGOT_TEST_POSTGRES_URL") {
        return;
    }
    let pg = Backend::start("postgres.sh");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--store", &pg.url, "--sync-full", "true"]);
    assert_refused_while_down_then_recovered(&[&server], &pg, Duration::from_secs(3), true).await;
}
