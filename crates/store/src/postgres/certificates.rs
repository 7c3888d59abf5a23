//! Device certificates on PostgreSQL (see [`crate::certificates`]).

use super::PgStore;
use crate::StoreError;
use crate::certificates::{CertificateFilter, CertificatePage, CertificateRecord, CertificateStore};

const COLUMNS: &str = "fingerprint, tenant, device, application, pem, serial, not_after_ms, created_ms, revoked_ms";

fn record(r: &tokio_postgres::Row) -> Result<CertificateRecord, StoreError> {
    Ok(CertificateRecord {
        fingerprint: r.try_get(0)?,
        tenant: r.try_get(1)?,
        device: r.try_get(2)?,
        application: r.try_get(3)?,
        pem: r.try_get(4)?,
        serial: r.try_get(5)?,
        not_after_ms: r.try_get(6)?,
        created_ms: r.try_get(7)?,
        revoked_ms: r.try_get(8)?,
    })
}

#[async_trait::async_trait]
impl CertificateStore for PgStore {
    async fn insert_certificate(&self, c: CertificateRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        let insert = format!("INSERT INTO certificates ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
        client
            .execute(
                &insert,
                &[
                    &c.fingerprint,
                    &c.tenant,
                    &c.device,
                    &c.application,
                    &c.pem,
                    &c.serial,
                    &c.not_after_ms,
                    &c.created_ms,
                    &c.revoked_ms,
                ],
            )
            .await?;
        Ok(())
    }

    async fn certificate(&self, tenant: &str, fingerprint: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("SELECT {COLUMNS} FROM certificates WHERE tenant = $1 AND fingerprint = $2");
        client.query_opt(&query, &[&tenant, &fingerprint]).await?.as_ref().map(record).transpose()
    }

    async fn certificate_any(&self, fingerprint: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("SELECT {COLUMNS} FROM certificates WHERE fingerprint = $1");
        client.query_opt(&query, &[&fingerprint]).await?.as_ref().map(record).transpose()
    }

    async fn certificates(
        &self,
        tenant: &str,
        f: &CertificateFilter,
        page: u64,
        limit: u64,
    ) -> Result<CertificatePage, StoreError> {
        let client = self.client().await?;
        let cond = "tenant = $1 AND ($2::text IS NULL OR device = $2) AND ($3::text IS NULL OR fingerprint = $3)
                    AND ($4 OR revoked_ms IS NULL)";
        let total: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM certificates WHERE {cond}"),
                &[&tenant, &f.device, &f.fingerprint, &f.revoked],
            )
            .await?
            .try_get(0)?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM certificates WHERE {cond}
                     ORDER BY created_ms DESC, fingerprint LIMIT $5 OFFSET $6"
                ),
                &[&tenant, &f.device, &f.fingerprint, &f.revoked, &(limit as i64), &((page * limit) as i64)],
            )
            .await?;
        Ok(CertificatePage { certificates: rows.iter().map(record).collect::<Result<_, _>>()?, total: total as u64 })
    }

    async fn set_certificate_owner(
        &self,
        tenant: &str,
        fingerprint: &str,
        device: Option<&str>,
        application: Option<&str>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE certificates SET device = $3, application = $4
                 WHERE tenant = $1 AND fingerprint = $2 AND revoked_ms IS NULL",
                &[&tenant, &fingerprint, &device, &application],
            )
            .await?;
        Ok(n > 0)
    }

    async fn revoke_certificate(
        &self,
        tenant: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE certificates SET revoked_ms = $3 WHERE tenant = $1 AND fingerprint = $2 AND revoked_ms IS NULL",
                &[&tenant, &fingerprint, &now_ms],
            )
            .await?;
        self.certificate(tenant, fingerprint).await
    }

    async fn revoked_certificates(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT serial, revoked_ms FROM certificates WHERE revoked_ms IS NOT NULL AND not_after_ms > $1
                 ORDER BY revoked_ms, serial",
                &[&now_ms],
            )
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }
}
