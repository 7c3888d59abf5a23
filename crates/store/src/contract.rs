//! What every store must do, tested once against [`SharedStore`] and run on each engine
//! ([`crate::testing::engines`]: SQLite always, PostgreSQL when a server is configured).
//! An engine's own concerns (SQLite's poisoned writer lock, PostgreSQL's pool and
//! migrations) are tested in its modules.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use model::{DeviceData, DeviceRef};
use serde_json::{Value, json};

use crate::catalog::{CatalogChange, CatalogConflict, DeviceRow};
use crate::history::{HistoryQuery, Point};
use crate::seats::{LoginOutcome, LoginRow};
use crate::testing::{Engine, engines};
use crate::tokens::TokenRecord;
use crate::users::UserRecord;
use crate::{StoreError, testing};

pub(crate) fn reading(device: &str, ts: i64, attrs: Value) -> Arc<DeviceData> {
    reading_of("t", device, ts, attrs)
}

pub(crate) fn reading_of(tenant: &str, device: &str, ts: i64, attrs: Value) -> Arc<DeviceData> {
    let d = DeviceRef::new(tenant, device).unwrap();
    let Value::Object(attrs) = attrs else { unreachable!() };
    Arc::new(DeviceData::new(&d.tenant, &d.device_id, Utc.timestamp_millis_opt(ts).unwrap(), attrs))
}

pub(crate) fn query(device: &str, attr: &str) -> HistoryQuery {
    HistoryQuery {
        tenant: "t".into(),
        device_id: device.into(),
        attr: attr.into(),
        from_ms: None,
        to_ms: None,
        newest_first: false,
        limit: None,
    }
}

fn values(points: Vec<Point>) -> Vec<Value> {
    points.into_iter().map(|p| p.value).collect()
}

fn user(name: &str, tenant: &str) -> UserRecord {
    UserRecord {
        id: 0,
        username: name.into(),
        service: tenant.into(),
        email: format!("{name}@example.com"),
        name: name.into(),
        profile: "admin".into(),
        password_hash: "h".into(),
        created_date: "now".into(),
        created_by: "test".into(),
    }
}

#[tokio::test]
async fn tenants_are_created_once_and_keep_their_settings() {
    for Engine { name, store, .. } in &engines().await {
        assert!(store.ensure_tenant("acme", 7).await.unwrap(), "{name}");
        assert!(!store.ensure_tenant("acme", 30).await.unwrap(), "{name}: exists already");
        store.ensure_tenant("globex", 1).await.unwrap();
        let mut acme = store.tenant("acme").await.unwrap().unwrap();
        assert_eq!((acme.retention_days, acme.unsecured_mqtt), (7, false), "{name}");
        acme.unsecured_mqtt = true;
        acme.retention_days = u32::MAX;
        store.update_tenant(acme.clone()).await.unwrap();
        assert_eq!(store.tenant("acme").await.unwrap().unwrap(), acme, "{name}");
        let names: Vec<_> = store.tenants().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["acme", "globex"], "{name}");
        assert_eq!(store.tenant("nobody").await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn queries_on_a_user_are_scoped_by_tenant() {
    for Engine { name, store, .. } in &engines().await {
        for t in ["acme", "globex"] {
            store.ensure_tenant(t, 7).await.unwrap();
        }
        let alice = store.insert_user(user("alice", "acme")).await.unwrap();
        let bob = store.insert_user(user("bob", "globex")).await.unwrap();
        assert!(bob.id > alice.id, "{name}: ids are assigned in order");
        assert_eq!(store.user_by_id("acme", alice.id).await.unwrap().as_ref(), Some(&alice), "{name}");
        assert_eq!(store.user_by_id("globex", alice.id).await.unwrap(), None, "{name}");
        assert_eq!(store.user_by_login("alice").await.unwrap().as_ref(), Some(&alice), "{name}");
        assert_eq!(store.user_by_login("bob@example.com").await.unwrap().as_ref(), Some(&bob), "{name}");
        assert_eq!(store.users_of("acme", None).await.unwrap(), std::slice::from_ref(&alice), "{name}");
        assert_eq!(store.users_of("acme", Some("bob")).await.unwrap(), [], "{name}");
        let demoted = UserRecord { profile: "user".into(), ..alice.clone() };
        assert!(!store.update_user("globex", demoted.clone()).await.unwrap(), "{name}");
        assert!(!store.delete_user("globex", alice.id).await.unwrap(), "{name}");
        assert_eq!(store.user_by_id("acme", alice.id).await.unwrap().unwrap().profile, "admin", "{name}: untouched");
        assert!(store.update_user("acme", demoted).await.unwrap(), "{name}");
        assert_eq!(store.user_by_id("acme", alice.id).await.unwrap().unwrap().profile, "user", "{name}");
        assert_eq!(store.count_users().await.unwrap(), 2, "{name}");
        assert!(store.delete_user("acme", alice.id).await.unwrap(), "{name}");
        assert_eq!(store.user_by_id("acme", alice.id).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn a_taken_user_name_or_email_is_a_conflict() {
    for Engine { name, store, .. } in &engines().await {
        for t in ["acme", "globex"] {
            store.ensure_tenant(t, 7).await.unwrap();
        }
        let alice = store.insert_user(user("alice", "acme")).await.unwrap();
        let again = store.insert_user(user("alice", "globex")).await.unwrap_err();
        assert!(matches!(again, StoreError::Conflict(_)), "{name}: names are unique across tenants: {again:?}");
        let carol = store.insert_user(user("carol", "acme")).await.unwrap();
        let stolen = UserRecord { email: alice.email.clone(), ..carol };
        let err = store.update_user("acme", stolen).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{name}: {err:?}");
    }
}

#[tokio::test]
async fn tokens_are_found_by_hash_and_deleted_only_by_their_tenant() {
    for Engine { name, store, .. } in &engines().await {
        for t in ["acme", "globex"] {
            store.ensure_tenant(t, 7).await.unwrap();
        }
        let token = |id: &str, ms| TokenRecord {
            id: id.into(),
            tenant: "acme".into(),
            name: "fakeiot".into(),
            scopes: "metrics:write".into(),
            token_hash: format!("hash-{id}"),
            created_ms: ms,
            created_by: "admin".into(),
        };
        store.insert_token(token("b", 2)).await.unwrap();
        store.insert_token(token("a", 1)).await.unwrap();
        assert_eq!(store.token_by_hash("hash-b").await.unwrap(), Some(token("b", 2)), "{name}");
        assert_eq!(store.token_by_hash("hash-z").await.unwrap(), None, "{name}");
        let ids: Vec<_> = store.tokens_of("acme").await.unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["a", "b"], "{name}: oldest first");
        assert!(store.tokens_of("globex").await.unwrap().is_empty(), "{name}");
        assert!(!store.delete_token("globex", "a").await.unwrap(), "{name}");
        assert!(store.delete_token("acme", "a").await.unwrap(), "{name}");
        assert_eq!(store.token_by_hash("hash-a").await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn the_catalog_is_saved_replaced_and_deleted_per_tenant() {
    for Engine { name, store, .. } in &engines().await {
        let device = |id: &str, label: &str| DeviceRow {
            id: id.into(),
            doc: json!({"id": id, "label": label, "templates": []}),
            secret_hash: Some(format!("secret-{label}")),
            templates: vec![],
        };
        let first = CatalogChange {
            new_templates: vec![(1, json!({"id": 1, "label": "sensor"})), (2, json!({"id": 2}))],
            new_devices: vec![device("d1", "one"), device("d2", "two")],
            ..CatalogChange::default()
        };
        store.save_catalog("acme", first).await.unwrap();
        store
            .save_catalog("globex", CatalogChange { new_devices: vec![device("d1", "theirs")], ..Default::default() })
            .await
            .unwrap();
        let second = CatalogChange {
            templates: vec![(1, json!({"id": 1, "label": "renamed"}))],
            remove_templates: vec![2],
            devices: vec![DeviceRow { secret_hash: None, ..device("d1", "changed") }],
            remove_devices: vec!["d2".into()],
            ..CatalogChange::default()
        };
        store.save_catalog("acme", second).await.unwrap();
        let rows = store.load_catalog().await.unwrap();
        assert_eq!(rows.templates, [("acme".into(), 1, json!({"id": 1, "label": "renamed"}))], "{name}");
        let changed = json!({"id": "d1", "label": "changed", "templates": []});
        let theirs = json!({"id": "d1", "label": "theirs", "templates": []});
        assert_eq!(
            rows.devices,
            [
                ("acme".into(), "d1".into(), changed.clone(), None),
                ("globex".into(), "d1".into(), theirs, Some("secret-theirs".into())),
            ],
            "{name}"
        );
        let one = store.catalog_device("acme", "d1").await.unwrap();
        assert_eq!(one, Some((changed, None)), "{name}");
        let theirs = store.catalog_device("globex", "d1").await.unwrap();
        assert_eq!(theirs.and_then(|t| t.1), Some("secret-theirs".into()), "{name}");
        assert_eq!(store.catalog_device("acme", "d2").await.unwrap(), None, "{name}: removed");
        assert_eq!(store.catalog_template("acme", 1).await.unwrap(), Some(json!({"id": 1, "label": "renamed"})));
        assert_eq!(store.catalog_template("acme", 2).await.unwrap(), None, "{name}: removed");
        assert_eq!(store.catalog_template("globex", 1).await.unwrap(), None, "{name}: another tenant's");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_never_handed_out_twice_by_any_node() {
    for engine in &engines().await {
        let (name, other) = (engine.name, engine.node().await);
        assert_eq!(engine.store.allocate_ids("acme", "attr", 3).await.unwrap(), 1, "{name}");
        assert_eq!(other.allocate_ids("acme", "attr", 1).await.unwrap(), 4, "{name}");
        assert_eq!(other.allocate_ids("globex", "attr", 1).await.unwrap(), 1, "{name}: per tenant");
        assert_eq!(engine.store.allocate_ids("acme", "template", 1).await.unwrap(), 1, "{name}: per counter");
        let (a, b) = (engine.store.clone(), other.clone());
        let many = |s: crate::SharedStore| async move {
            let mut got = Vec::new();
            for _ in 0..50 {
                got.push(s.allocate_ids("acme", "attr", 2).await.unwrap());
            }
            got
        };
        let (x, y) = tokio::join!(tokio::spawn(many(a)), tokio::spawn(many(b)));
        let mut all: Vec<i64> = x.unwrap().into_iter().chain(y.unwrap()).flat_map(|first| [first, first + 1]).collect();
        all.sort_unstable();
        assert_eq!(all, (5..205).collect::<Vec<_>>(), "{name}: 200 distinct ids, no gaps");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_change_that_no_longer_fits_is_refused_whole() {
    for engine in &engines().await {
        let (name, store, other) = (engine.name, &engine.store, engine.node().await);
        let device = |id: &str, templates: Vec<i64>| DeviceRow {
            id: id.into(),
            doc: json!({"id": id, "templates": templates}),
            secret_hash: None,
            templates,
        };
        let setup = CatalogChange {
            new_templates: vec![(1, json!({"id": 1})), (2, json!({"id": 2}))],
            new_devices: vec![device("d1", vec![1])],
            ..Default::default()
        };
        store.save_catalog("t", setup).await.unwrap();
        let refused = |change: CatalogChange| {
            let other = other.clone();
            async move {
                match other.save_catalog("t", change).await {
                    Err(StoreError::Catalog(c)) => c,
                    other => panic!("{name}: expected a conflict, got {other:?}"),
                }
            }
        };
        // Each refused change also carries a write that would have succeeded: it must not land.
        let bystander = || vec![(2, json!({"id": 2, "label": "must not land"}))];
        let taken =
            CatalogChange { templates: bystander(), new_devices: vec![device("d1", vec![])], ..Default::default() };
        assert_eq!(refused(taken).await, CatalogConflict::DeviceExists("d1".into()), "{name}");
        let gone =
            CatalogChange { templates: bystander(), devices: vec![device("nope", vec![])], ..Default::default() };
        assert_eq!(refused(gone).await, CatalogConflict::NoSuchDevice("nope".into()), "{name}");
        let no_template =
            CatalogChange { templates: bystander(), new_devices: vec![device("d2", vec![1, 9])], ..Default::default() };
        assert_eq!(refused(no_template).await, CatalogConflict::NoSuchTemplate(9), "{name}");
        let no_template = CatalogChange { templates: vec![(9, json!({}))], ..Default::default() };
        assert_eq!(refused(no_template).await, CatalogConflict::NoSuchTemplate(9), "{name}");
        let in_use = CatalogChange { templates: bystander(), remove_templates: vec![1], ..Default::default() };
        assert_eq!(
            refused(in_use).await,
            CatalogConflict::TemplateInUse { template: 1, device: "d1".into() },
            "{name}"
        );
        assert_eq!(store.catalog_template("t", 2).await.unwrap(), Some(json!({"id": 2})), "{name}: nothing landed");
        assert_eq!(store.catalog_device("t", "d2").await.unwrap(), None, "{name}: nothing landed");

        // Removing the device and its template in one change is fine.
        let both = CatalogChange { remove_devices: vec!["d1".into()], remove_templates: vec![1], ..Default::default() };
        other.save_catalog("t", both).await.unwrap();
        assert_eq!(store.catalog_template("t", 1).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn seats_count_distinct_users_and_cap_accounts() {
    for Engine { name, store, .. } in &engines().await {
        let login = |account: &str, user: &str| LoginRow {
            tenant: "acme".into(),
            account_id: account.into(),
            user_id: user.into(),
        };
        let batch = vec![login("a1", "u1"), login("a1", "u1"), login("a1", "u2"), login("a2", "u1"), login("a3", "u1")];
        let out = store.record_logins(batch, "free", 2).await.unwrap();
        let summary: Vec<_> = out
            .iter()
            .map(|o| match o {
                LoginOutcome::Recorded { account, new_user, new_account } => {
                    format!("{}:{}:{new_user}:{new_account}", account.account_id, account.users)
                }
                LoginOutcome::TooManyAccounts => "too many".into(),
            })
            .collect();
        assert_eq!(
            summary,
            ["a1:1:true:true", "a1:1:false:false", "a1:2:true:false", "a2:1:true:true", "too many"],
            "{name}"
        );
        let updated = store.set_plan("acme", "a1", "pro").await.unwrap().unwrap();
        assert_eq!((updated.plan.as_str(), updated.users), ("pro", 2), "{name}");
        assert_eq!(store.set_plan("acme", "nope", "pro").await.unwrap(), None, "{name}");
        assert_eq!(store.set_plan("globex", "a1", "pro").await.unwrap(), None, "{name}: another tenant's");
        assert_eq!(store.account("acme", "a1").await.unwrap(), Some(updated), "{name}");
        let ids: Vec<_> = store.accounts("acme").await.unwrap().into_iter().map(|a| a.account_id).collect();
        assert_eq!(ids, ["a1", "a2"], "{name}");
        assert!(store.accounts("globex").await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_login_batches_keep_seat_counts_exact() {
    for engine in &engines().await {
        let stores = [engine.store.clone(), engine.node().await];
        let tasks = (0..8).map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                let batch = (0..50)
                    .map(|u| LoginRow {
                        tenant: "acme".into(),
                        account_id: format!("a{}", u % 5),
                        user_id: format!("u{}", (u + i * 7) % 40),
                    })
                    .collect();
                store.record_logins(batch, "free", 3).await.unwrap()
            })
        });
        let outcomes: Vec<_> =
            futures_util::future::join_all(tasks).await.into_iter().flat_map(Result::unwrap).collect();
        let refused = outcomes.iter().filter(|o| matches!(o, LoginOutcome::TooManyAccounts)).count();
        let accounts = engine.store.accounts("acme").await.unwrap();
        assert_eq!(accounts.len(), 3, "{}: the cap holds across nodes", engine.name);
        assert_eq!(refused, 8 * 20, "{}: every login to a4 and a5 was refused", engine.name);
        for a in accounts {
            let recorded = outcomes
                .iter()
                .filter(|o| matches!(o, LoginOutcome::Recorded { account, new_user: true, .. } if account.account_id == a.account_id))
                .count();
            assert_eq!(a.users as usize, recorded, "{}: {} counts each new user once", engine.name, a.account_id);
        }
    }
}

#[tokio::test]
async fn history_is_written_queried_and_purged() {
    for Engine { name, store, .. } in &engines().await {
        let batch = (1..=5).map(|i| reading("d1", i * 1000, json!({"t": i, "s": "x"}))).collect();
        assert_eq!(store.write_history(batch).await.unwrap(), 10, "{name}");
        store.write_history(vec![reading("d2", 1, json!({"t": 99}))]).await.unwrap();

        let q = |newest_first, limit, from_ms, to_ms| HistoryQuery {
            newest_first,
            limit,
            from_ms,
            to_ms,
            ..query("d1", "t")
        };
        let ints = |pts: Vec<Point>| pts.into_iter().map(|p| p.value.as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!(ints(store.history(q(true, Some(3), None, None)).await.unwrap()), [5, 4, 3], "{name}");
        assert_eq!(ints(store.history(q(false, Some(2), None, None)).await.unwrap()), [1, 2], "{name}");
        assert_eq!(ints(store.history(q(false, None, Some(2000), Some(4000))).await.unwrap()), [2, 3, 4], "{name}");
        assert_eq!(store.history_attrs("t", "d1").await.unwrap(), ["s", "t"], "{name}");
        let latest = store.latest("t", "d1").await.unwrap();
        assert_eq!(latest.len(), 2, "{name}");
        assert_eq!((latest[1].attr.as_str(), latest[1].ts_ms, &latest[1].value), ("t", 5000, &json!(5)), "{name}");
        assert_eq!(store.purge_history("t", 3000).await.unwrap(), 4 + 1, "{name}");
        assert_eq!(ints(store.history(q(false, None, None, None)).await.unwrap()), [3, 4, 5], "{name}");
        // Another tenant's device with the same id sees nothing.
        let other = HistoryQuery { tenant: "u".into(), ..q(false, None, None, None) };
        assert!(store.history(other).await.unwrap().is_empty(), "{name}");
        assert!(store.latest("u", "d1").await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn readings_are_summed_up_in_time_buckets() {
    use crate::history::{Aggregate, Bucket};
    for Engine { name, store, .. } in &engines().await {
        // 30 readings 10 s apart (v = 0..29), a string among them, one before the epoch,
        // and two buckets of a string alone, written first (so into `history` on SQLite).
        let mut batch = vec![reading("d", 400_000, json!({"v": "late"})), reading("d", 460_000, json!({"v": "later"}))];
        batch.extend((0..30).map(|i| reading("d", i * 10_000, json!({"v": i}))));
        batch.push(reading("d", 5_000, json!({"v": "not a number"})));
        batch.push(reading("d", 290_001, json!({"v": "alone"})));
        batch.push(reading("d", -1, json!({"v": -7.5})));
        for chunk in batch.chunks(4) {
            store.write_history(chunk.to_vec()).await.unwrap();
        }
        let buckets = |q: HistoryQuery, agg| {
            let store = store.clone();
            async move { store.history_buckets(q, 60_000, agg).await.unwrap() }
        };
        let starts = |b: &[Bucket]| b.iter().map(|b| b.start_ms).collect::<Vec<_>>();
        let avg = buckets(query("d", "v"), Aggregate::Avg).await;
        assert_eq!(starts(&avg), [-60_000, 0, 60_000, 120_000, 180_000, 240_000], "{name}: floor, ascending");
        assert_eq!(avg[0].value, json!(-7.5), "{name}");
        assert_eq!((&avg[1].value, avg[1].count), (&json!(2.5), 6), "{name}: numbers only");
        assert_eq!((&avg[5].value, avg[5].count), (&json!(26.5), 6), "{name}");
        let count = buckets(query("d", "v"), Aggregate::Count).await;
        assert_eq!(
            count.iter().map(|b| b.value.clone()).collect::<Vec<_>>(),
            [json!(1), json!(7), json!(6), json!(6), json!(6), json!(7), json!(1), json!(1)],
            "{name}: every reading"
        );
        let max = buckets(query("d", "v"), Aggregate::Max).await;
        assert_eq!(max[2].value, json!(11.0), "{name}");
        let min = buckets(query("d", "v"), Aggregate::Min).await;
        assert_eq!(min[2].value, json!(6.0), "{name}");
        let sum = buckets(query("d", "v"), Aggregate::Sum).await;
        assert_eq!(sum[1].value, json!(15.0), "{name}");
        // Newest first, a limit on buckets, bounds on readings.
        let newest = HistoryQuery { newest_first: true, limit: Some(2), ..query("d", "v") };
        let counts = |b: &[Bucket]| b.iter().map(|b| (b.start_ms, b.count)).collect::<Vec<_>>();
        let avg = buckets(newest.clone(), Aggregate::Avg).await;
        assert_eq!(counts(&avg), [(240_000, 6), (180_000, 6)], "{name}: buckets without numbers skipped");
        let count = buckets(newest, Aggregate::Count).await;
        assert_eq!(counts(&count), [(420_000, 1), (360_000, 1)], "{name}");
        let oldest = HistoryQuery { limit: Some(2), ..query("d", "v") };
        assert_eq!(starts(&buckets(oldest, Aggregate::Max).await), [-60_000, 0], "{name}");
        let bounded = HistoryQuery { from_ms: Some(30_000), to_ms: Some(70_000), ..query("d", "v") };
        let b = buckets(bounded, Aggregate::Avg).await;
        assert_eq!((starts(&b), b[0].count, &b[0].value), (vec![0, 60_000], 3, &json!(4.0)), "{name}");
        // Only strings: no bucket to average, but something to count.
        store.write_history(vec![reading("d", 1_000, json!({"s": "x"}))]).await.unwrap();
        assert!(buckets(query("d", "s"), Aggregate::Avg).await.is_empty(), "{name}");
        assert_eq!(buckets(query("d", "s"), Aggregate::Count).await[0].value, json!(1), "{name}");
        assert!(buckets(query("nobody", "v"), Aggregate::Count).await.is_empty(), "{name}");
        let other = HistoryQuery { tenant: "u".into(), ..query("d", "v") };
        assert!(buckets(other, Aggregate::Count).await.is_empty(), "{name}: another tenant sees nothing");
    }
}

#[tokio::test]
async fn readings_of_one_millisecond_keep_their_order_and_values_their_form() {
    for Engine { name, store, .. } in &engines().await {
        let odd = json!({"nested": {"b": 1, "a": [1.5, null, "é"]}, "big": 12345678901234567_i64});
        store.write_history(vec![reading("d", 7, json!({"v": 1})), reading("d", 7, json!({"v": 2}))]).await.unwrap();
        store.write_history(vec![reading("d", 7, json!({"v": 3})), reading("d", 7, json!({"v": odd}))]).await.unwrap();
        let all = values(store.history(query("d", "v")).await.unwrap());
        assert_eq!(all, [json!(1), json!(2), json!(3), odd.clone()], "{name}: insertion order within one ms");
        let newest = HistoryQuery { newest_first: true, limit: Some(1), ..query("d", "v") };
        assert_eq!(values(store.history(newest).await.unwrap()), std::slice::from_ref(&odd), "{name}");
        assert_eq!(values(store.latest("t", "d").await.unwrap()), [odd], "{name}: latest is the last written");
    }
}

#[tokio::test]
async fn a_deleted_devices_history_is_gone_and_its_id_starts_afresh() {
    for Engine { name, store, .. } in &engines().await {
        store
            .write_history(vec![reading("gone", 1, json!({"a": 1})), reading("kept", 1, json!({"a": 2}))])
            .await
            .unwrap();
        let remove = CatalogChange { remove_devices: vec!["gone".into()], ..Default::default() };
        store.save_catalog("t", remove).await.unwrap();
        assert!(store.history_attrs("t", "gone").await.unwrap().is_empty(), "{name}");
        assert!(store.history(query("gone", "a")).await.unwrap().is_empty(), "{name}");
        assert!(store.latest("t", "gone").await.unwrap().is_empty(), "{name}");

        // A device created later with the same id does not see the old readings, even
        // before retention removed them, and its own readings are stored (the writer's
        // cache forgot the old series).
        store.write_history(vec![reading("gone", 5, json!({"a": 5}))]).await.unwrap();
        assert_eq!(values(store.history(query("gone", "a")).await.unwrap()), [json!(5)], "{name}");
        assert_eq!(store.purge_orphan_history().await.unwrap(), 1, "{name}: the old reading is removed by retention");
        assert_eq!(store.purge_orphan_history().await.unwrap(), 0, "{name}");
        assert_eq!(store.history(query("gone", "a")).await.unwrap().len(), 1, "{name}");
        assert_eq!(store.history(query("kept", "a")).await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_deleted_by_another_node_is_not_written_under_its_old_series() {
    for engine in &engines().await {
        let (writer, other) = (engine.store.clone(), engine.node().await);
        writer.write_history(vec![reading("d", 1, json!({"a": 1}))]).await.unwrap();
        assert_eq!(writer.series_cached(), 1);
        // The other node deletes the device: this node's cache still names its series.
        other
            .save_catalog("t", CatalogChange { remove_devices: vec!["d".into()], ..Default::default() })
            .await
            .unwrap();
        // Through the history writer thread's path this time (the first write took the async one).
        let w = writer.clone();
        tokio::task::spawn_blocking(move || w.write_history_blocking(&[reading("d", 2, json!({"a": 2}))], None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            values(other.history(query("d", "a")).await.unwrap()),
            [json!(2)],
            "{}: the reading went to a new series, visible to every node",
            engine.name
        );
    }
}

#[tokio::test]
async fn series_without_readings_are_purged_and_can_come_back() {
    for Engine { name, store, .. } in &engines().await {
        store.write_history(vec![reading("d", 1, json!({"once": 1, "always": 1}))]).await.unwrap();
        store.write_history(vec![reading("d", 10_000, json!({"always": 2}))]).await.unwrap();
        store.purge_history("t", 5_000).await.unwrap();
        assert_eq!(store.purge_empty_series().await.unwrap(), 1, "{name}");
        assert_eq!(store.history_attrs("t", "d").await.unwrap(), ["always"], "{name}");
        // The label may be sent again: the writer must not reuse the purged series id.
        store.write_history(vec![reading("d", 20_000, json!({"once": 3}))]).await.unwrap();
        assert_eq!(store.history(query("d", "once")).await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn the_series_cache_is_bounded_and_eviction_loses_nothing() {
    for Engine { name, store, .. } in &engines().await {
        store.set_series_cache_limit(10);
        for round in 0..3 {
            let batch = (0..8).map(|d| reading(&format!("d{d}"), round, json!({"a": round, "b": d}))).collect();
            store.write_history(batch).await.unwrap();
            assert!(store.series_cached() <= 10, "{name}: {} series cached", store.series_cached());
        }
        for d in 0..8 {
            let vals = store.history(query(&format!("d{d}"), "a")).await.unwrap();
            assert_eq!(vals.len(), 3, "{name}: device d{d} kept every reading across evictions");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_several_nodes_create_each_series_once() {
    for engine in &engines().await {
        let nodes = [engine.store.clone(), engine.node().await, engine.node().await];
        let writes = (0..12).map(|i| {
            let store = nodes[i % 3].clone();
            // Every batch names the same new series, in a different order.
            let devices: Vec<String> = (0..20).map(|d| format!("d{}", (d * 7 + i) % 20)).collect();
            tokio::spawn(async move {
                let batch = devices.iter().map(|d| reading(d, i as i64, json!({"x": i, "y": i}))).collect();
                store.write_history(batch).await
            })
        });
        for result in futures_util::future::join_all(writes).await {
            assert_eq!(result.unwrap().unwrap(), 40, "{}", engine.name);
        }
        for d in 0..20 {
            let attrs = engine.store.history_attrs("t", &format!("d{d}")).await.unwrap();
            assert_eq!(attrs, ["x", "y"], "{}", engine.name);
            assert_eq!(engine.store.history(query(&format!("d{d}"), "x")).await.unwrap().len(), 12, "{}", engine.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_write_works_from_a_thread_of_its_own() {
    for engine in &engines().await {
        let store = engine.store.clone();
        let n =
            std::thread::spawn(move || store.write_history_blocking(&[reading("d", 1, json!({"a": 1, "b": 2}))], None))
                .join()
                .unwrap()
                .unwrap();
        assert_eq!(n, 2, "{}", engine.name);
        assert_eq!(engine.store.latest("t", "d").await.unwrap().len(), 2, "{}", engine.name);
    }
}

#[test]
fn sqlite_is_always_among_the_engines() {
    let engine = testing::Engine::sqlite();
    assert_eq!(engine.name, "sqlite");
    assert!(engine.url().starts_with("sqlite://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_written_once_and_every_node_reads_the_first() {
    for engine in &engines().await {
        assert_eq!(engine.store.secret("jwt").await.unwrap(), None, "{}", engine.name);
        let nodes = [engine.store.clone(), engine.node().await, engine.node().await, engine.node().await];
        let starts = nodes.iter().enumerate().map(|(i, store)| {
            let store = store.clone();
            tokio::spawn(async move { store.secret_or_insert("jwt", vec![i as u8; 32]).await.unwrap() })
        });
        let agreed: Vec<Vec<u8>> =
            futures_util::future::join_all(starts).await.into_iter().map(Result::unwrap).collect();
        assert!(agreed.iter().all(|s| *s == agreed[0]), "{}: every node got one value: {agreed:?}", engine.name);
        assert_eq!(engine.store.secret("jwt").await.unwrap(), Some(agreed[0].clone()), "{}", engine.name);
        let later = engine.store.secret_or_insert("jwt", b"another".to_vec()).await.unwrap();
        assert_eq!(later, agreed[0], "{}: never replaced", engine.name);
        assert_eq!(engine.reopen().await.secret("jwt").await.unwrap(), Some(later), "{}: kept", engine.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_delivered_twice_is_stored_once() {
    for engine in &engines().await {
        let write = |batch: Vec<Arc<DeviceData>>, ids: Vec<u128>| {
            let store = engine.store.clone();
            tokio::task::spawn_blocking(move || store.write_history_blocking(&batch, Some(&ids)))
        };
        let one = |ts: i64| reading("d", ts, json!({"a": ts, "b": ts}));
        assert_eq!(write(vec![one(1), one(2)], vec![11, 12]).await.unwrap().unwrap(), 4, "{}", engine.name);
        // A node died before acknowledging 12: it comes again, with a new one.
        assert_eq!(write(vec![one(2), one(3)], vec![12, 13]).await.unwrap().unwrap(), 2, "{}", engine.name);
        let a = values(engine.store.history(query("d", "a")).await.unwrap());
        assert_eq!(a, [json!(1), json!(2), json!(3)], "{}: each reading once", engine.name);
        // Without ids (a bus that delivers once) nothing is skipped.
        let store = engine.store.clone();
        tokio::task::spawn_blocking(move || store.write_history_blocking(&[one(4), one(4)], None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(engine.store.history(query("d", "a")).await.unwrap().len(), 5, "{}", engine.name);
        // Ids are kept for a while, then forgotten.
        assert_eq!(engine.store.purge_ingested(crate::now_ms() - 60_000).await.unwrap(), 0, "{}", engine.name);
        assert_eq!(engine.store.purge_ingested(crate::now_ms() + 1).await.unwrap(), 3, "{}", engine.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_are_shared_by_nodes_bounded_and_purged() {
    use crate::sessions::SessionRecord;
    for engine in &engines().await {
        let (name, store, other) = (engine.name, &engine.store, engine.node().await);
        let session = |id: &str, tenant: &str, user_id: i64, seen: i64| SessionRecord {
            id_hash: id.into(),
            tenant: tenant.into(),
            user_id,
            username: format!("user{user_id}"),
            profile: "admin".into(),
            csrf: format!("csrf-{id}"),
            created_ms: 1_000,
            last_seen_ms: seen,
        };
        store.insert_session(session("a", "acme", 1, 1_000), 3).await.unwrap();
        assert_eq!(other.session("a").await.unwrap(), Some(session("a", "acme", 1, 1_000)), "{name}: another node");
        other.touch_session("a", 5_000).await.unwrap();
        store.touch_session("a", 4_000).await.unwrap(); // an older touch does not go back
        assert_eq!(store.session("a").await.unwrap().unwrap().last_seen_ms, 5_000, "{name}");

        for (id, seen) in [("b", 2_000), ("c", 3_000), ("d", 6_000)] {
            store.insert_session(session(id, "acme", 2, seen), 3).await.unwrap();
        }
        assert_eq!(store.session("b").await.unwrap(), None, "{name}: the least recently seen went beyond 3");
        store.insert_session(session("e", "globex", 1, 6_000), 10).await.unwrap();
        assert_eq!(other.delete_user_sessions("acme", 1).await.unwrap(), 1, "{name}: not globex's user 1");
        assert_eq!(store.session("a").await.unwrap(), None, "{name}");
        other.delete_session("c").await.unwrap();
        assert_eq!(store.session("c").await.unwrap(), None, "{name}");
        // d (seen 6000) and e remain; an idle cut at 6001 takes both, one on age alone keeps them.
        assert_eq!(store.purge_sessions(0, 500).await.unwrap(), 0, "{name}");
        assert_eq!(store.purge_sessions(6_001, 0).await.unwrap(), 2, "{name}");
    }
}

#[tokio::test]
async fn a_stream_ticket_is_taken_once_by_any_node_before_it_expires() {
    use crate::tickets::TicketRecord;
    for engine in &engines().await {
        let (name, store, other) = (engine.name, &engine.store, engine.node().await);
        let ticket = |hash: &str, tenant: &str, user_id: i64, expires_ms: i64| TicketRecord {
            hash: hash.into(),
            tenant: tenant.into(),
            user_id,
            username: format!("user{user_id}"),
            expires_ms,
        };
        assert!(store.insert_ticket(ticket("a", "acme", 1, 61_000), 1_000, 2).await.unwrap(), "{name}");
        assert_eq!(other.take_ticket("a", 2_000).await.unwrap(), Some(ticket("a", "acme", 1, 61_000)), "{name}");
        assert_eq!(store.take_ticket("a", 2_000).await.unwrap(), None, "{name}: taken once");

        // Expired: refused, and gone.
        assert!(store.insert_ticket(ticket("b", "acme", 1, 61_000), 1_000, 2).await.unwrap(), "{name}");
        assert_eq!(other.take_ticket("b", 61_000).await.unwrap(), None, "{name}: expired");

        // At most 2 unexpired per user; another user or tenant has its own count; an
        // expired ticket no longer counts.
        assert!(store.insert_ticket(ticket("c", "acme", 1, 61_000), 1_000, 2).await.unwrap(), "{name}");
        assert!(store.insert_ticket(ticket("d", "acme", 1, 5_000), 1_000, 2).await.unwrap(), "{name}");
        assert!(!other.insert_ticket(ticket("e", "acme", 1, 61_000), 1_000, 2).await.unwrap(), "{name}: over 2");
        assert!(store.insert_ticket(ticket("f", "acme", 2, 61_000), 1_000, 2).await.unwrap(), "{name}");
        assert!(store.insert_ticket(ticket("g", "globex", 1, 61_000), 1_000, 2).await.unwrap(), "{name}");
        assert!(other.insert_ticket(ticket("h", "acme", 1, 61_000), 6_000, 2).await.unwrap(), "{name}: d expired");
        assert_eq!(store.take_ticket("d", 1_000).await.unwrap(), None, "{name}: purged on insert");

        // Many takes of one ticket at once, on two handles: exactly one wins.
        let takes = (0..16).map(|i| {
            let s = if i % 2 == 0 { store.clone() } else { other.clone() };
            async move { s.take_ticket("c", 2_000).await.unwrap() }
        });
        let won = futures_util::future::join_all(takes).await.into_iter().flatten().count();
        assert_eq!(won, 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_are_kept_per_tenant_and_user_and_shared_by_nodes() {
    use crate::dashboards::DashboardRecord;
    let layout = |text: &str, updated_ms: i64| DashboardRecord { layout: text.into(), updated_ms };
    for engine in &engines().await {
        let (name, store, other) = (engine.name, &engine.store, engine.node().await);
        assert_eq!(store.dashboard("acme", 1).await.unwrap(), None, "{name}: none saved yet");
        store.save_dashboard("acme", 1, layout(r#"{"widgets":[]}"#, 10)).await.unwrap();
        store.save_dashboard("globex", 1, layout("globex's user 1", 11)).await.unwrap();
        store.save_dashboard("acme", 2, layout("acme's user 2", 12)).await.unwrap();
        assert_eq!(other.dashboard("acme", 1).await.unwrap(), Some(layout(r#"{"widgets":[]}"#, 10)), "{name}");

        // Saving again replaces the layout, on any node; the others' stay.
        other.save_dashboard("acme", 1, layout("replaced, é ✓", 20)).await.unwrap();
        assert_eq!(store.dashboard("acme", 1).await.unwrap(), Some(layout("replaced, é ✓", 20)), "{name}");
        assert_eq!(store.dashboard("globex", 1).await.unwrap(), Some(layout("globex's user 1", 11)), "{name}");

        assert!(other.delete_dashboard("acme", 1).await.unwrap(), "{name}");
        assert!(!store.delete_dashboard("acme", 1).await.unwrap(), "{name}: already gone");
        assert_eq!(store.dashboard("acme", 1).await.unwrap(), None, "{name}");
        assert_eq!(store.dashboard("acme", 2).await.unwrap(), Some(layout("acme's user 2", 12)), "{name}");
        assert_eq!(store.dashboard("globex", 1).await.unwrap(), Some(layout("globex's user 1", 11)), "{name}");
    }
}

#[tokio::test]
async fn certificates_are_kept_per_tenant_listed_owned_and_revoked_once() {
    use crate::certificates::{CertificateFilter, CertificateRecord};
    for engine in &engines().await {
        let (name, store, other) = (engine.name, &engine.store, engine.node().await);
        let cert = |fp: &str, tenant: &str, device: Option<&str>, created_ms: i64| CertificateRecord {
            fingerprint: fp.into(),
            tenant: tenant.into(),
            device: device.map(str::to_string),
            application: None,
            pem: format!("pem of {fp}"),
            serial: format!("serial-{fp}"),
            not_after_ms: 10_000,
            created_ms,
            revoked_ms: None,
            issuer: None,
            auto_registered: false,
        };
        assert!(store.insert_certificate(cert("AA", "acme", Some("d1"), 1)).await.unwrap());
        assert!(store.insert_certificate(cert("BB", "acme", None, 2)).await.unwrap());
        assert!(store.insert_certificate(cert("CC", "globex", Some("d1"), 3)).await.unwrap());
        assert!(!store.insert_certificate(cert("AA", "globex", None, 4)).await.unwrap(), "{name}: one fingerprint");
        let same_serial = CertificateRecord { serial: "serial-AA".into(), ..cert("DD", "acme", None, 4) };
        assert!(!store.insert_certificate(same_serial.clone()).await.unwrap(), "{name}: one serial per issuer");
        let other_issuer = CertificateRecord { issuer: Some("CA".into()), ..same_serial };
        assert!(store.insert_certificate(other_issuer).await.unwrap(), "{name}: another issuer's serial");
        assert!(store.revoke_certificate("acme", "DD", 400).await.unwrap().is_some(), "{name}");

        assert_eq!(other.certificate("acme", "AA").await.unwrap(), Some(cert("AA", "acme", Some("d1"), 1)), "{name}");
        assert_eq!(other.certificate("globex", "AA").await.unwrap(), None, "{name}: tenant isolation");
        assert_eq!(other.certificate_any("CC").await.unwrap().unwrap().tenant, "globex", "{name}");

        let all = CertificateFilter::default();
        let page = store.certificates("acme", &all, 0, 1).await.unwrap();
        assert_eq!((page.total, page.certificates[0].fingerprint.as_str()), (2, "BB"), "{name}: newest first");
        let page = store.certificates("acme", &all, 1, 1).await.unwrap();
        assert_eq!(page.certificates[0].fingerprint, "AA", "{name}: page 1");
        let d1 = CertificateFilter { device: Some("d1".into()), ..CertificateFilter::default() };
        assert_eq!(store.certificates("acme", &d1, 0, 10).await.unwrap().total, 1, "{name}");

        assert!(other.set_certificate_owner("acme", "BB", Some("d2"), None).await.unwrap(), "{name}");
        assert!(!other.set_certificate_owner("globex", "BB", Some("d2"), None).await.unwrap(), "{name}");
        assert_eq!(store.certificate("acme", "BB").await.unwrap().unwrap().device.as_deref(), Some("d2"), "{name}");

        let revoked = other.revoke_certificate("acme", "AA", 500).await.unwrap().unwrap();
        assert_eq!(revoked.revoked_ms, Some(500), "{name}");
        let again = store.revoke_certificate("acme", "AA", 900).await.unwrap().unwrap();
        assert_eq!(again.revoked_ms, Some(500), "{name}: revoked once");
        assert_eq!(store.revoke_certificate("globex", "BB", 900).await.unwrap(), None, "{name}");
        assert!(!store.set_certificate_owner("acme", "AA", Some("d3"), None).await.unwrap(), "{name}: revoked");
        assert_eq!(store.certificates("acme", &all, 0, 10).await.unwrap().total, 1, "{name}: valid ones listed");
        let with_revoked = CertificateFilter { revoked: true, ..CertificateFilter::default() };
        assert_eq!(store.certificates("acme", &with_revoked, 0, 10).await.unwrap().total, 3, "{name}");
        assert_eq!(
            store.revoked_certificates(1_000).await.unwrap(),
            vec![("serial-AA".to_string(), 500)],
            "{name}: Ingot's own only"
        );
        assert!(store.revoked_certificates(10_000).await.unwrap().is_empty(), "{name}: expired ones leave the CRL");
    }
}

#[tokio::test]
async fn trusted_cas_are_per_tenant_bounded_and_take_their_certificates_with_them() {
    use crate::certificates::{CertificateRecord, TrustedCaInsert, TrustedCaRecord};
    for engine in &engines().await {
        let (name, store, other) = (engine.name, &engine.store, engine.node().await);
        let ca = |tenant: &str, fp: &str, created_ms: i64| TrustedCaRecord {
            tenant: tenant.into(),
            fingerprint: fp.into(),
            pem: format!("pem of {fp}"),
            subject_dn: format!("CN={fp}"),
            not_before_ms: 0,
            not_after_ms: 10_000,
            allow_auto_registration: false,
            created_ms,
            modified_ms: created_ms,
        };
        assert_eq!(store.insert_trusted_ca(ca("acme", "C1", 1), 2).await.unwrap(), TrustedCaInsert::Inserted);
        assert_eq!(other.insert_trusted_ca(ca("acme", "C1", 2), 2).await.unwrap(), TrustedCaInsert::Exists, "{name}");
        assert_eq!(store.insert_trusted_ca(ca("globex", "C1", 3), 2).await.unwrap(), TrustedCaInsert::Inserted);
        assert_eq!(store.insert_trusted_ca(ca("acme", "C2", 4), 2).await.unwrap(), TrustedCaInsert::Inserted);
        assert_eq!(store.insert_trusted_ca(ca("acme", "C3", 5), 2).await.unwrap(), TrustedCaInsert::Full, "{name}");

        assert_eq!(other.trusted_ca("acme", "C1").await.unwrap(), Some(ca("acme", "C1", 1)), "{name}");
        assert_eq!(other.trusted_ca("initech", "C1").await.unwrap(), None, "{name}: tenant isolation");
        let page = other.trusted_cas("acme", 0, 1).await.unwrap();
        assert_eq!((page.total, page.cas[0].fingerprint.as_str()), (2, "C1"), "{name}: oldest first");
        assert_eq!(other.trusted_cas("acme", 1, 1).await.unwrap().cas[0].fingerprint, "C2", "{name}");
        assert_eq!(other.all_trusted_cas().await.unwrap().len(), 3, "{name}: every tenant's");

        assert!(other.set_trusted_ca_auto_registration("acme", "C1", true, 50).await.unwrap(), "{name}");
        assert!(!other.set_trusted_ca_auto_registration("initech", "C1", true, 50).await.unwrap(), "{name}");
        let changed = store.trusted_ca("acme", "C1").await.unwrap().unwrap();
        assert_eq!((changed.allow_auto_registration, changed.modified_ms), (true, 50), "{name}");

        let cert = |fp: &str, tenant: &str, issuer: &str| CertificateRecord {
            fingerprint: fp.into(),
            tenant: tenant.into(),
            device: Some("d1".into()),
            application: None,
            pem: String::new(),
            serial: fp.into(),
            not_after_ms: 10_000,
            created_ms: 1,
            revoked_ms: None,
            issuer: Some(issuer.into()),
            auto_registered: true,
        };
        for (fp, tenant, issuer) in [("E1", "acme", "C1"), ("E2", "acme", "C2"), ("E3", "globex", "C1")] {
            assert!(store.insert_certificate(cert(fp, tenant, issuer)).await.unwrap(), "{name}");
        }
        assert_eq!(other.certificate("acme", "E1").await.unwrap(), Some(cert("E1", "acme", "C1")), "{name}");
        let gone = other.delete_trusted_ca("acme", "C1").await.unwrap().unwrap();
        assert_eq!(gone, vec![cert("E1", "acme", "C1")], "{name}: its certificates, not another tenant's");
        assert_eq!(store.certificate("acme", "E1").await.unwrap(), None, "{name}");
        assert!(store.certificate("globex", "E3").await.unwrap().is_some(), "{name}");
        assert!(store.certificate("acme", "E2").await.unwrap().is_some(), "{name}");
        assert_eq!(store.delete_trusted_ca("acme", "C1").await.unwrap(), None, "{name}: once");
        assert_eq!(store.insert_trusted_ca(ca("acme", "C3", 6), 2).await.unwrap(), TrustedCaInsert::Inserted, "{name}");
    }
}

#[tokio::test]
async fn flows_are_kept_per_tenant_bounded_updated_and_removed() {
    use crate::flows::FlowRecord;
    for engine in &engines().await {
        let (name, store, other) = (engine.name, &engine.store, engine.node().await);
        let flow = |tenant: &str, id: &str, created_ms: i64| FlowRecord {
            tenant: tenant.into(),
            id: id.into(),
            label: format!("flow {id}"),
            enabled: true,
            trace: false,
            flow: "[]".into(),
            created_ms,
            updated_ms: created_ms,
        };
        assert!(store.insert_flow(flow("acme", "f2", 2), 2).await.unwrap(), "{name}");
        assert!(other.insert_flow(flow("acme", "f1", 1), 2).await.unwrap(), "{name}");
        assert!(!store.insert_flow(flow("acme", "f3", 3), 2).await.unwrap(), "{name}: at most 2");
        assert!(store.insert_flow(flow("globex", "f1", 4), 2).await.unwrap(), "{name}: ids are per tenant");
        let ids = |v: Vec<FlowRecord>| v.into_iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(ids(other.flows("acme").await.unwrap()), ["f1", "f2"], "{name}: oldest first");
        assert_eq!(other.all_flows().await.unwrap().len(), 3, "{name}");
        assert_eq!(other.flow("initech", "f1").await.unwrap(), None, "{name}: tenant isolation");
        let changed = FlowRecord {
            label: "renamed".into(),
            enabled: false,
            trace: true,
            flow: "[1]".into(),
            updated_ms: 9,
            ..flow("acme", "f1", 1)
        };
        assert!(other.update_flow(changed.clone()).await.unwrap(), "{name}");
        assert!(!other.update_flow(flow("initech", "f1", 1)).await.unwrap(), "{name}");
        assert_eq!(store.flow("acme", "f1").await.unwrap(), Some(changed.clone()), "{name}");
        assert_eq!(store.delete_flow("acme", "f1").await.unwrap(), Some(changed), "{name}");
        assert_eq!(store.delete_flow("acme", "f1").await.unwrap(), None, "{name}");
        assert_eq!(other.delete_flows("acme").await.unwrap(), 1, "{name}");
        assert_eq!(ids(store.flows("globex").await.unwrap()), ["f1"], "{name}");
    }
}

#[tokio::test]
async fn the_flow_backlog_keeps_order_across_nodes_and_trims() {
    for engine in &engines().await {
        let (name, store, other) = (engine.name, &engine.store, engine.node().await);
        assert_eq!(store.backlog_len().await.unwrap(), 0, "{name}");
        let reading = |tenant: &str, n: u32| (tenant.to_string(), format!("d{n}"), format!(r#"{{"n":{n}}}"#));
        store.push_backlog((0..3).map(|n| reading("acme", n)).collect()).await.unwrap();
        store.push_backlog(vec![reading("globex", 3)]).await.unwrap();
        store.push_backlog(Vec::new()).await.unwrap();
        let pending = other.backlog(10).await.unwrap();
        let seen: Vec<(&str, &str)> = pending.iter().map(|p| (p.tenant.as_str(), p.reading.as_str())).collect();
        assert_eq!(
            seen,
            [("acme", r#"{"n":0}"#), ("acme", r#"{"n":1}"#), ("acme", r#"{"n":2}"#), ("globex", r#"{"n":3}"#)],
            "{name}: in the order pushed"
        );
        assert!(pending.windows(2).all(|w| w[0].id < w[1].id), "{name}");
        assert_eq!(other.backlog(2).await.unwrap(), pending[..2], "{name}: the oldest first");
        other.trim_backlog(pending[1].id).await.unwrap();
        assert_eq!(store.backlog(10).await.unwrap(), pending[2..], "{name}");
        assert_eq!(store.backlog_len().await.unwrap(), 2, "{name}");
        store.trim_backlog(pending[3].id).await.unwrap();
        store.push_backlog(vec![reading("acme", 4)]).await.unwrap();
        let after = store.backlog(10).await.unwrap();
        assert!(after.len() == 1 && after[0].id > pending[3].id, "{name}: ids are never reused: {after:?}");
    }
}

#[tokio::test]
async fn market_users_offers_and_bids_keep_the_auction_rules() {
    use crate::market::{Acceptance, BidPlacement, BidRecord, MarketUser, OfferOrder, OfferRecord};
    for engine in &engines().await {
        let (name, store, other) = (engine.name, &engine.store, engine.node().await);
        let user = |n: &str| MarketUser { username: n.into(), password_hash: "h".into(), created_ms: 1 };
        assert!(store.insert_market_user(user("ana")).await.unwrap(), "{name}");
        assert!(!other.insert_market_user(user("ana")).await.unwrap(), "{name}: a name once");
        assert_eq!(other.market_user("ana").await.unwrap(), Some(user("ana")), "{name}");
        assert_eq!(other.market_user("bob").await.unwrap(), None, "{name}");

        let offer = |id: &str, title: &str, price: f64, go_live_ms: i64, lifetime_s: i64| OfferRecord {
            id: id.into(),
            title: title.into(),
            start_price: price,
            bid_price: price,
            go_live_ms,
            lifetime_s,
            photo_url: String::new(),
            created_by: "ana".into(),
            sold: false,
            winning_bid: None,
        };
        store.insert_offer(offer("o1", "b", 10.0, 1_000, 0)).await.unwrap();
        store.insert_offer(offer("o2", "a", 20.0, 2_000, 1)).await.unwrap();
        let ids = |v: Vec<OfferRecord>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(ids(other.offers(OfferOrder::GoLive, 0, 10).await.unwrap()), ["o2", "o1"], "{name}");
        assert_eq!(ids(other.offers(OfferOrder::Title, 0, 10).await.unwrap()), ["o2", "o1"], "{name}");
        assert_eq!(ids(other.offers(OfferOrder::BidPrice, 1, 1).await.unwrap()), ["o1"], "{name}: a page");

        let bid = |id: &str, offer: &str, who: &str, price: f64| BidRecord {
            id: id.into(),
            offer_id: offer.into(),
            username: who.into(),
            bid_price: price,
            ts_ms: 3_000,
            winning: false,
            accepted: false,
        };
        let placed = |p: &BidPlacement| match p {
            BidPlacement::Placed(b) => (b.id.clone(), b.winning),
            other => panic!("{name}: not placed: {other:?}"),
        };
        // In one batch, in order: the first bid at the start price wins, an equal one
        // does not, a higher one does, a lower one does not.
        let batch = vec![
            bid("b1", "o1", "bob", 10.0),
            bid("b2", "o1", "cid", 10.0),
            bid("b3", "o1", "cid", 15.5),
            bid("b4", "o1", "bob", 12.0),
            bid("b5", "o1", "bob", 9.99),
            bid("b6", "o1", "ana", 99.0),
            bid("b7", "nope", "bob", 99.0),
            bid("b8", "o2", "bob", 30.0),
        ];
        let got = store.place_bids(batch, 3_000).await.unwrap();
        let winners: Vec<(String, bool)> = got[..4].iter().map(placed).collect();
        let want = [("b1", true), ("b2", false), ("b3", true), ("b4", false)].map(|(i, w)| (i.to_string(), w));
        assert_eq!(winners, want, "{name}");
        assert_eq!(got[4], BidPlacement::BelowStart(10.0), "{name}");
        assert_eq!(got[5], BidPlacement::OwnOffer, "{name}");
        assert_eq!(got[6], BidPlacement::NoSuchOffer, "{name}");
        assert_eq!(got[7], BidPlacement::Expired, "{name}: o2 took bids for 1 s from 2,000 ms");
        let o1 = other.offer("o1").await.unwrap().unwrap();
        assert_eq!((o1.bid_price, o1.winning_bid.as_deref()), (15.5, Some("b3")), "{name}");
        let bids = other.bids("o1", 0, 10).await.unwrap();
        let flags: Vec<(&str, bool)> = bids.iter().map(|b| (b.id.as_str(), b.winning)).collect();
        assert_eq!(flags, [("b1", false), ("b2", false), ("b3", true), ("b4", false)], "{name}: one winner");
        // A later batch, from the other node: higher wins.
        let got = other.place_bids(vec![bid("b9", "o1", "bob", 16.0)], 4_000).await.unwrap();
        assert_eq!(placed(&got[0]), ("b9".to_string(), true), "{name}");
        assert!(!store.bid("b3").await.unwrap().unwrap().winning, "{name}");

        // Only the seller accepts; then the offer is sold and takes no bid.
        assert_eq!(store.accept_bid("b9", "bob").await.unwrap(), Acceptance::NotTheSeller, "{name}");
        assert_eq!(store.accept_bid("zz", "ana").await.unwrap(), Acceptance::NoSuchBid, "{name}");
        let Acceptance::Accepted(accepted) = other.accept_bid("b4", "ana").await.unwrap() else {
            panic!("{name}: the seller accepts")
        };
        assert!(accepted.accepted && accepted.id == "b4", "{name}");
        assert_eq!(store.accept_bid("b9", "ana").await.unwrap(), Acceptance::Sold, "{name}");
        assert!(store.offer("o1").await.unwrap().unwrap().sold, "{name}");
        let got = store.place_bids(vec![bid("b10", "o1", "cid", 50.0)], 5_000).await.unwrap();
        assert_eq!(got, [BidPlacement::Sold], "{name}");
    }
}

#[tokio::test]
async fn load_test_results_merge_per_second_and_stay_in_their_tenant() {
    use crate::loadtests::{LoadBucket, WHOLE_JOB};
    fn b(second: i64, count: i64, errors: i64, updated_ms: i64) -> LoadBucket {
        LoadBucket {
            second,
            count,
            errors,
            p50_us: count,
            p90_us: count,
            p99_us: count,
            max_us: count,
            latency: count.to_le_bytes().to_vec(),
            updated_ms,
        }
    }
    // Stands for the caller's histogram merge: adds counts and the blobs' numbers.
    fn add(old: &LoadBucket, new: &LoadBucket) -> Result<LoadBucket, String> {
        let n = |l: &[u8]| l.try_into().map(i64::from_le_bytes).map_err(|_| "not 8 bytes".to_string());
        let sum = n(&old.latency)? + n(&new.latency)?;
        Ok(LoadBucket {
            latency: sum.to_le_bytes().to_vec(),
            ..b(new.second, old.count + new.count, old.errors + new.errors, new.updated_ms)
        })
    }
    for engine in &engines().await {
        let (name, store) = (engine.name, &engine.store);
        store
            .add_load_results("t", "smoke", vec![b(100, 2, 0, 1), b(101, 3, 1, 1), b(WHOLE_JOB, 5, 1, 1)], add)
            .await
            .unwrap();
        // A second agent's push: its seconds merge into the same rows.
        store
            .add_load_results("t", "smoke", vec![b(101, 4, 0, 2), b(102, 1, 1, 2), b(WHOLE_JOB, 5, 1, 2)], add)
            .await
            .unwrap();
        store.add_load_results("t", "older", vec![b(50, 1, 0, 0), b(WHOLE_JOB, 1, 0, 0)], add).await.unwrap();
        store.add_load_results("u", "smoke", vec![b(100, 9, 9, 3), b(WHOLE_JOB, 9, 9, 3)], add).await.unwrap();

        let series = store.load_series("t", "smoke", 0, 100).await.unwrap();
        let counts: Vec<_> = series.iter().map(|s| (s.second, s.count, s.errors, s.latency.clone())).collect();
        assert_eq!(
            counts,
            [
                (100, 2, 0, 2i64.to_le_bytes().to_vec()),
                (101, 7, 1, 7i64.to_le_bytes().to_vec()),
                (102, 1, 1, 1i64.to_le_bytes().to_vec())
            ],
            "{name}"
        );
        assert_eq!(store.load_series("t", "smoke", 101, 1).await.unwrap().len(), 1, "{name}: since and limit");
        let jobs = store.load_jobs("t", 10).await.unwrap();
        let summary: Vec<_> =
            jobs.iter().map(|j| (j.job.as_str(), j.first_second, j.last_second, j.totals.count)).collect();
        assert_eq!(summary, [("smoke", 100, 102, 10), ("older", 50, 50, 1)], "{name}: newest first");
        assert_eq!(store.load_job("t", "smoke").await.unwrap().unwrap().totals.errors, 2, "{name}");
        assert_eq!(store.load_job("t", "nope").await.unwrap(), None, "{name}");
        assert_eq!(store.load_job("u", "smoke").await.unwrap().unwrap().totals.count, 9, "{name}: tenants apart");
        assert!(store.delete_load_job("t", "smoke").await.unwrap(), "{name}");
        assert!(!store.delete_load_job("t", "smoke").await.unwrap(), "{name}");
        assert_eq!(store.load_series("u", "smoke", 0, 10).await.unwrap().len(), 1, "{name}: the other tenant's stays");

        // A merge that fails rolls the whole push back.
        let refuse = |_: &LoadBucket, _: &LoadBucket| Err("no".to_string());
        let err = store.add_load_results("t", "older", vec![b(60, 1, 0, 5), b(50, 1, 0, 5)], refuse).await;
        assert!(err.is_err(), "{name}");
        assert_eq!(store.load_series("t", "older", 0, 10).await.unwrap().len(), 1, "{name}: nothing of it kept");
    }
}
