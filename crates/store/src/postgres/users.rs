//! Users on PostgreSQL (see [`crate::users`]): every query on existing users is scoped
//! by tenant, but for the login lookup.

use tokio_postgres::Row;

use super::{PgStore, conflict};
use crate::StoreError;
use crate::users::{UserRecord, UserStore};

const COLUMNS: &str = "id, username, service, email, name, profile, password_hash, created_date, created_by";

fn from_row(r: &Row) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: r.try_get(0)?,
        username: r.try_get(1)?,
        service: r.try_get(2)?,
        email: r.try_get(3)?,
        name: r.try_get(4)?,
        profile: r.try_get(5)?,
        password_hash: r.try_get(6)?,
        created_date: r.try_get(7)?,
        created_by: r.try_get(8)?,
    })
}

#[async_trait::async_trait]
impl UserStore for PgStore {
    async fn insert_user(&self, u: UserRecord) -> Result<UserRecord, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO users (username, service, email, name, profile, password_hash, created_date, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &u.username,
                    &u.service,
                    &u.email,
                    &u.name,
                    &u.profile,
                    &u.password_hash,
                    &u.created_date,
                    &u.created_by,
                ],
            )
            .await
            .map_err(conflict)?;
        Ok(UserRecord { id: row.try_get(0)?, ..u })
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<UserRecord>, StoreError> {
        let column = if login.contains('@') { "email" } else { "username" };
        let client = self.client().await?;
        let st = client.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE {column} = $1")).await?;
        client.query_opt(&st, &[&login]).await?.as_ref().map(from_row).transpose()
    }

    async fn user_by_id(&self, service: &str, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let client = self.client().await?;
        let st = client.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND service = $2")).await?;
        client.query_opt(&st, &[&id, &service]).await?.as_ref().map(from_row).transpose()
    }

    async fn users_of(&self, service: &str, username: Option<&str>) -> Result<Vec<UserRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM users WHERE service = $1 AND ($2::text IS NULL OR username = $2) ORDER BY id"
                ),
                &[&service, &username],
            )
            .await?;
        rows.iter().map(from_row).collect()
    }

    async fn update_user(&self, service: &str, u: UserRecord) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE users SET email = $2, name = $3, profile = $4, password_hash = $5
                 WHERE id = $1 AND service = $6",
                &[&u.id, &u.email, &u.name, &u.profile, &u.password_hash, &service],
            )
            .await
            .map_err(conflict)?;
        Ok(n == 1)
    }

    async fn delete_user(&self, service: &str, id: i64) -> Result<bool, StoreError> {
        let n =
            self.client().await?.execute("DELETE FROM users WHERE id = $1 AND service = $2", &[&id, &service]).await?;
        Ok(n == 1)
    }

    async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(self.client().await?.query_one("SELECT count(*) FROM users", &[]).await?.try_get(0)?)
    }
}
