//! Device certificates (`pki`): every certificate Ingot's CA issued, and every one a
//! tenant's own CA issued that was registered (by the API or at a device's first
//! CONNECT), by its SHA-256 fingerprint, with what it belongs to and whether it was
//! revoked; and the tenants' own CAs ("trusted CAs"). dojot's x509-identity-mgmt kept the
//! same registry (beside EJBCA). The MQTT agent asks it at every CONNECT over mutual TLS,
//! so a revoked certificate is refused on every node at once; the CRL is made from it.

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
    /// The trusted CA that issued it (its fingerprint); `None`: Ingot's own CA.
    pub issuer: Option<String>,
    /// Registered by its device's first CONNECT (its CA allows auto-registration).
    pub auto_registered: bool,
}

/// A tenant's own CA, whose certificates its devices may use on MQTTS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCaRecord {
    pub tenant: String,
    /// SHA-256 of the DER, as for certificates.
    pub fingerprint: String,
    pub pem: String,
    /// Its subject, as text (`CN=…, O=…`).
    pub subject_dn: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    /// A certificate it issued is registered at its device's first CONNECT.
    pub allow_auto_registration: bool,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// What [`CertificateStore::insert_trusted_ca`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedCaInsert {
    Inserted,
    /// The tenant has this CA already.
    Exists,
    /// The tenant has as many CAs as it may.
    Full,
}

/// A page of trusted CAs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCaPage {
    pub cas: Vec<TrustedCaRecord>,
    pub total: u64,
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

/// The certificate registry, every query scoped by tenant but [`CertificateStore::certificate_any`]
/// and [`CertificateStore::all_trusted_cas`].
#[async_trait::async_trait]
pub trait CertificateStore: Send + Sync {
    /// Records a certificate; false if one with its fingerprint (or its issuer and
    /// serial) is there already.
    async fn insert_certificate(&self, cert: CertificateRecord) -> Result<bool, StoreError>;
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
    /// Every certificate of Ingot's CA revoked and not yet expired at `now_ms`, for the
    /// CRL: (serial, revoked ms).
    async fn revoked_certificates(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError>;

    /// Adds a tenant's CA, unless it has it or has `max_per_tenant` already.
    async fn insert_trusted_ca(&self, ca: TrustedCaRecord, max_per_tenant: u64) -> Result<TrustedCaInsert, StoreError>;
    async fn trusted_ca(&self, tenant: &str, fingerprint: &str) -> Result<Option<TrustedCaRecord>, StoreError>;
    /// Oldest first; `page` from 0.
    async fn trusted_cas(&self, tenant: &str, page: u64, limit: u64) -> Result<TrustedCaPage, StoreError>;
    /// Every tenant's: what the MQTTS listener trusts at the TLS stage (which tenant a
    /// certificate may speak for is checked at CONNECT).
    async fn all_trusted_cas(&self) -> Result<Vec<TrustedCaRecord>, StoreError>;
    /// false if the tenant has no such CA.
    async fn set_trusted_ca_auto_registration(
        &self,
        tenant: &str,
        fingerprint: &str,
        allow: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Removes a tenant's CA and the certificates registered from it, in one transaction;
    /// returns those certificates (`None`: no such CA).
    async fn delete_trusted_ca(
        &self,
        tenant: &str,
        fingerprint: &str,
    ) -> Result<Option<Vec<CertificateRecord>>, StoreError>;
}

pub(crate) const COLUMNS: &str = "fingerprint, tenant, device, application, pem, serial, not_after_ms, created_ms, \
                                  revoked_ms, issuer, auto_registered";
pub(crate) const CA_COLUMNS: &str = "tenant, fingerprint, pem, subject_dn, not_before_ms, not_after_ms, \
                                     allow_auto_registration, created_ms, modified_ms";

/// The `issuer` column: '' for Ingot's CA.
pub(crate) fn issuer_column(issuer: &Option<String>) -> &str {
    issuer.as_deref().unwrap_or("")
}

pub(crate) fn issuer_field(column: String) -> Option<String> {
    (!column.is_empty()).then_some(column)
}

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
        issuer: issuer_field(r.get(9)?),
        auto_registered: r.get(10)?,
    })
}

fn ca_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<TrustedCaRecord> {
    Ok(TrustedCaRecord {
        tenant: r.get(0)?,
        fingerprint: r.get(1)?,
        pem: r.get(2)?,
        subject_dn: r.get(3)?,
        not_before_ms: r.get(4)?,
        not_after_ms: r.get(5)?,
        allow_auto_registration: r.get(6)?,
        created_ms: r.get(7)?,
        modified_ms: r.get(8)?,
    })
}

#[async_trait::async_trait]
impl CertificateStore for SqliteStore {
    async fn insert_certificate(&self, c: CertificateRecord) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached(&format!(
                    "INSERT INTO certificates ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT DO NOTHING"
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
                    c.revoked_ms,
                    issuer_column(&c.issuer),
                    c.auto_registered
                ])?;
            Ok(n > 0)
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
                "SELECT serial, revoked_ms FROM certificates
                 WHERE revoked_ms IS NOT NULL AND not_after_ms > ?1 AND issuer = ''
                 ORDER BY revoked_ms, serial",
            )?
            .query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn insert_trusted_ca(&self, ca: TrustedCaRecord, max_per_tenant: u64) -> Result<TrustedCaInsert, StoreError> {
        self.write(move |tx| {
            let exists = tx
                .prepare_cached("SELECT 1 FROM trusted_cas WHERE tenant = ?1 AND fingerprint = ?2")?
                .exists(params![ca.tenant, ca.fingerprint])?;
            if exists {
                return Ok(TrustedCaInsert::Exists);
            }
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM trusted_cas WHERE tenant = ?1")?
                .query_row([&ca.tenant], |r| r.get(0))?;
            if count as u64 >= max_per_tenant {
                return Ok(TrustedCaInsert::Full);
            }
            tx.prepare_cached(&format!(
                "INSERT INTO trusted_cas ({CA_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                ca.tenant,
                ca.fingerprint,
                ca.pem,
                ca.subject_dn,
                ca.not_before_ms,
                ca.not_after_ms,
                ca.allow_auto_registration,
                ca.created_ms,
                ca.modified_ms
            ])?;
            Ok(TrustedCaInsert::Inserted)
        })
        .await
    }

    async fn trusted_ca(&self, tenant: &str, fingerprint: &str) -> Result<Option<TrustedCaRecord>, StoreError> {
        let (tenant, fingerprint) = (tenant.to_string(), fingerprint.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {CA_COLUMNS} FROM trusted_cas WHERE tenant = ?1 AND fingerprint = ?2"
            ))?
            .query_row(params![tenant, fingerprint], ca_record)
            .optional()?)
        })
        .await
    }

    async fn trusted_cas(&self, tenant: &str, page: u64, limit: u64) -> Result<TrustedCaPage, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let total: i64 = c
                .prepare_cached("SELECT count(*) FROM trusted_cas WHERE tenant = ?1")?
                .query_row([&tenant], |r| r.get(0))?;
            let cas = c
                .prepare_cached(&format!(
                    "SELECT {CA_COLUMNS} FROM trusted_cas WHERE tenant = ?1
                     ORDER BY created_ms, fingerprint LIMIT ?2 OFFSET ?3"
                ))?
                .query_map(params![tenant, limit as i64, (page * limit) as i64], ca_record)?
                .collect::<Result<_, _>>()?;
            Ok(TrustedCaPage { cas, total: total as u64 })
        })
        .await
    }

    async fn all_trusted_cas(&self) -> Result<Vec<TrustedCaRecord>, StoreError> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {CA_COLUMNS} FROM trusted_cas ORDER BY tenant, fingerprint"))?
                .query_map([], ca_record)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_trusted_ca_auto_registration(
        &self,
        tenant: &str,
        fingerprint: &str,
        allow: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (tenant, fingerprint) = (tenant.to_string(), fingerprint.to_string());
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE trusted_cas SET allow_auto_registration = ?3, modified_ms = ?4
                 WHERE tenant = ?1 AND fingerprint = ?2",
                params![tenant, fingerprint, allow, now_ms],
            )? > 0)
        })
        .await
    }

    async fn delete_trusted_ca(
        &self,
        tenant: &str,
        fingerprint: &str,
    ) -> Result<Option<Vec<CertificateRecord>>, StoreError> {
        let (tenant, fingerprint) = (tenant.to_string(), fingerprint.to_string());
        self.write(move |tx| {
            if tx.execute(
                "DELETE FROM trusted_cas WHERE tenant = ?1 AND fingerprint = ?2",
                params![tenant, fingerprint],
            )? == 0
            {
                return Ok(None);
            }
            let issued = tx
                .prepare_cached(&format!("SELECT {COLUMNS} FROM certificates WHERE tenant = ?1 AND issuer = ?2"))?
                .query_map(params![tenant, fingerprint], record)?
                .collect::<Result<Vec<_>, _>>()?;
            tx.execute("DELETE FROM certificates WHERE tenant = ?1 AND issuer = ?2", params![tenant, fingerprint])?;
            Ok(Some(issued))
        })
        .await
    }
}
