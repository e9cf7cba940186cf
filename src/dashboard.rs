//! The built-in dashboard: static pages and assets from `dashboard/`, embedded
//! in the binary and served by the admin listener.
//!
//! Pages: `/`, `/login`, `/signup`, `/customers`, `/customers/{id}`,
//! `/settings`; assets under `/assets/...` (files in `dashboard/assets/`); and
//! `/dashboard/config.json`, which tells the page the proxy URL to put in the
//! setup snippets.
//!
//! Every page but `/login` and `/signup` answers `303 See Other` to `/login`
//! when the caller has no valid session (decided by the `has_session` check
//! the admin server passes in), with `?next=<the page asked for>` (except for
//! `/`) so that logging in returns there. The page scripts also go to `/login`
//! when an API call answers `401`, so a session that expires while a page is
//! open lands there too.
//!
//! Every response carries a strict Content-Security-Policy (no inline script
//! or style), `X-Content-Type-Options: nosniff`, `Referrer-Policy:
//! no-referrer` and `X-Frame-Options: DENY`. HTML is `no-cache`; assets carry
//! an `ETag` (their SHA-256) with `no-cache`, so browsers revalidate and get a
//! `304` while the binary is unchanged.
//!
//! In debug builds rust-embed reads the files from disk (relative to the
//! crate), so editing `dashboard/` needs no rebuild; release builds embed them.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use rust_embed::RustEmbed;

/// The Content-Security-Policy sent with every dashboard response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Where pages send a caller without a session.
pub const LOGIN_PATH: &str = "/login";

/// What the dashboard needs to know about the running server.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// The proxy's base URL as clients should use it, e.g.
    /// `http://127.0.0.1:8080` (no trailing slash needed).
    pub proxy_url: String,
}

#[derive(RustEmbed)]
#[folder = "dashboard/"]
struct Assets;

/// Tells whether a request carries a valid, unexpired session (e.g. by
/// verifying its session cookie). Implemented for any
/// `Fn(&HeaderMap) -> bool + Send + Sync + 'static` (closures, `fn` items)
/// and for `Arc<dyn Fn(&HeaderMap) -> bool + Send + Sync>`.
pub trait SessionCheck: Send + Sync + 'static {
    /// `true` when the request may see the signed-in pages.
    fn has_session(&self, headers: &HeaderMap) -> bool;
}

impl<F> SessionCheck for F
where
    F: Fn(&HeaderMap) -> bool + Send + Sync + 'static,
{
    fn has_session(&self, headers: &HeaderMap) -> bool {
        self(headers)
    }
}

impl SessionCheck for Arc<dyn Fn(&HeaderMap) -> bool + Send + Sync> {
    fn has_session(&self, headers: &HeaderMap) -> bool {
        self(headers)
    }
}

#[derive(Clone)]
struct Dashboard {
    config_json: Arc<str>,
    has_session: Arc<dyn SessionCheck>,
}

/// A dashboard page: the file that holds it and whether it needs a session.
#[derive(Clone, Copy)]
struct Page {
    file: &'static str,
    protected: bool,
}

const DASHBOARD: Page = Page {
    file: "pages/index.html",
    protected: true,
};
const LOGIN: Page = Page {
    file: "pages/login.html",
    protected: false,
};
const SIGNUP: Page = Page {
    file: "pages/signup.html",
    protected: false,
};
const CUSTOMERS: Page = Page {
    file: "pages/customers.html",
    protected: true,
};
const CUSTOMER: Page = Page {
    file: "pages/customer.html",
    protected: true,
};
const SETTINGS: Page = Page {
    file: "pages/settings.html",
    protected: true,
};

/// The dashboard's routes, to be merged into the admin router.
///
/// `has_session` tells whether a request carries a valid (unexpired) session,
/// e.g. by verifying the session cookie; pages other than `/login` and
/// `/signup` redirect to `/login` when it answers `false`. The returned router
/// sets no fallback, so it merges cleanly with the API routes.
pub fn router<S, C>(config: DashboardConfig, has_session: C) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    C: SessionCheck,
{
    let proxy_url = config.proxy_url.trim_end_matches('/').to_owned();
    let config_json = serde_json::json!({
        "proxy_url": proxy_url,
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string();
    let state = Dashboard {
        config_json: config_json.into(),
        has_session: Arc::new(has_session),
    };
    Router::new()
        .route("/", get(|s, u, h| page(s, u, h, DASHBOARD)))
        .route("/login", get(|s, u, h| page(s, u, h, LOGIN)))
        .route("/signup", get(|s, u, h| page(s, u, h, SIGNUP)))
        .route("/customers", get(|s, u, h| page(s, u, h, CUSTOMERS)))
        .route("/customers/{id}", get(|s, u, h| page(s, u, h, CUSTOMER)))
        .route("/settings", get(|s, u, h| page(s, u, h, SETTINGS)))
        .route("/assets/{*path}", get(asset))
        .route("/dashboard/config.json", get(serve_config))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn page(
    State(state): State<Dashboard>,
    uri: Uri,
    headers: HeaderMap,
    page: Page,
) -> Response {
    if page.protected && !state.has_session.has_session(&headers) {
        let location = login_location(&uri);
        let location =
            HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static(LOGIN_PATH));
        return (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response();
    }
    match Assets::get(page.file) {
        Some(file) => serve(&headers, file, "text/html; charset=utf-8", "no-cache"),
        None => not_found(),
    }
}

async fn asset(headers: HeaderMap, Path(path): Path<String>) -> Response {
    if !is_safe_asset_path(&path) {
        return not_found();
    }
    match Assets::get(&format!("assets/{path}")) {
        Some(file) => {
            let content_type = content_type_for(&path, file.metadata.mimetype());
            serve(&headers, file, &content_type, "no-cache")
        }
        None => not_found(),
    }
}

async fn serve_config(State(state): State<Dashboard>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        state.config_json.to_string(),
    )
        .into_response()
}

/// `/login`, plus `?next=` naming the page asked for (path and query, percent-encoded)
/// unless that is the dashboard itself. The login page only follows a `next` that is a
/// same-site path.
fn login_location(uri: &Uri) -> String {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if target == "/" || !target.starts_with('/') {
        return LOGIN_PATH.to_owned();
    }
    let mut out = format!("{LOGIN_PATH}?next=");
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A relative path under `assets/` with no way out of it.
fn is_safe_asset_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// The Content-Type for an asset: text types get an explicit charset.
fn content_type_for(path: &str, guessed: &str) -> String {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "html" => "text/html; charset=utf-8".into(),
        "css" => "text/css; charset=utf-8".into(),
        "js" | "mjs" => "text/javascript; charset=utf-8".into(),
        "json" => "application/json".into(),
        "svg" => "image/svg+xml".into(),
        "txt" | "md" => "text/plain; charset=utf-8".into(),
        _ => guessed.to_owned(),
    }
}

/// Serves an embedded file with its ETag, answering `304` when the client's
/// `If-None-Match` already names it.
fn serve(
    headers: &HeaderMap,
    file: rust_embed::EmbeddedFile,
    content_type: &str,
    cache: &'static str,
) -> Response {
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    if etag_matches(headers, &etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            ],
        )
            .into_response();
    }
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        Body::from(file.data.into_owned()),
    )
        .into_response()
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "Not found\n",
    )
        .into_response()
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    const SESSION_COOKIE: &str = "llmo_session=valid";

    fn app() -> Router {
        router(
            DashboardConfig {
                proxy_url: "http://127.0.0.1:8080/".into(),
            },
            |h: &HeaderMap| {
                h.get(header::COOKIE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains(SESSION_COOKIE))
            },
        )
    }

    async fn get(path: &str, session: bool) -> Response {
        let mut req = Request::get(path);
        if session {
            req = req.header(header::COOKIE, SESSION_COOKIE);
        }
        app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_string(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header_str(resp: &Response, name: header::HeaderName) -> &str {
        resp.headers()
            .get(&name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .to_str()
            .unwrap()
    }

    fn assert_security_headers(resp: &Response) {
        assert_eq!(
            header_str(resp, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header_str(resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header_str(resp, header::REFERRER_POLICY), "no-referrer");
        assert_eq!(header_str(resp, header::X_FRAME_OPTIONS), "DENY");
    }

    const PROTECTED: [&str; 5] = [
        "/",
        "/customers",
        "/customers/alice",
        "/customers/a%2Fb%20c",
        "/settings",
    ];

    #[tokio::test]
    async fn protected_pages_redirect_to_login_without_session() {
        for (path, location) in [
            ("/", "/login"),
            ("/customers", "/login?next=%2Fcustomers"),
            ("/customers/alice", "/login?next=%2Fcustomers%2Falice"),
            (
                "/customers/a%2Fb%20c",
                "/login?next=%2Fcustomers%2Fa%252Fb%2520c",
            ),
            ("/settings", "/login?next=%2Fsettings"),
            ("/?range=7d", "/login?next=%2F%3Frange%3D7d"),
            (
                "/customers?range=custom&from=x",
                "/login?next=%2Fcustomers%3Frange%3Dcustom%26from%3Dx",
            ),
        ] {
            let resp = get(path, false).await;
            assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(header_str(&resp, header::LOCATION), location, "{path}");
            assert_eq!(header_str(&resp, header::CACHE_CONTROL), "no-store");
            assert_security_headers(&resp);
        }
    }

    #[tokio::test]
    async fn protected_pages_are_html_with_session() {
        for path in PROTECTED {
            let resp = get(path, true).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header_str(&resp, header::CONTENT_TYPE),
                "text/html; charset=utf-8"
            );
            assert_eq!(header_str(&resp, header::CACHE_CONTROL), "no-cache");
            assert_security_headers(&resp);
            let body = body_string(resp).await;
            assert!(body.starts_with("<!doctype html>"), "{path}");
            assert!(body.contains("id=\"nav\""), "{path} has the nav bar");
        }
    }

    #[tokio::test]
    async fn login_and_signup_need_no_session() {
        for (path, marker) in [("/login", "login-form"), ("/signup", "signup-form")] {
            let resp = get(path, false).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header_str(&resp, header::CONTENT_TYPE),
                "text/html; charset=utf-8"
            );
            assert_security_headers(&resp);
            assert!(body_string(resp).await.contains(marker));
        }
    }

    #[tokio::test]
    async fn assets_have_content_types_and_etags() {
        for (path, ct) in [
            ("/assets/app.css", "text/css; charset=utf-8"),
            ("/assets/js/api.js", "text/javascript; charset=utf-8"),
            ("/assets/js/format.js", "text/javascript; charset=utf-8"),
            ("/assets/favicon.svg", "image/svg+xml"),
        ] {
            let resp = get(path, false).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(header_str(&resp, header::CONTENT_TYPE), ct, "{path}");
            assert_eq!(header_str(&resp, header::CACHE_CONTROL), "no-cache");
            assert_security_headers(&resp);
            let etag = header_str(&resp, header::ETAG).to_owned();
            assert!(etag.starts_with('"') && etag.ends_with('"'));

            let again = app()
                .oneshot(
                    Request::get(path)
                        .header(header::IF_NONE_MATCH, &etag)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(header_str(&again, header::ETAG), etag);
            assert!(body_string(again).await.is_empty());
        }
    }

    #[tokio::test]
    async fn missing_or_escaping_assets_are_404() {
        for path in [
            "/assets/nope.js",
            "/assets/js/nope.js",
            "/assets/../Cargo.toml",
            "/assets/%2e%2e/Cargo.toml",
            "/assets/..%2fCargo.toml",
            "/assets/js//api.js",
            "/assets/",
        ] {
            let resp = get(path, true).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
            assert_security_headers(&resp);
        }
        // Files outside assets/ (pages, README) are not served as assets.
        assert_eq!(
            get("/assets/../pages/index.html", true).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn config_json_names_the_proxy_url() {
        let resp = get("/dashboard/config.json", false).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header_str(&resp, header::CONTENT_TYPE), "application/json");
        assert_security_headers(&resp);
        let v: serde_json::Value = serde_json::from_str(&body_string(resp).await).unwrap();
        assert_eq!(v["proxy_url"], "http://127.0.0.1:8080");
    }

    /// Every page loads only assets that exist, and none has inline script or
    /// style (the CSP would block them).
    #[test]
    fn pages_reference_existing_assets_and_nothing_inline() {
        for page in [DASHBOARD, LOGIN, SIGNUP, CUSTOMERS, CUSTOMER, SETTINGS] {
            let file = Assets::get(page.file).unwrap_or_else(|| panic!("{}", page.file));
            let html = String::from_utf8(file.data.into_owned()).unwrap();
            assert!(!html.contains(" style="), "{}: inline style", page.file);
            assert!(!html.contains("<style"), "{}: inline style", page.file);
            assert!(!html.contains("javascript:"), "{}", page.file);
            assert!(!has_inline_handler(&html), "{}: inline handler", page.file);
            for tag in html.split("<script").skip(1) {
                let open = &tag[..tag.find('>').unwrap()];
                assert!(open.contains("src="), "{}: inline script", page.file);
            }
            let mut refs = 0;
            for attr in ["src=\"/assets/", "href=\"/assets/"] {
                for rest in html.split(attr).skip(1) {
                    let path = &rest[..rest.find('"').unwrap()];
                    assert!(
                        Assets::get(&format!("assets/{path}")).is_some(),
                        "{} references missing /assets/{path}",
                        page.file
                    );
                    refs += 1;
                }
            }
            assert!(refs >= 2, "{} loads its CSS and script", page.file);
        }
    }

    /// Whether the markup has an attribute like ` onclick=`.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    /// Every relative ES module import in the scripts names an existing file.
    #[test]
    fn script_imports_resolve() {
        for name in Assets::iter().filter(|n| n.ends_with(".js")) {
            let file = Assets::get(&name).unwrap();
            let src = String::from_utf8(file.data.into_owned()).unwrap();
            let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            for rest in src.split(" from '").skip(1) {
                let target = &rest[..rest.find('\'').unwrap()];
                let mut parts: Vec<&str> = dir.split('/').collect();
                for seg in target.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    Assets::get(&resolved).is_some(),
                    "{name} imports missing {target} ({resolved})"
                );
            }
        }
    }

    #[tokio::test]
    async fn session_check_accepts_fn_items_and_shared_closures() {
        fn never(_: &HeaderMap) -> bool {
            false
        }
        let cfg = || DashboardConfig {
            proxy_url: "http://p".into(),
        };
        let req = || Request::get("/").body(Body::empty()).unwrap();
        let by_fn: Router = router(cfg(), never);
        assert_eq!(
            by_fn.oneshot(req()).await.unwrap().status(),
            StatusCode::SEE_OTHER
        );
        let shared: Arc<dyn Fn(&HeaderMap) -> bool + Send + Sync> = Arc::new(|_: &HeaderMap| true);
        let by_arc: Router = router(cfg(), shared);
        assert_eq!(
            by_arc.oneshot(req()).await.unwrap().status(),
            StatusCode::OK
        );
    }

    #[test]
    fn asset_paths_are_checked() {
        assert!(is_safe_asset_path("js/api.js"));
        assert!(!is_safe_asset_path("../x"));
        assert!(!is_safe_asset_path("a/../../x"));
        assert!(!is_safe_asset_path("/etc/passwd"));
        assert!(!is_safe_asset_path("a\\b"));
        assert!(!is_safe_asset_path(""));
    }
}
