//! The auction market on PostgreSQL (see [`crate::market`]): a batch of bids locks its
//! offers `FOR UPDATE`, in id order, before deciding each bid, so that batches of any
//! node are serialised per offer and never deadlock.

use std::collections::HashMap;

use super::PgStore;
use crate::StoreError;
use crate::market::{
    Acceptance, BID_COLUMNS, BidPlacement, BidRecord, MarketStore, MarketUser, OFFER_COLUMNS, OfferOrder, OfferRecord,
    decide,
};

fn offer(r: &tokio_postgres::Row) -> Result<OfferRecord, StoreError> {
    Ok(OfferRecord {
        id: r.try_get(0)?,
        title: r.try_get(1)?,
        start_price: r.try_get(2)?,
        bid_price: r.try_get(3)?,
        go_live_ms: r.try_get(4)?,
        lifetime_s: r.try_get(5)?,
        photo_url: r.try_get(6)?,
        created_by: r.try_get(7)?,
        sold: r.try_get(8)?,
        winning_bid: r.try_get(9)?,
    })
}

fn bid(r: &tokio_postgres::Row) -> Result<BidRecord, StoreError> {
    Ok(BidRecord {
        id: r.try_get(0)?,
        offer_id: r.try_get(1)?,
        username: r.try_get(2)?,
        bid_price: r.try_get(3)?,
        ts_ms: r.try_get(4)?,
        winning: r.try_get(5)?,
        accepted: r.try_get(6)?,
    })
}

#[async_trait::async_trait]
impl MarketStore for PgStore {
    async fn insert_market_user(&self, u: MarketUser) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO market_users (username, password_hash, created_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (username) DO NOTHING",
                &[&u.username, &u.password_hash, &u.created_ms],
            )
            .await?;
        Ok(n == 1)
    }

    async fn market_user(&self, username: &str) -> Result<Option<MarketUser>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT username, password_hash, created_ms FROM market_users WHERE username = $1", &[&username])
            .await?;
        row.map(|r| Ok(MarketUser { username: r.try_get(0)?, password_hash: r.try_get(1)?, created_ms: r.try_get(2)? }))
            .transpose()
    }

    async fn insert_offer(&self, o: OfferRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO market_offers ({OFFER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                &[
                    &o.id,
                    &o.title,
                    &o.start_price,
                    &o.bid_price,
                    &o.go_live_ms,
                    &o.lifetime_s,
                    &o.photo_url,
                    &o.created_by,
                    &o.sold,
                    &o.winning_bid,
                ],
            )
            .await?;
        Ok(())
    }

    async fn offer(&self, id: &str) -> Result<Option<OfferRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE id = $1");
        client.query_opt(&query, &[&id]).await?.as_ref().map(offer).transpose()
    }

    async fn offers(&self, order: OfferOrder, offset: u64, limit: u64) -> Result<Vec<OfferRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("SELECT {OFFER_COLUMNS} FROM market_offers ORDER BY {} LIMIT $1 OFFSET $2", order.sql());
        client.query(&query, &[&(limit as i64), &(offset as i64)]).await?.iter().map(offer).collect()
    }

    async fn place_bids(&self, bids: Vec<BidRecord>, now_ms: i64) -> Result<Vec<BidPlacement>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut ids: Vec<&str> = bids.iter().map(|b| b.offer_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let query = format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE id = ANY($1) ORDER BY id FOR UPDATE");
        let mut offers: HashMap<String, OfferRecord> = tx
            .query(&query, &[&ids])
            .await?
            .iter()
            .map(|r| offer(r).map(|o| (o.id.clone(), o)))
            .collect::<Result<_, _>>()?;
        let mut placements = Vec::with_capacity(bids.len());
        for b in bids {
            let placement = decide(offers.get(&b.offer_id), b, now_ms);
            if let BidPlacement::Placed(b) = &placement {
                if b.winning {
                    let o = offers.get_mut(&b.offer_id).expect("a placed bid's offer was read");
                    if let Some(previous) = o.winning_bid.replace(b.id.clone()) {
                        tx.execute("UPDATE market_bids SET winning = false WHERE id = $1", &[&previous]).await?;
                    }
                    o.bid_price = b.bid_price;
                    tx.execute(
                        "UPDATE market_offers SET bid_price = $2, winning_bid = $3 WHERE id = $1",
                        &[&b.offer_id, &b.bid_price, &b.id],
                    )
                    .await?;
                }
                tx.execute(
                    &format!("INSERT INTO market_bids ({BID_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                    &[&b.id, &b.offer_id, &b.username, &b.bid_price, &b.ts_ms, &b.winning, &b.accepted],
                )
                .await?;
            }
            placements.push(placement);
        }
        tx.commit().await?;
        Ok(placements)
    }

    async fn accept_bid(&self, id: &str, seller: &str) -> Result<Acceptance, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx.query_opt(&format!("SELECT {BID_COLUMNS} FROM market_bids WHERE id = $1"), &[&id]).await?
        else {
            return Ok(Acceptance::NoSuchBid);
        };
        let mut b = bid(&row)?;
        let query = format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE id = $1 FOR UPDATE");
        let o = offer(&tx.query_one(&query, &[&b.offer_id]).await?)?;
        if o.created_by != seller {
            return Ok(Acceptance::NotTheSeller);
        }
        if o.sold {
            return Ok(Acceptance::Sold);
        }
        tx.execute("UPDATE market_bids SET accepted = true WHERE id = $1", &[&id]).await?;
        tx.execute("UPDATE market_offers SET sold = true WHERE id = $1", &[&b.offer_id]).await?;
        tx.commit().await?;
        b.accepted = true;
        Ok(Acceptance::Accepted(b))
    }

    async fn bid(&self, id: &str) -> Result<Option<BidRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("SELECT {BID_COLUMNS} FROM market_bids WHERE id = $1");
        client.query_opt(&query, &[&id]).await?.as_ref().map(bid).transpose()
    }

    async fn bids(&self, offer_id: &str, offset: u64, limit: u64) -> Result<Vec<BidRecord>, StoreError> {
        let client = self.client().await?;
        let query =
            format!("SELECT {BID_COLUMNS} FROM market_bids WHERE offer_id = $1 ORDER BY ts_ms, id LIMIT $2 OFFSET $3");
        client.query(&query, &[&offer_id, &(limit as i64), &(offset as i64)]).await?.iter().map(bid).collect()
    }
}
