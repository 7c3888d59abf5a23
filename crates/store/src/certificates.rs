//! Device certificates (`pki`): every certificate Ingot's CA issued, by its SHA-256
//! fingerprint, with what it belongs to and whether it was revoked. dojot's
//! x509-identity-mgmt kept the same registry (beside EJBCA). The MQTT agent asks it at
//! every CONNECT over mutual TLS, so a revoked certificate is refused on every node at
//! once; the CRL is made from it.

use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, StoreError};

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// SHA-256 of the DER, upper-case hex in pairs joined by `:` (dojot's form).
    pub fingerprint: String,
    pub tenant: String,
    /// The device it belongs to (`belongsTo.device`), if any.
    pub device: Option<String>,
    /// Or the application (`belongsTo.application`), dojot's other owner kind.
    pub application: Option<String>,
    pub pem: String,
    /// The serial number, hex.
    pub serial: String,
    pub not_after_ms: i64,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A page of certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePage {
    pub certificates: Vec<CertificateRecord>,
    pub total: u64,
}

/// Filters of a certificate listing (dojot's `keyVal` fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateFilter {
    pub device: Option<String>,
    pub fingerprint: Option<String>,
    /// Include revoked certificates (dojot listed only the valid ones).
    pub revoked: bool,
}

/// The certificate registry, every query scoped by tenant but [`CertificateStore::certificate_any`].
#[async_trait::async_trait]
pub trait CertificateStore: Send + Sync {
    async fn insert_certificate(&self, cert: CertificateRecord) -> Result<(), StoreError>;
    async fn certificate(&self, tenant: &str, fingerprint: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// By fingerprint alone: for the MQTT agent, which learns the tenant from the
    /// certificate itself and checks that both agree.
    async fn certificate_any(&self, fingerprint: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// Newest first; `page` from 0.
    async fn certificates(
        &self,
        tenant: &str,
        filter: &CertificateFilter,
        page: u64,
        limit: u64,
    ) -> Result<CertificatePage, StoreError>;
    /// Sets what an unrevoked certificate belongs to; false if there is no such one.
    async fn set_certificate_owner(
        &self,
        tenant: &str,
        fingerprint: &str,
        device: Option<&str>,
        application: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Revokes a certificate (once); the record as it now is, if it exists.
    async fn revoke_certificate(
        &self,
        tenant: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<Option<CertificateRecord>, StoreError>;
    /// Every revoked certificate not yet expired at `now_ms`, for the CRL: (serial, revoked ms).
    async fn revoked_certificates(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError>;
}

const COLUMNS: &str = "fingerprint, tenant, device, application, pem, serial, not_after_ms, created_ms, revoked_ms";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<CertificateRecord> {
    Ok(CertificateRecord {
        fingerprint: r.get(0)?,
        tenant: r.get(1)?,
        device: r.get(2)?,
        application: r.get(3)?,
        pem: r.get(4)?,
        serial: r.get(5)?,
        not_after_ms: r.get(6)?,
        created_ms: r.get(7)?,
        revoked_ms: r.get(8)?,
    })
}

#[async_trait::async_trait]
impl CertificateStore for SqliteStore {
    async fn insert_certificate(&self, c: CertificateRecord) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO certificates ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                c.fingerprint,
                c.tenant,
                c.device,
                c.application,
                c.pem,
                c.serial,
                c.not_after_ms,
                c.created_ms,
                c.revoked_ms
            ])?;
            Ok(())
        })
        .await
    }

    async fn certificate(&self, tenant: &str, fingerprint: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let (tenant, fingerprint) = (tenant.to_string(), fingerprint.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM certificates WHERE tenant = ?1 AND fingerprint = ?2"))?
                .query_row(params![tenant, fingerprint], record)
                .optional()?)
        })
        .await
    }

    async fn certificate_any(&self, fingerprint: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let fingerprint = fingerprint.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM certificates WHERE fingerprint = ?1"))?
                .query_row([fingerprint], record)
                .optional()?)
        })
        .await
    }

    async fn certificates(
        &self,
        tenant: &str,
        filter: &CertificateFilter,
        page: u64,
        limit: u64,
    ) -> Result<CertificatePage, StoreError> {
        let (tenant, f) = (tenant.to_string(), filter.clone());
        self.read(move |c| {
            let cond = "tenant = ?1 AND (?2 IS NULL OR device = ?2) AND (?3 IS NULL OR fingerprint = ?3)
                        AND (?4 OR revoked_ms IS NULL)";
            let total: i64 = c
                .prepare_cached(&format!("SELECT count(*) FROM certificates WHERE {cond}"))?
                .query_row(params![tenant, f.device, f.fingerprint, f.revoked], |r| r.get(0))?;
            let certificates = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM certificates WHERE {cond}
                     ORDER BY created_ms DESC, fingerprint LIMIT ?5 OFFSET ?6"
                ))?
                .query_map(
                    params![tenant, f.device, f.fingerprint, f.revoked, limit as i64, (page * limit) as i64],
                    record,
                )?
                .collect::<Result<_, _>>()?;
            Ok(CertificatePage { certificates, total: total as u64 })
        })
        .await
    }

    async fn set_certificate_owner(
        &self,
        tenant: &str,
        fingerprint: &str,
        device: Option<&str>,
        application: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (tenant, fingerprint) = (tenant.to_string(), fingerprint.to_string());
        let (device, application) = (device.map(str::to_string), application.map(str::to_string));
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE certificates SET device = ?3, application = ?4
                 WHERE tenant = ?1 AND fingerprint = ?2 AND revoked_ms IS NULL",
                params![tenant, fingerprint, device, application],
            )? > 0)
        })
        .await
    }

    async fn revoke_certificate(
        &self,
        tenant: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let (tenant, fingerprint) = (tenant.to_string(), fingerprint.to_string());
        self.write(move |tx| {
            tx.execute(
                "UPDATE certificates SET revoked_ms = ?3 WHERE tenant = ?1 AND fingerprint = ?2 AND revoked_ms IS NULL",
                params![tenant, fingerprint, now_ms],
            )?;
            Ok(tx
                .prepare_cached(&format!("SELECT {COLUMNS} FROM certificates WHERE tenant = ?1 AND fingerprint = ?2"))?
                .query_row(params![tenant, fingerprint], record)
                .optional()?)
        })
        .await
    }

    async fn revoked_certificates(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT serial, revoked_ms FROM certificates WHERE revoked_ms IS NOT NULL AND not_after_ms > ?1
                 ORDER BY revoked_ms, serial",
            )?
            .query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
        })
        .await
    }
}
