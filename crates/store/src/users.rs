//! Users of the API and console. Passwords arrive here already hashed.
//!
//! Every query on existing users takes the tenant and filters on it (`AND service = ?`),
//! so tenant isolation does not rest on each caller's filter. The one exception is
//! [`Store::user_by_login`], the lookup at login, where the tenant is not known yet
//! (user names and e-mail addresses are unique across tenants).

use rusqlite::{OptionalExtension, Row, params};

use crate::{SqliteStore, StoreError};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    /// The tenant.
    pub service: String,
    pub email: String,
    pub name: String,
    pub profile: String,
    pub password_hash: String,
    pub created_date: String,
    pub created_by: String,
}

const COLUMNS: &str = "id, username, service, email, name, profile, password_hash, created_date, created_by";

fn from_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        service: r.get(2)?,
        email: r.get(3)?,
        name: r.get(4)?,
        profile: r.get(5)?,
        password_hash: r.get(6)?,
        created_date: r.get(7)?,
        created_by: r.get(8)?,
    })
}

/// Maps a UNIQUE violation to [`StoreError::Conflict`].
fn conflict(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, Some(msg)) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Conflict(msg.clone())
        }
        _ => StoreError::Sqlite(e),
    }
}

/// Users of every tenant. Every query on one user is scoped by tenant, except the login lookup.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user (its `id` is ignored and assigned). Fails with `Conflict` on a
    /// duplicate username or e-mail.
    async fn insert_user(&self, u: UserRecord) -> Result<UserRecord, StoreError>;

    /// Looks a user up by user name, or by e-mail when `login` contains '@', in every
    /// tenant: for logging in only.
    async fn user_by_login(&self, login: &str) -> Result<Option<UserRecord>, StoreError>;

    /// The user `id` of tenant `service`.
    async fn user_by_id(&self, service: &str, id: i64) -> Result<Option<UserRecord>, StoreError>;

    /// The users of one tenant, optionally only the one named `username`.
    async fn users_of(&self, service: &str, username: Option<&str>) -> Result<Vec<UserRecord>, StoreError>;

    /// Saves every field but `id`, `username`, `service`, `created_*` of user `u.id` of
    /// tenant `service`; `true` if there is such a user.
    async fn update_user(&self, service: &str, u: UserRecord) -> Result<bool, StoreError>;

    /// Deletes user `id` of tenant `service`; `true` if it existed.
    async fn delete_user(&self, service: &str, id: i64) -> Result<bool, StoreError>;

    /// Users of every tenant (first start creates the admin when there are none).
    async fn count_users(&self) -> Result<i64, StoreError>;
}

#[async_trait::async_trait]
impl UserStore for SqliteStore {
    async fn insert_user(&self, u: UserRecord) -> Result<UserRecord, StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO users (username, service, email, name, profile, password_hash, created_date, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    u.username,
                    u.service,
                    u.email,
                    u.name,
                    u.profile,
                    u.password_hash,
                    u.created_date,
                    u.created_by
                ],
            )
            .map_err(conflict)?;
            Ok(UserRecord { id: tx.last_insert_rowid(), ..u })
        })
        .await
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<UserRecord>, StoreError> {
        let login = login.to_string();
        let column = if login.contains('@') { "email" } else { "username" };
        self.read(move |c| {
            Ok(c.query_row(&format!("SELECT {COLUMNS} FROM users WHERE {column} = ?1"), [login], from_row)
                .optional()?)
        })
        .await
    }

    async fn user_by_id(&self, service: &str, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let service = service.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE id = ?1 AND service = ?2"),
                params![id, service],
                from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn users_of(&self, service: &str, username: Option<&str>) -> Result<Vec<UserRecord>, StoreError> {
        let (service, username) = (service.to_string(), username.map(str::to_string));
        self.read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM users WHERE service = ?1 AND (?2 IS NULL OR username = ?2) ORDER BY id"
            ))?;
            Ok(st.query_map(params![service, username], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn update_user(&self, service: &str, u: UserRecord) -> Result<bool, StoreError> {
        let service = service.to_string();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE users SET email = ?2, name = ?3, profile = ?4, password_hash = ?5
                     WHERE id = ?1 AND service = ?6",
                    params![u.id, u.email, u.name, u.profile, u.password_hash, service],
                )
                .map_err(conflict)?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete_user(&self, service: &str, id: i64) -> Result<bool, StoreError> {
        let service = service.to_string();
        self.write(move |tx| {
            Ok(tx.execute("DELETE FROM users WHERE id = ?1 AND service = ?2", params![id, service])? == 1)
        })
        .await
    }

    async fn count_users(&self) -> Result<i64, StoreError> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)).await
    }
}
