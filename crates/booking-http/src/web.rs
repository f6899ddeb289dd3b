//! The web pages: the waiting room people see in a browser (`GET /`) and the
//! operator's live view (`GET /admin`). HTML, CSS and plain JavaScript from
//! `crates/booking-http/web/`, embedded in the binary at build time: nothing is
//! fetched from elsewhere, so the pages work offline on the machine that serves
//! them.
//!
//! The pages are clients of the JSON API and nothing more: they call the same
//! routes as any other client (the user page with its queue token, the operator
//! page with the admin key, which it keeps in the tab's `sessionStorage` and sends
//! as `Authorization: Bearer`). They are not part of the API's route table or of
//! the OpenAPI document.
//!
//! Every answer carries a strict `Content-Security-Policy` (scripts, styles and
//! connections only from this origin; no inline script; no framing) and
//! `Cache-Control: no-cache`, so a new binary's pages are used at once.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file and its media type.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("../web/index.html"),
    content_type: "text/html; charset=utf-8",
};
const ADMIN: Asset = Asset {
    body: include_str!("../web/admin.html"),
    content_type: "text/html; charset=utf-8",
};
const APP_JS: Asset = Asset {
    body: include_str!("../web/app.js"),
    content_type: "text/javascript; charset=utf-8",
};
const ADMIN_JS: Asset = Asset {
    body: include_str!("../web/admin.js"),
    content_type: "text/javascript; charset=utf-8",
};
const COMMON_JS: Asset = Asset {
    body: include_str!("../web/common.js"),
    content_type: "text/javascript; charset=utf-8",
};
const STYLE: Asset = Asset {
    body: include_str!("../web/style.css"),
    content_type: "text/css; charset=utf-8",
};
const ICON: Asset = Asset {
    body: include_str!("../web/icon.svg"),
    content_type: "image/svg+xml",
};

/// The policy every page answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Every path the pages are served at, for tests and for the docs.
pub const PAGES: &[&str] = &[
    "/",
    "/admin",
    "/web/app.js",
    "/web/admin.js",
    "/web/common.js",
    "/web/style.css",
    "/web/icon.svg",
];

fn answer(asset: &'static Asset) -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
    ];
    (headers, asset.body).into_response()
}

/// The pages' routes, for any router state: merge them into the API's router.
pub fn routes<St: Clone + Send + Sync + 'static>() -> Router<St> {
    Router::new()
        .route("/", get(|| async { answer(&INDEX) }))
        .route("/admin", get(|| async { answer(&ADMIN) }))
        .route("/web/app.js", get(|| async { answer(&APP_JS) }))
        .route("/web/admin.js", get(|| async { answer(&ADMIN_JS) }))
        .route("/web/common.js", get(|| async { answer(&COMMON_JS) }))
        .route("/web/style.css", get(|| async { answer(&STYLE) }))
        .route("/web/icon.svg", get(|| async { answer(&ICON) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_load_nothing_from_elsewhere() {
        for asset in [INDEX, ADMIN, APP_JS, ADMIN_JS, COMMON_JS, STYLE, ICON] {
            for far in ["http://", "https://", "//cdn", "@import"] {
                let hits: Vec<&str> = asset
                    .body
                    .lines()
                    .filter(|l| l.contains(far) && !l.contains("http://www.w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{far} in an embedded page: {hits:?}");
            }
        }
    }

    #[test]
    fn the_html_pages_have_no_inline_script_or_style() {
        for page in [INDEX.body, ADMIN.body] {
            assert!(!page.contains("<script>"), "inline script breaks the CSP");
            assert!(!page.contains("style=\""), "inline style breaks the CSP");
            let handler = page.split(" on").skip(1).find(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(
                handler.is_none(),
                "no inline event handler attribute: {handler:?}"
            );
        }
    }
}
