//! The dashboard page's layout (dojot GUI, chapter 9.7): the widgets a user placed, in
//! order — line charts of some attributes of a device, and tiles showing the latest value
//! of one — kept per user in the store ([`store::dashboards`]), so it is the same in every
//! browser and on every node.
//!
//! The server validates what it keeps: a known shape (unknown fields refused), at most
//! [`MAX_WIDGETS`] widgets and [`MAX_LAYOUT_BYTES`] of JSON, device ids and attribute
//! labels of the catalog's alphabet. A layout may name a device that was deleted since (or
//! never existed in the tenant): it is shown as missing, and reading it goes through the
//! same tenant-scoped services as everything else, so it reveals nothing.

use serde::{Deserialize, Serialize};
use store::SharedStore;
use store::dashboards::DashboardRecord;

use crate::ConsoleError;

/// Most widgets on one dashboard.
pub const MAX_WIDGETS: usize = 64;
/// Largest layout accepted, as sent (JSON).
pub const MAX_LAYOUT_BYTES: usize = 64 * 1024;
/// Most attributes in one chart.
pub const MAX_CHART_ATTRS: usize = 8;

/// A user's dashboard: its widgets, in the order shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub widgets: Vec<Widget>,
}

/// One widget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Widget {
    /// A line chart of some attributes of a device (history, then live readings).
    Chart { device: String, attrs: Vec<String> },
    /// The latest value of one attribute of a device, kept live.
    Tile { device: String, attr: String },
}

impl Layout {
    /// Parses and checks a layout as sent by the page; the error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, ConsoleError> {
        let bad = |m: String| ConsoleError::BadRequest(m);
        if body.len() > MAX_LAYOUT_BYTES {
            return Err(bad(format!("the layout is larger than {} KiB", MAX_LAYOUT_BYTES / 1024)));
        }
        let layout: Layout =
            serde_json::from_slice(body).map_err(|e| bad(format!("the layout is not one the console knows: {e}")))?;
        if layout.widgets.len() > MAX_WIDGETS {
            return Err(bad(format!("a dashboard holds at most {MAX_WIDGETS} widgets")));
        }
        for (i, w) in layout.widgets.iter().enumerate() {
            w.check().map_err(|why| bad(format!("widget {}: {why}", i + 1)))?;
        }
        Ok(layout)
    }
}

impl Widget {
    fn check(&self) -> Result<(), String> {
        let (device, attrs) = match self {
            Self::Chart { device, attrs } => {
                if attrs.is_empty() || attrs.len() > MAX_CHART_ATTRS {
                    return Err(format!("a chart shows 1 to {MAX_CHART_ATTRS} attributes"));
                }
                (device, attrs.as_slice())
            }
            Self::Tile { device, attr } => (device, std::slice::from_ref(attr)),
        };
        model::ids::validate_id("the device id", device).map_err(|e| e.to_string())?;
        for attr in attrs {
            if !model::catalog::is_attr_label(attr) || attr.chars().count() > model::catalog::MAX_LABEL_LEN {
                return Err(format!("{attr:?} is not an attribute label"));
            }
        }
        Ok(())
    }
}

/// Reads and saves users' layouts.
pub struct Dashboards {
    store: SharedStore,
}

impl Dashboards {
    pub fn new(store: SharedStore) -> Self {
        Self { store }
    }

    /// The layout of user `user_id` of `tenant`; empty if none was saved.
    pub async fn get(&self, tenant: &str, user_id: i64) -> Result<Layout, ConsoleError> {
        match self.store.dashboard(tenant, user_id).await? {
            Some(record) => Ok(serde_json::from_str(&record.layout).map_err(store::StoreError::from)?),
            None => Ok(Layout::default()),
        }
    }

    /// Checks `body` (see [`Layout::parse`]) and keeps it as the user's layout.
    pub async fn save(&self, tenant: &str, user_id: i64, body: &[u8]) -> Result<Layout, ConsoleError> {
        let layout = Layout::parse(body)?;
        let text = serde_json::to_string(&layout).map_err(store::StoreError::from)?;
        let record = DashboardRecord { layout: text, updated_ms: store::now_ms() };
        self.store.save_dashboard(tenant, user_id, record).await?;
        Ok(layout)
    }

    /// Forgets a removed user's layout.
    pub async fn remove_user(&self, tenant: &str, user_id: i64) -> Result<bool, store::StoreError> {
        self.store.delete_dashboard(tenant, user_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(body: &[u8]) -> String {
        match Layout::parse(body) {
            Err(ConsoleError::BadRequest(m)) => m,
            other => panic!("accepted or other error: {other:?}"),
        }
    }

    #[test]
    fn a_layout_is_parsed_in_order() {
        let body = json!({"widgets": [
            {"type": "tile", "device": "a1b2", "attr": "temperature"},
            {"type": "chart", "device": "c3d4", "attrs": ["temperature", "humidity_2"]},
        ]});
        let layout = Layout::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            layout.widgets,
            [
                Widget::Tile { device: "a1b2".into(), attr: "temperature".into() },
                Widget::Chart { device: "c3d4".into(), attrs: vec!["temperature".into(), "humidity_2".into()] },
            ]
        );
        assert_eq!(serde_json::to_value(&layout).unwrap(), body, "kept as sent");
        assert_eq!(Layout::parse(br#"{"widgets":[]}"#).unwrap(), Layout::default());
    }

    #[test]
    fn bad_layouts_are_refused_with_the_reason() {
        let tile = |device: &str, attr: &str| json!({"type": "tile", "device": device, "attr": attr});
        let layout = |widgets: Vec<serde_json::Value>| json!({"widgets": widgets}).to_string().into_bytes();
        let many = layout((0..=MAX_WIDGETS).map(|_| tile("d1", "t")).collect());
        assert!(many.len() < MAX_LAYOUT_BYTES);
        assert_eq!(refused(&many), "a dashboard holds at most 64 widgets");
        assert!(Layout::parse(&layout((0..MAX_WIDGETS).map(|_| tile("d1", "t")).collect())).is_ok(), "64 is fine");

        let huge = layout(vec![tile(&"d".repeat(MAX_LAYOUT_BYTES), "t")]);
        assert_eq!(refused(&huge), "the layout is larger than 64 KiB");

        assert!(refused(b"not json").starts_with("the layout is not one the console knows"));
        assert!(refused(br#"{"widgets":[{"type":"map","device":"d"}]}"#).contains("unknown variant `map`"));
        assert!(refused(br#"{"widgets":[],"owner":"mallory"}"#).contains("unknown field `owner`"));
        let extra = br#"{"widgets":[{"type":"tile","device":"d","attr":"t","html":"<b>"}]}"#;
        assert!(refused(extra).contains("unknown field `html`"));
        assert!(refused(br#"{"widgets":[{"type":"tile","device":"d"}]}"#).contains("missing field `attr`"));

        assert_eq!(
            refused(&layout(vec![tile("d1", "t"), tile("../x", "t")])),
            "widget 2: the device id may only contain letters, digits, '_' and '-'"
        );
        assert_eq!(refused(&layout(vec![tile("d1", "a b")])), "widget 1: \"a b\" is not an attribute label");
        let chart = |attrs: Vec<&str>| json!({"type": "chart", "device": "d1", "attrs": attrs});
        assert_eq!(refused(&layout(vec![chart(vec![])])), "widget 1: a chart shows 1 to 8 attributes");
        assert_eq!(refused(&layout(vec![chart(vec!["t"; 9])])), "widget 1: a chart shows 1 to 8 attributes");
        assert_eq!(
            refused(&layout(vec![tile("d1", &"t".repeat(129))])),
            format!("widget 1: {:?} is not an attribute label", "t".repeat(129))
        );
    }

    #[tokio::test]
    async fn layouts_are_kept_per_user_and_replaced_whole() {
        for engine in store::testing::engines().await {
            let dashboards = Dashboards::new(engine.store.clone());
            assert_eq!(dashboards.get("acme", 1).await.unwrap(), Layout::default(), "{}", engine.name);
            let saved = dashboards
                .save("acme", 1, br#"{"widgets":[{"type":"tile","device":"d1","attr":"temperature"}]}"#)
                .await
                .unwrap();
            assert_eq!(dashboards.get("acme", 1).await.unwrap(), saved);
            assert_eq!(dashboards.get("acme", 2).await.unwrap(), Layout::default(), "another user");
            assert_eq!(dashboards.get("globex", 1).await.unwrap(), Layout::default(), "another tenant");
            assert!(dashboards.save("acme", 1, b"{}").await.is_err(), "refused");
            assert_eq!(dashboards.get("acme", 1).await.unwrap(), saved, "a refused layout changes nothing");
            dashboards.save("acme", 1, br#"{"widgets":[]}"#).await.unwrap();
            assert_eq!(dashboards.get("acme", 1).await.unwrap(), Layout::default());
            assert!(dashboards.remove_user("acme", 1).await.unwrap());
        }
    }
}
