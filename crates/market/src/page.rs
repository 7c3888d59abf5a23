//! The test page at `GET /index` (the original served one with a hard-coded token that
//! wrote what the server sent with `innerHTML`): sign in, and watch offers arrive and
//! prices rise, live over the WebSocket; a form makes an offer. Its script and style are
//! files of their own (`/index.js`, `/index.css`), so the page runs under a strict
//! Content-Security-Policy, and it writes what it receives as text only.

/// The page.
pub const HTML: &str = include_str!("../assets/index.html");
/// Its script.
pub const JS: &str = include_str!("../assets/index.js");
/// Its stylesheet.
pub const CSS: &str = include_str!("../assets/index.css");
/// The policy both are served with.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_and_writes_text_only() {
        assert!(HTML.contains(r#"<script src="/index.js" defer></script>"#));
        assert!(HTML.contains(r#"<link rel="stylesheet" href="/index.css">"#));
        assert!(!HTML.contains("<script>") && !HTML.contains("<style"), "nothing inline: the CSP forbids it");
        assert!(!JS.contains("innerHTML"), "what the server sends is written as text");
    }
}
