//! Who may do what: tenants, users, passwords (argon2id), JWTs (HS256), login limits.
//!
//! Unlike dojot, whose services only base64-decoded the JWT behind Kong, every token is
//! verified here (signature and expiry) on every request.

mod cache;
mod follow;
mod jwt;
mod limiter;
mod password;
mod service;
mod tickets;
mod tokens;

pub use follow::FOLLOW_GROUP;
pub use jwt::{Claims, JwtKeys};
pub use limiter::LoginLimiter;
pub use model::account::{NewUser, PROFILES, SCOPES, TenantSettings, UserUpdate, group_id};
pub use password::{decoy_hash, hash_password, verify_password};
pub use service::{AuthConfig, AuthService, BOOTSTRAP_TENANT, MAX_EMAIL_LEN, MAX_USERNAME_LEN, UserChange, UserView};
pub use tickets::{MAX_TICKETS_PER_USER, TicketHolder};
pub use tokens::{TokenPrincipal, TokenView};

/// The one error type of the auth room.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("too many failed login attempts; retry in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("{0}")]
    Unauthorized(String),
    #[error("too many outstanding stream tickets (at most {0}); use or let some expire")]
    TooManyTickets(usize),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot read or write the JWT key file: {0}")]
    KeyFile(std::io::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("the bus: {0}")]
    Bus(#[from] bus::BusError),
}

/// A request body broke one of the rules of `model::account`.
impl From<model::account::BodyError> for AuthError {
    fn from(e: model::account::BodyError) -> Self {
        Self::BadRequest(e.0)
    }
}
