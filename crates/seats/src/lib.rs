//! Seat metering (fakeiot, seed 000): every login a device reports names an account and a
//! user; an account's seats are its distinct users, limited by its plan.
//!
//! Past the limit nothing is lost: the login is recorded and the account is marked over
//! its limit. Each login is also published on the bus as a [`model::DeviceData`] (see
//! [`model::seats::LoginEvent::to_device_data`]), so it reaches history like any reading;
//! the 2xx answer waits until that reading is durable. Account changes are broadcast for
//! live views ([`SeatService::subscribe`]).
//!
//! All seat writes go through one writer task, in order: that makes the count exact under
//! concurrency and lets concurrent logins share a commit. What the writer has committed is
//! mirrored in memory ([`Committed`]), so a repeated login (the common case: devices report
//! the same users again and again) needs no seat transaction at all, only its history row.

mod follow;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use bus::{Bus, BusError};
use model::seats::{ENTERPRISE, LoginEvent, Plan, STARTUP};
use serde::Serialize;
use store::StoreError;
use store::prelude::*;
use store::seats::{AccountRecord, LoginOutcome, LoginRow};
use tokio::sync::{broadcast, mpsc, oneshot};

/// The one error type of the seats room.
#[derive(Debug, thiserror::Error)]
pub enum SeatError {
    #[error("no such account")]
    NoSuchAccount,
    #[error("this tenant already has the maximum of {0} accounts")]
    TooManyAccounts(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the login could not be stored: {0}")]
    Bus(#[from] BusError),
    #[error("the seat writer failed: {0}")]
    Write(String),
    #[error("the seat writer has stopped")]
    WriterGone,
}

/// An account as the API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountView {
    pub account_id: String,
    /// The plan's display name, e.g. "Startup Plan".
    pub plan: String,
    pub limit: i64,
    pub users: i64,
    pub over_limit: bool,
}

impl AccountView {
    fn from_record(r: &AccountRecord) -> Self {
        let plan = Plan::by_key(&r.plan);
        Self {
            account_id: r.account_id.clone(),
            plan: plan.name.into(),
            limit: plan.limit,
            users: r.users,
            over_limit: r.users > plan.limit,
        }
    }

    /// At or past the limit: the dashboard shows the alert and the upgrade button.
    pub fn at_limit(&self) -> bool {
        self.users >= self.limit
    }
}

/// A change to one account, for live views.
#[derive(Debug, Clone)]
pub struct AccountUpdate {
    pub tenant: String,
    pub account: AccountView,
}

/// Work for the seat writer.
enum Job {
    Login { row: LoginRow, reply: oneshot::Sender<Result<LoginOutcome, String>> },
    Upgrade { tenant: String, account_id: String, reply: oneshot::Sender<Result<Option<AccountRecord>, String>> },
}

/// The seat state the writer has committed, by tenant then account. An account's `users`
/// set holds only users whose seat row is committed (not necessarily all of them: it starts
/// empty after a restart), so finding a user there proves the login is not a new seat;
/// not finding it sends the login to the writer, which asks the database.
///
/// Memory: one entry per account (bounded by the per-tenant account limit) and at most
/// [`MIRRORED_USERS_PER_ACCOUNT`] user ids per account; users beyond that are simply not
/// mirrored, and their logins take the writer's path.
#[derive(Default)]
struct Committed {
    tenants: HashMap<String, HashMap<String, CommittedAccount>>,
}

/// Most users mirrored per account: ten times the largest plan, so any account within
/// reach of its limit is fully mirrored, while a token inventing user ids cannot grow the
/// mirror without bound.
const MIRRORED_USERS_PER_ACCOUNT: usize = if cfg!(test) { 100 } else { 10_000 };

struct CommittedAccount {
    record: AccountRecord,
    users: HashSet<String>,
}

impl Committed {
    /// The account, if `user_id` is a committed seat of it.
    fn repeated_login(&self, tenant: &str, account_id: &str, user_id: &str) -> Option<AccountRecord> {
        let account = self.tenants.get(tenant)?.get(account_id)?;
        account.users.contains(user_id).then(|| account.record.clone())
    }

    /// After a commit: `record` is the account's newest state, `user_id` one of its seats.
    fn committed(&mut self, record: &AccountRecord, user_id: Option<&str>) {
        let accounts = self.tenants.entry(record.tenant.clone()).or_default();
        let account = accounts
            .entry(record.account_id.clone())
            .or_insert_with(|| CommittedAccount { record: record.clone(), users: HashSet::new() });
        account.record = record.clone();
        if let Some(user_id) = user_id
            && account.users.len() < MIRRORED_USERS_PER_ACCOUNT
            && !account.users.contains(user_id)
        {
            account.users.insert(user_id.to_string());
        }
    }
}

/// Most logins one seat transaction takes.
const MAX_BATCH: usize = 1024;

/// Accounts, plans and seat counting.
pub struct SeatService {
    store: SharedStore,
    bus: Arc<dyn Bus>,
    max_accounts: i64,
    updates: broadcast::Sender<AccountUpdate>,
    writer: mpsc::Sender<Job>,
    committed: Arc<Mutex<Committed>>,
    /// Set on a node of a cluster ([`Self::follow`]): where account changes are told.
    cluster: OnceLock<follow::Cluster>,
}

impl SeatService {
    /// `max_accounts`: most accounts one tenant may have (new accounts beyond are refused).
    /// Starts the seat writer task: call from a tokio runtime.
    pub fn new(store: SharedStore, bus: Arc<dyn Bus>, max_accounts: i64) -> Self {
        let (writer, jobs) = mpsc::channel(MAX_BATCH * 4);
        let committed = Arc::new(Mutex::new(Committed::default()));
        tokio::spawn(run_writer(store.clone(), jobs, max_accounts, committed.clone()));
        let updates = broadcast::channel(1024).0;
        Self { store, bus, max_accounts, updates, writer, committed, cluster: OnceLock::new() }
    }

    /// Records a login; resolves once it is stored and its reading is durable.
    pub async fn record_login(&self, tenant: &str, event: &LoginEvent) -> Result<AccountView, SeatError> {
        let repeated =
            self.committed.lock().expect("seat cache").repeated_login(tenant, &event.account_id, &event.user_id);
        if let Some(account) = repeated {
            self.bus.publish_data(event.to_device_data(tenant, false)).await?;
            metrics::counter!("ingot_seat_logins_total").increment(1);
            return Ok(AccountView::from_record(&account));
        }
        let row = LoginRow {
            tenant: tenant.to_string(),
            account_id: event.account_id.clone(),
            user_id: event.user_id.clone(),
        };
        let (reply, outcome) = oneshot::channel();
        self.writer.send(Job::Login { row, reply }).await.map_err(|_| SeatError::WriterGone)?;
        let outcome = outcome.await.map_err(|_| SeatError::WriterGone)?.map_err(SeatError::Write)?;
        let LoginOutcome::Recorded { account, new_user, new_account } = outcome else {
            metrics::counter!("ingot_seat_logins_refused_total", "reason" => "too_many_accounts").increment(1);
            return Err(SeatError::TooManyAccounts(self.max_accounts));
        };
        if new_account {
            tracing::info!(tenant, account = %event.account_id, "new account on the Startup plan");
        }
        self.bus.publish_data(event.to_device_data(tenant, new_user)).await?;
        metrics::counter!("ingot_seat_logins_total").increment(1);
        let view = AccountView::from_record(&account);
        if new_user {
            let _ = self.updates.send(AccountUpdate { tenant: tenant.to_string(), account: view.clone() });
            self.tell_nodes(tenant, &event.account_id).await;
        }
        Ok(view)
    }

    pub async fn accounts(&self, tenant: &str) -> Result<Vec<AccountView>, SeatError> {
        Ok(self.store.accounts(tenant).await?.iter().map(AccountView::from_record).collect())
    }

    pub async fn account(&self, tenant: &str, account_id: &str) -> Result<AccountView, SeatError> {
        let r = self.store.account(tenant, account_id).await?.ok_or(SeatError::NoSuchAccount)?;
        Ok(AccountView::from_record(&r))
    }

    /// Moves an account to the Enterprise plan; every user is kept.
    pub async fn upgrade(&self, tenant: &str, account_id: &str) -> Result<AccountView, SeatError> {
        let (reply, outcome) = oneshot::channel();
        let job = Job::Upgrade { tenant: tenant.to_string(), account_id: account_id.to_string(), reply };
        self.writer.send(job).await.map_err(|_| SeatError::WriterGone)?;
        let r = outcome
            .await
            .map_err(|_| SeatError::WriterGone)?
            .map_err(SeatError::Write)?
            .ok_or(SeatError::NoSuchAccount)?;
        let view = AccountView::from_record(&r);
        let _ = self.updates.send(AccountUpdate { tenant: tenant.to_string(), account: view.clone() });
        self.tell_nodes(tenant, account_id).await;
        Ok(view)
    }

    /// Account changes of every tenant (filter by tenant!).
    pub fn subscribe(&self) -> broadcast::Receiver<AccountUpdate> {
        self.updates.subscribe()
    }
}

/// The seat writer: takes every queued job (up to [`MAX_BATCH`]); consecutive logins share
/// one transaction, so concurrent logins share a commit (and its fsync) instead of queueing
/// for one each. Every commit is mirrored into `committed` before anyone is answered.
async fn run_writer(
    store: SharedStore,
    mut jobs: mpsc::Receiver<Job>,
    max_accounts: i64,
    committed: Arc<Mutex<Committed>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut logins = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        for job in batch.drain(..) {
            match job {
                Job::Login { row, reply } => logins.push((row, reply)),
                Job::Upgrade { tenant, account_id, reply } => {
                    write_logins(&store, &mut logins, max_accounts, &committed).await;
                    let result = store.set_plan(&tenant, &account_id, ENTERPRISE.key).await.map_err(|e| e.to_string());
                    if let Ok(Some(record)) = &result {
                        committed.lock().expect("seat cache").committed(record, None);
                    }
                    let _ = reply.send(result);
                }
            }
        }
        write_logins(&store, &mut logins, max_accounts, &committed).await;
    }
}

/// Commits `logins` in one transaction and answers each.
async fn write_logins(
    store: &SharedStore,
    logins: &mut Vec<(LoginRow, oneshot::Sender<Result<LoginOutcome, String>>)>,
    max_accounts: i64,
    committed: &Mutex<Committed>,
) {
    if logins.is_empty() {
        return;
    }
    let rows = logins.iter().map(|(row, _)| row.clone()).collect();
    match store.record_logins(rows, STARTUP.key, max_accounts).await {
        Ok(outcomes) => {
            let mut committed = committed.lock().expect("seat cache");
            for ((row, _), outcome) in logins.iter().zip(&outcomes) {
                if let LoginOutcome::Recorded { account, .. } = outcome {
                    committed.committed(account, Some(&row.user_id));
                }
            }
            drop(committed);
            for ((_, reply), outcome) in logins.drain(..).zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, logins = logins.len(), "seat batch failed");
            for (_, reply) in logins.drain(..) {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::{MemoryBus, Mode};

    fn login(account: &str, user: &str) -> LoginEvent {
        let body = serde_json::json!({"account_id": account, "user_id": user, "timestamp": "2024-01-31T12:00:00Z"});
        LoginEvent::parse(body.to_string().as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn distinct_users_limits_upgrade_and_isolation() {
        for engine in store::testing::engines().await {
            let store = engine.store.clone();
            let bus = Arc::new(MemoryBus::new(4096));
            let mut history = bus.subscribe_data("history", Mode::Durable);
            tokio::spawn(async move {
                while let Some(d) = history.recv().await {
                    d.ack();
                }
            });
            let seats = Arc::new(SeatService::new(store, bus, 3));
            // 120 distinct users, each twice, concurrently.
            let mut tasks = Vec::new();
            for _round in 0..2 {
                for u in 0..120 {
                    let seats = seats.clone();
                    tasks.push(tokio::spawn(async move {
                        seats.record_login("t", &login("acme", &format!("user-{u}"))).await
                    }));
                }
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            let a = seats.account("t", "acme").await.unwrap();
            assert_eq!((a.users, a.limit, a.over_limit, a.plan.as_str()), (120, 100, true, "Startup Plan"));
            let up = seats.upgrade("t", "acme").await.unwrap();
            assert_eq!((up.users, up.limit, up.over_limit, up.plan.as_str()), (120, 1000, false, "Enterprise Plan"));
            // 100 of the 120 users are mirrored (the cap in tests); a login of one of them is
            // answered from the mirror and must show the upgrade, one of the others from the database.
            let mirrored: Vec<String> = (0..120)
                .map(|u| format!("user-{u}"))
                .filter(|u| seats.committed.lock().unwrap().repeated_login("t", "acme", u).is_some())
                .collect();
            assert_eq!(mirrored.len(), MIRRORED_USERS_PER_ACCOUNT);
            let unmirrored = (0..120).map(|u| format!("user-{u}")).find(|u| !mirrored.contains(u)).unwrap();
            for user in [&mirrored[0], &unmirrored] {
                let again = seats.record_login("t", &login("acme", user)).await.unwrap();
                assert_eq!((again.users, again.plan.as_str()), (120, "Enterprise Plan"));
            }
            assert!(matches!(seats.account("other", "acme").await, Err(SeatError::NoSuchAccount)));
            assert!(seats.accounts("other").await.unwrap().is_empty());
            seats.record_login("t", &login("b", "u")).await.unwrap();
            seats.record_login("t", &login("c", "u")).await.unwrap();
            assert!(matches!(seats.record_login("t", &login("d", "u")).await, Err(SeatError::TooManyAccounts(3))));
            let grown = seats.record_login("t", &login("acme", "new")).await.unwrap();
            assert_eq!(grown.users, 121);
        }
    }

    /// After a restart the in-memory state is empty; the database still knows every seat.
    #[tokio::test]
    async fn repeated_users_after_restart_are_not_new_seats() {
        for engine in store::testing::engines().await {
            let bus = || {
                let bus = Arc::new(MemoryBus::new(64));
                let mut history = bus.subscribe_data("history", Mode::Durable);
                tokio::spawn(async move {
                    while let Some(d) = history.recv().await {
                        d.ack();
                    }
                });
                bus
            };
            let seats = SeatService::new(engine.store.clone(), bus(), 10);
            for u in ["a", "b", "a"] {
                seats.record_login("t", &login("acme", u)).await.unwrap();
            }
            drop(seats);
            let seats = SeatService::new(engine.reopen().await, bus(), 10);
            for u in ["a", "b", "c", "a", "c"] {
                seats.record_login("t", &login("acme", u)).await.unwrap();
            }
            assert_eq!(seats.account("t", "acme").await.unwrap().users, 3);
        }
    }
}
