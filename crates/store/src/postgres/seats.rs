//! Seat metering on PostgreSQL (see [`crate::seats`]).
//!
//! Exact with several processes on one database: a batch first takes a
//! transaction-scoped advisory lock per tenant it touches (in sorted order, so two
//! batches cannot deadlock), so the "at most `max_accounts` accounts" check and the
//! account's creation cannot interleave with another node's; distinct users are counted
//! by the primary key of `seat_users` (`ON CONFLICT DO NOTHING` inserts each pair once).

use std::collections::BTreeSet;

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::PgStore;
use crate::seats::{AccountRecord, LoginOutcome, LoginRow, SeatStore};
use crate::{StoreError, now_ms};

const COLUMNS: &str = "tenant, account_id, plan, users, created_ms";

fn from_row(r: &Row) -> Result<AccountRecord, StoreError> {
    Ok(AccountRecord {
        tenant: r.try_get(0)?,
        account_id: r.try_get(1)?,
        plan: r.try_get(2)?,
        users: r.try_get(3)?,
        created_ms: r.try_get(4)?,
    })
}

async fn record_login_tx(
    tx: &Transaction<'_>,
    l: &LoginRow,
    plan: &str,
    max_accounts: i64,
) -> Result<LoginOutcome, StoreError> {
    let exists = tx
        .query_opt(
            &tx.prepare_cached("SELECT 1 FROM seat_accounts WHERE tenant = $1 AND account_id = $2").await?,
            &[&l.tenant, &l.account_id],
        )
        .await?
        .is_some();
    if !exists {
        let count: i64 = tx
            .query_one(&tx.prepare_cached("SELECT count(*) FROM seat_accounts WHERE tenant = $1").await?, &[&l.tenant])
            .await?
            .try_get(0)?;
        if count >= max_accounts {
            return Ok(LoginOutcome::TooManyAccounts);
        }
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO seat_accounts (tenant, account_id, plan, users, created_ms) VALUES ($1, $2, $3, 0, $4)",
            )
            .await?,
            &[&l.tenant, &l.account_id, &plan, &now_ms()],
        )
        .await?;
    }
    let new_user = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO seat_users (tenant, account_id, user_id, first_seen_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .await?,
            &[&l.tenant, &l.account_id, &l.user_id, &now_ms()],
        )
        .await?
        == 1;
    let st = if new_user {
        format!("UPDATE seat_accounts SET users = users + 1 WHERE tenant = $1 AND account_id = $2 RETURNING {COLUMNS}")
    } else {
        format!("SELECT {COLUMNS} FROM seat_accounts WHERE tenant = $1 AND account_id = $2")
    };
    let account = from_row(&tx.query_one(&tx.prepare_cached(&st).await?, &[&l.tenant, &l.account_id]).await?)?;
    Ok(LoginOutcome::Recorded { account, new_user, new_account: !exists })
}

#[async_trait::async_trait]
impl SeatStore for PgStore {
    async fn record_logins(
        &self,
        logins: Vec<LoginRow>,
        default_plan: &str,
        max_accounts: i64,
    ) -> Result<Vec<LoginOutcome>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let tenants: BTreeSet<&str> = logins.iter().map(|l| l.tenant.as_str()).collect();
        for tenant in tenants {
            tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&super::lock::SEATS, &tenant]).await?;
        }
        let mut out = Vec::with_capacity(logins.len());
        for l in &logins {
            out.push(record_login_tx(&tx, l, default_plan, max_accounts).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn account(&self, tenant: &str, account_id: &str) -> Result<Option<AccountRecord>, StoreError> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM seat_accounts WHERE tenant = $1 AND account_id = $2"))
            .await?;
        client.query_opt(&st, &[&tenant, &account_id]).await?.as_ref().map(from_row).transpose()
    }

    async fn accounts(&self, tenant: &str) -> Result<Vec<AccountRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(&format!("SELECT {COLUMNS} FROM seat_accounts WHERE tenant = $1 ORDER BY account_id"), &[&tenant])
            .await?;
        rows.iter().map(from_row).collect()
    }

    async fn set_plan(&self, tenant: &str, account_id: &str, plan: &str) -> Result<Option<AccountRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "UPDATE seat_accounts SET plan = $3 WHERE tenant = $1 AND account_id = $2 RETURNING {COLUMNS}"
                ),
                &[&tenant, &account_id, &plan],
            )
            .await?;
        row.as_ref().map(from_row).transpose()
    }
}
