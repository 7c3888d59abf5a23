//! Seat metering: accounts and the distinct users that logged in to them.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::{SqliteStore, StoreError, now_ms};

/// An account's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub tenant: String,
    pub account_id: String,
    pub plan: String,
    /// Distinct users seen.
    pub users: i64,
    pub created_ms: i64,
}

const COLUMNS: &str = "tenant, account_id, plan, users, created_ms";

fn from_row(r: &Row<'_>) -> rusqlite::Result<AccountRecord> {
    Ok(AccountRecord {
        tenant: r.get(0)?,
        account_id: r.get(1)?,
        plan: r.get(2)?,
        users: r.get(3)?,
        created_ms: r.get(4)?,
    })
}

/// What recording a login did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Recorded; `new_user` when this (account, user) was not seen before.
    Recorded { account: AccountRecord, new_user: bool, new_account: bool },
    /// The account is new and the tenant already has `max_accounts`.
    TooManyAccounts,
}

/// One login to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRow {
    pub tenant: String,
    pub account_id: String,
    pub user_id: String,
}

fn record_login_tx(
    tx: &Transaction<'_>,
    l: &LoginRow,
    plan: &str,
    max_accounts: i64,
) -> Result<LoginOutcome, StoreError> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM seat_accounts WHERE tenant = ?1 AND account_id = ?2")?
        .query_row(params![l.tenant, l.account_id], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        let count: i64 = tx
            .prepare_cached("SELECT count(*) FROM seat_accounts WHERE tenant = ?1")?
            .query_row([&l.tenant], |r| r.get(0))?;
        if count >= max_accounts {
            return Ok(LoginOutcome::TooManyAccounts);
        }
        tx.prepare_cached(
            "INSERT INTO seat_accounts (tenant, account_id, plan, users, created_ms) VALUES (?1, ?2, ?3, 0, ?4)",
        )?
        .execute(params![l.tenant, l.account_id, plan, now_ms()])?;
    }
    let new_user = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO seat_users (tenant, account_id, user_id, first_seen_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![l.tenant, l.account_id, l.user_id, now_ms()])?
        == 1;
    if new_user {
        tx.prepare_cached("UPDATE seat_accounts SET users = users + 1 WHERE tenant = ?1 AND account_id = ?2")?
            .execute(params![l.tenant, l.account_id])?;
    }
    let account = tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM seat_accounts WHERE tenant = ?1 AND account_id = ?2"))?
        .query_row(params![l.tenant, l.account_id], from_row)?;
    Ok(LoginOutcome::Recorded { account, new_user, new_account: !exists })
}

/// Seat metering: accounts, plans, distinct users.
#[async_trait::async_trait]
pub trait SeatStore: Send + Sync {
    /// Records a batch of logins in one transaction (group commit), in order. Each login
    /// creates its account on `default_plan` if needed, unless the tenant already has
    /// `max_accounts`. Exact under concurrency: all writes go through one transaction at a time.
    async fn record_logins(
        &self,
        logins: Vec<LoginRow>,
        default_plan: &str,
        max_accounts: i64,
    ) -> Result<Vec<LoginOutcome>, StoreError>;

    /// One account of a tenant.
    async fn account(&self, tenant: &str, account_id: &str) -> Result<Option<AccountRecord>, StoreError>;

    /// A tenant's accounts.
    async fn accounts(&self, tenant: &str) -> Result<Vec<AccountRecord>, StoreError>;

    /// Changes an account's plan; `None` if there is no such account.
    async fn set_plan(&self, tenant: &str, account_id: &str, plan: &str) -> Result<Option<AccountRecord>, StoreError>;
}

#[async_trait::async_trait]
impl SeatStore for SqliteStore {
    async fn record_logins(
        &self,
        logins: Vec<LoginRow>,
        default_plan: &str,
        max_accounts: i64,
    ) -> Result<Vec<LoginOutcome>, StoreError> {
        let plan = default_plan.to_string();
        self.write(move |tx| logins.iter().map(|l| record_login_tx(tx, l, &plan, max_accounts)).collect()).await
    }

    async fn account(&self, tenant: &str, account_id: &str) -> Result<Option<AccountRecord>, StoreError> {
        let (tenant, account_id) = (tenant.to_string(), account_id.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM seat_accounts WHERE tenant = ?1 AND account_id = ?2"))?
                .query_row(params![tenant, account_id], from_row)
                .optional()?)
        })
        .await
    }

    async fn accounts(&self, tenant: &str) -> Result<Vec<AccountRecord>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let mut st =
                c.prepare(&format!("SELECT {COLUMNS} FROM seat_accounts WHERE tenant = ?1 ORDER BY account_id"))?;
            Ok(st.query_map([tenant], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_plan(&self, tenant: &str, account_id: &str, plan: &str) -> Result<Option<AccountRecord>, StoreError> {
        let (tenant, account_id, plan) = (tenant.to_string(), account_id.to_string(), plan.to_string());
        self.write(move |tx| {
            tx.execute(
                "UPDATE seat_accounts SET plan = ?3 WHERE tenant = ?1 AND account_id = ?2",
                params![tenant, account_id, plan],
            )?;
            Ok(tx
                .prepare_cached(&format!("SELECT {COLUMNS} FROM seat_accounts WHERE tenant = ?1 AND account_id = ?2"))?
                .query_row(params![tenant, account_id], from_row)
                .optional()?)
        })
        .await
    }
}
