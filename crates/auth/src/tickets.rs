//! Stream tickets: a JWT holder trades its token for a single-use ticket (64 hex
//! characters, 256 random bits) that a WebSocket or EventSource, which cannot send an
//! `Authorization` header, puts in its URL. dojot's kafka-ws kept the JWT in Redis under
//! the ticket; here the store keeps who the ticket is for, under the ticket's SHA-256
//! (`store::tickets`), so a leaked database row is no ticket and any node can take it once.

use std::time::Duration;

use model::secret::{hash_secret, random_hex};
use store::tickets::TicketRecord;

use crate::{AuthError, AuthService, Claims};

/// Who a taken ticket was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketHolder {
    pub tenant: String,
    pub user_id: i64,
    pub username: String,
}

/// Most unexpired tickets one user may hold at once.
pub const MAX_TICKETS_PER_USER: usize = 64;

impl AuthService {
    /// A new single-use ticket for the caller, valid for `ttl`.
    pub async fn issue_ticket(&self, caller: &Claims, ttl: Duration) -> Result<String, AuthError> {
        let ticket = random_hex(32);
        let now = chrono::Utc::now().timestamp_millis();
        let record = TicketRecord {
            hash: hash_secret(ticket.as_bytes()),
            tenant: caller.service.clone(),
            user_id: caller.userid,
            username: caller.username.clone(),
            expires_ms: now + ttl.as_millis() as i64,
        };
        if !self.store().insert_ticket(record, now, MAX_TICKETS_PER_USER).await? {
            return Err(AuthError::TooManyTickets(MAX_TICKETS_PER_USER));
        }
        Ok(ticket)
    }

    /// Takes a ticket: who it was for, if it exists and has not expired. A second call
    /// with the same ticket, on any node, fails. The holder must still be a user.
    pub async fn take_ticket(&self, ticket: &str) -> Result<TicketHolder, AuthError> {
        let invalid = || AuthError::Unauthorized("Invalid ticket: unknown, expired or already used".into());
        if ticket.len() != 64 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let now = chrono::Utc::now().timestamp_millis();
        let taken = self.store().take_ticket(&hash_secret(ticket.as_bytes()), now).await?.ok_or_else(invalid)?;
        if self.current_user(&taken.tenant, taken.user_id).await?.is_none() {
            return Err(invalid());
        }
        Ok(TicketHolder { tenant: taken.tenant, user_id: taken.user_id, username: taken.username })
    }
}
