//! Users of the API and console. Passwords arrive here already hashed.

use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError};

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

impl Store {
    /// Inserts a user (its `id` is ignored and assigned). Fails with `Conflict` on a
    /// duplicate username or e-mail.
    pub async fn insert_user(&self, u: UserRecord) -> Result<UserRecord, StoreError> {
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

    /// Looks a user up by user name, or by e-mail when `login` contains '@'.
    pub async fn user_by_login(&self, login: &str) -> Result<Option<UserRecord>, StoreError> {
        let login = login.to_string();
        let column = if login.contains('@') { "email" } else { "username" };
        self.read(move |c| {
            Ok(c.query_row(&format!("SELECT {COLUMNS} FROM users WHERE {column} = ?1"), [login], from_row)
                .optional()?)
        })
        .await
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        self.read(move |c| {
            Ok(c.query_row(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"), [id], from_row).optional()?)
        })
        .await
    }

    /// The users of one tenant, optionally only the one named `username`.
    pub async fn users_of(&self, service: &str, username: Option<&str>) -> Result<Vec<UserRecord>, StoreError> {
        let (service, username) = (service.to_string(), username.map(str::to_string));
        self.read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM users WHERE service = ?1 AND (?2 IS NULL OR username = ?2) ORDER BY id"
            ))?;
            Ok(st.query_map(params![service, username], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Saves every field but `id`, `username`, `service`, `created_*`.
    pub async fn update_user(&self, u: UserRecord) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE users SET email = ?2, name = ?3, profile = ?4, password_hash = ?5 WHERE id = ?1",
                params![u.id, u.email, u.name, u.profile, u.password_hash],
            )
            .map_err(conflict)?;
            Ok(())
        })
        .await
    }

    /// Deletes a user; `true` if it existed.
    pub async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        self.write(move |tx| Ok(tx.execute("DELETE FROM users WHERE id = ?1", [id])? == 1)).await
    }

    pub async fn count_users(&self) -> Result<i64, StoreError> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)).await
    }
}
