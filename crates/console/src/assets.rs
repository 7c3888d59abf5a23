//! The console's files, compiled into the binary (no Node build step, nothing to deploy
//! beside it): the page, its stylesheet, its JavaScript modules, and two vendored
//! libraries, each under `assets/vendor/<name>-<version>/` with its LICENSE (MIT both;
//! `assets/vendor/README.md` says where they come from): uPlot draws the charts, Drawflow
//! the flow editor's nodes and wires.
//!
//! Our own files are sent `no-store`, like every console answer, so a new binary's page
//! is never mixed with an old script. Vendored files have the version in their path, so
//! they can be cached for a year (`immutable`): a new version is a new path.

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// A file the console serves.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
    /// Versioned, so cacheable for good.
    immutable: bool,
}

macro_rules! own {
    ($path:literal, $file:literal, $type:expr) => {
        Asset { path: $path, content_type: $type, body: include_str!(concat!("../assets/", $file)), immutable: false }
    };
}

/// A vendored file, under its versioned directory.
macro_rules! vendored {
    ($dir:literal, $file:literal, $type:expr) => {
        Asset {
            path: concat!("/console/vendor/", $dir, "/", $file),
            content_type: $type,
            body: include_str!(concat!("../assets/vendor/", $dir, "/", $file)),
            immutable: true,
        }
    };
}

const ASSETS: &[Asset] = &[
    own!("/console/", "index.html", HTML),
    own!("/console/console.css", "console.css", CSS),
    own!("/console/js/app.js", "js/app.js", JS),
    own!("/console/js/api.js", "js/api.js", JS),
    own!("/console/js/dom.js", "js/dom.js", JS),
    own!("/console/js/seats.js", "js/seats.js", JS),
    own!("/console/js/templates.js", "js/templates.js", JS),
    own!("/console/js/devices.js", "js/devices.js", JS),
    own!("/console/js/device.js", "js/device.js", JS),
    own!("/console/js/dashboard.js", "js/dashboard.js", JS),
    own!("/console/js/charts.js", "js/charts.js", JS),
    own!("/console/js/flows.js", "js/flows.js", JS),
    own!("/console/js/flow-nodes.js", "js/flow-nodes.js", JS),
    own!("/console/js/loadtests.js", "js/loadtests.js", JS),
    vendored!("uplot-1.6.32", "uPlot.iife.min.js", JS),
    vendored!("uplot-1.6.32", "uPlot.min.css", CSS),
    vendored!("uplot-1.6.32", "LICENSE", TEXT),
    vendored!("drawflow-0.0.60", "drawflow.min.js", JS),
    vendored!("drawflow-0.0.60", "drawflow.min.css", CSS),
    vendored!("drawflow-0.0.60", "LICENSE", TEXT),
];

/// A route for every file.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, asset| router.route(asset.path, get(move || async move { serve(asset) })))
}

fn serve(asset: &'static Asset) -> Response {
    let mut resp = ([(CONTENT_TYPE, asset.content_type)], asset.body).into_response();
    if asset.immutable {
        resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_served_once_and_the_page_loads_what_is_served() {
        let mut paths: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len(), "a path listed twice");
        let page = include_str!("../assets/index.html");
        let loaded = ["/console/console.css", "/console/js/app.js"];
        let vendored = ASSETS.iter().filter(|a| a.immutable && a.content_type != TEXT).map(|a| a.path);
        for path in loaded.into_iter().chain(vendored) {
            assert!(page.contains(&format!("\"{path}\"")), "index.html loads {path}");
        }
        // Every module is imported by another (or is app.js, which the page loads).
        let modules = ASSETS.iter().filter(|a| a.path.starts_with("/console/js/"));
        for m in modules.clone().filter(|m| m.path != "/console/js/app.js") {
            let name = m.path.rsplit('/').next().unwrap();
            assert!(modules.clone().any(|o| o.body.contains(&format!("'./{name}'"))), "nothing imports {name}");
        }
    }

    #[test]
    fn no_inline_script_or_style_in_the_page() {
        // The CSP forbids them; the browser would refuse them silently.
        let page = include_str!("../assets/index.html");
        assert!(!page.contains("<script>") && !page.contains("style="), "inline script or style in index.html");
        assert!(!page.contains("<style"), "inline <style> in index.html");
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js") && !a.immutable) {
            assert!(!asset.body.contains("innerHTML"), "{}: write with textContent / DOM nodes", asset.path);
        }
    }
}
