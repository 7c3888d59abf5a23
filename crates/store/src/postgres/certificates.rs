//! Device certificates on PostgreSQL (see [`crate::certificates`]).

use super::PgStore;
use crate::StoreError;
use crate::certificates::{
    CA_COLUMNS, COLUMNS, CertificateFilter, CertificatePage, CertificateRecord, CertificateStore, TrustedCaInsert,
    TrustedCaPage, TrustedCaRecord, issuer_column, issuer_field,
};

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
        issuer: issuer_field(r.try_get(9)?),
        auto_registered: r.try_get(10)?,
    })
}

fn ca_record(r: &tokio_postgres::Row) -> Result<TrustedCaRecord, StoreError> {
    Ok(TrustedCaRecord {
        tenant: r.try_get(0)?,
        fingerprint: r.try_get(1)?,
        pem: r.try_get(2)?,
        subject_dn: r.try_get(3)?,
        not_before_ms: r.try_get(4)?,
        not_after_ms: r.try_get(5)?,
        allow_auto_registration: r.try_get(6)?,
        created_ms: r.try_get(7)?,
        modified_ms: r.try_get(8)?,
    })
}

#[async_trait::async_trait]
impl CertificateStore for PgStore {
    async fn insert_certificate(&self, c: CertificateRecord) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let insert = format!(
            "INSERT INTO certificates ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT DO NOTHING"
        );
        let n = client
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
                    &issuer_column(&c.issuer),
                    &c.auto_registered,
                ],
            )
            .await?;
        Ok(n > 0)
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
                "SELECT serial, revoked_ms FROM certificates
                 WHERE revoked_ms IS NOT NULL AND not_after_ms > $1 AND issuer = ''
                 ORDER BY revoked_ms, serial",
                &[&now_ms],
            )
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn insert_trusted_ca(&self, ca: TrustedCaRecord, max_per_tenant: u64) -> Result<TrustedCaInsert, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One registration of a tenant at a time, so two cannot both pass the count.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('trusted_cas:' || $1))", &[&ca.tenant]).await?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM trusted_cas WHERE tenant = $1 AND fingerprint = $2",
                &[&ca.tenant, &ca.fingerprint],
            )
            .await?
            .is_some();
        if exists {
            return Ok(TrustedCaInsert::Exists);
        }
        let count: i64 =
            tx.query_one("SELECT count(*) FROM trusted_cas WHERE tenant = $1", &[&ca.tenant]).await?.try_get(0)?;
        if count as u64 >= max_per_tenant {
            return Ok(TrustedCaInsert::Full);
        }
        tx.execute(
            &format!("INSERT INTO trusted_cas ({CA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            &[
                &ca.tenant,
                &ca.fingerprint,
                &ca.pem,
                &ca.subject_dn,
                &ca.not_before_ms,
                &ca.not_after_ms,
                &ca.allow_auto_registration,
                &ca.created_ms,
                &ca.modified_ms,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(TrustedCaInsert::Inserted)
    }

    async fn trusted_ca(&self, tenant: &str, fingerprint: &str) -> Result<Option<TrustedCaRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("SELECT {CA_COLUMNS} FROM trusted_cas WHERE tenant = $1 AND fingerprint = $2");
        client.query_opt(&query, &[&tenant, &fingerprint]).await?.as_ref().map(ca_record).transpose()
    }

    async fn trusted_cas(&self, tenant: &str, page: u64, limit: u64) -> Result<TrustedCaPage, StoreError> {
        let client = self.client().await?;
        let total: i64 =
            client.query_one("SELECT count(*) FROM trusted_cas WHERE tenant = $1", &[&tenant]).await?.try_get(0)?;
        let rows = client
            .query(
                &format!(
                    "SELECT {CA_COLUMNS} FROM trusted_cas WHERE tenant = $1
                     ORDER BY created_ms, fingerprint LIMIT $2 OFFSET $3"
                ),
                &[&tenant, &(limit as i64), &((page * limit) as i64)],
            )
            .await?;
        Ok(TrustedCaPage { cas: rows.iter().map(ca_record).collect::<Result<_, _>>()?, total: total as u64 })
    }

    async fn all_trusted_cas(&self) -> Result<Vec<TrustedCaRecord>, StoreError> {
        let client = self.client().await?;
        let rows =
            client.query(&format!("SELECT {CA_COLUMNS} FROM trusted_cas ORDER BY tenant, fingerprint"), &[]).await?;
        rows.iter().map(ca_record).collect()
    }

    async fn set_trusted_ca_auto_registration(
        &self,
        tenant: &str,
        fingerprint: &str,
        allow: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE trusted_cas SET allow_auto_registration = $3, modified_ms = $4
                 WHERE tenant = $1 AND fingerprint = $2",
                &[&tenant, &fingerprint, &allow, &now_ms],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_trusted_ca(
        &self,
        tenant: &str,
        fingerprint: &str,
    ) -> Result<Option<Vec<CertificateRecord>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if tx
            .execute("DELETE FROM trusted_cas WHERE tenant = $1 AND fingerprint = $2", &[&tenant, &fingerprint])
            .await?
            == 0
        {
            return Ok(None);
        }
        let rows = tx
            .query(
                &format!("DELETE FROM certificates WHERE tenant = $1 AND issuer = $2 RETURNING {COLUMNS}"),
                &[&tenant, &fingerprint],
            )
            .await?;
        let issued = rows.iter().map(record).collect::<Result<_, _>>()?;
        tx.commit().await?;
        Ok(Some(issued))
    }
}
