//! The dashboard in a real browser (headless Debian `chromium`, driven over CDP with
//! chromiumoxide), against a whole LLMObserve and the TLS mock upstream serving the
//! provider fixtures.
//!
//! One flow, as a new user lives it: protected pages redirect to `/login`; sign up;
//! onboarding shows the key once, copies it, and fills the snippets with the real proxy
//! URL and key; store a provider key; real proxied calls with that key (pass-through
//! and managed, two customers, two models); the dashboard shows the exact totals, the
//! provider and model breakdowns and filters; `/customers` ranks both customers with
//! their costs; a customer page shows its cost and models; Settings creates a key
//! (shown once) and revokes one through the confirmation dialog, after which the proxy
//! answers `401`; an expired session lands on `/login`, with a note when it expires
//! while a page is open; a wrong password says so; the pages fit a phone (390 px)
//! without sideways scrolling; logging out returns to `/login` and `/` stays there.
//!
//! Every page is saved as a PNG under `target/browser-artifacts/` (desktop 1280×900,
//! and phone 390×844 as `*-phone.png`). The browser console must stay free of errors
//! and uncaught exceptions, except the `401` resource errors the flow causes on
//! purpose (wrong password, expired session).
//!
//! Without Chromium the test prints `SKIPPED` and passes, unless `CI=true`, where it
//! fails. Set `LLMO_CHROMIUM` to use another binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::browser::{
    PermissionDescriptor, PermissionSetting, SetPermissionParams,
};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::log::EventEntryAdded;
use chromiumoxide::cdp::browser_protocol::network::{CookieParam, CookieSameSite};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, Viewport as ClipRect,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EvaluateParams, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::Page;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use common::app::TestApp;
use common::mock_upstream::{MockUpstream, MockUpstreamHandle, Reply, fixture};

const DESKTOP: (i64, i64) = (1280, 900);
const PHONE: (i64, i64) = (390, 844);
/// Longest wait for any one thing to show up on a page.
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);
/// The whole flow must finish within this, or the test fails instead of hanging.
const OVERALL: Duration = Duration::from_secs(120);

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery";
const MANAGED_OPENAI_KEY: &str = "sk-managed-test-4242";

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const MESSAGES: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[]}"#;

// Exact costs per call (worked out in tests/proxy_e2e.rs from pricing/*.toml):
//   gpt-4o (openai/chat_completion.json):           256 × 2.50 + 1280 × 1.25 + 212 × 10 = $0.00436
//   claude-sonnet-4-5 (anthropic/messages.json):    312 × 3 + 9600 × 0.30 + 1850 × 3.75 + 428 × 15 = $0.0171735
// The calls this test makes:
//   acme-corp:    2 × claude + 1 × gpt-4o = 0.034347 + 0.00436 = $0.038707 → "$0.03871"
//   globex:       3 × gpt-4o                                   = $0.01308  → "$0.01308"
//   no customer:  1 × gpt-4o (managed mode)                    = $0.00436  → "$0.00436"
//   total:        7 calls                                      = $0.056147 → "$0.05615"
//   by model:     claude 2 calls $0.034347 → "$0.03435"; gpt-4o 5 calls $0.0218 → "$0.0218"
const ACME: &str = "acme-corp";
const GLOBEX: &str = "globex";

/// Serves the fixture named by the request's `x-test-fixture` header.
async fn fixture_mock() -> MockUpstreamHandle {
    MockUpstream::tls()
        .route(
            "*",
            "/*",
            Reply::func(|req| {
                let name = req
                    .header("x-test-fixture")
                    .unwrap_or("openai/chat_completion.json");
                Reply::json(200, fixture(name)).header("x-request-id", "req_browser")
            }),
        )
        .start()
        .await
}

/// The Chromium to drive (`LLMO_CHROMIUM`, else Debian's), or the path that is missing.
fn chromium_path() -> Result<PathBuf, PathBuf> {
    let path = std::env::var_os("LLMO_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() { Ok(path) } else { Err(path) }
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&dir).expect("creating target/browser-artifacts");
    dir
}

/// A JS string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// Console messages and exceptions seen so far, as "kind: text".
type Console = Arc<Mutex<Vec<String>>>;

/// A page plus the helpers the flow uses. Every wait is bounded by [`WAIT`].
struct Ui {
    page: Page,
    admin: String,
    dir: PathBuf,
    console: Console,
    size: Mutex<(i64, i64)>,
}

impl Ui {
    async fn eval_raw(&self, expr: &str) -> Result<Value, String> {
        let params = EvaluateParams::builder()
            .expression(expr)
            .await_promise(true)
            .return_by_value(true)
            .build()
            .map_err(|e| e.to_string())?;
        match self.page.evaluate_expression(params).await {
            Ok(r) => Ok(r.value().cloned().unwrap_or(Value::Null)),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn eval<T: DeserializeOwned>(&self, expr: &str) -> T {
        match self.eval_raw(expr).await {
            Ok(v) => serde_json::from_value(v.clone())
                .unwrap_or_else(|e| panic!("`{expr}` gave {v}: {e}")),
            Err(e) => self.fail(&format!("evaluating `{expr}`: {e}")).await,
        }
    }

    /// Polls `expr` until it is truthy; returns its value.
    async fn wait_for(&self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let last = match self.eval_raw(expr).await {
                Ok(v) if truthy(&v) => return v,
                Ok(v) => v.to_string(),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what} (last: {last})"))
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `sel` exists and is rendered (not hidden, not display:none).
    async fn wait_visible(&self, sel: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({s}); return !!e && e.getClientRects().length > 0; }})()",
            s = js(sel)
        );
        self.wait_for(&format!("{sel} to be visible"), &expr).await;
    }

    async fn wait_hidden(&self, sel: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({s}); return !e || e.getClientRects().length === 0; }})()",
            s = js(sel)
        );
        self.wait_for(&format!("{sel} to be hidden"), &expr).await;
    }

    /// Waits until `sel`'s trimmed text is exactly `want`.
    async fn wait_text(&self, sel: &str, want: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({s}); return !!e && e.textContent.trim() === {w}; }})()",
            s = js(sel),
            w = js(want)
        );
        let what = format!(
            "{sel} to read {want:?} (it reads {:?})",
            self.text_now(sel).await
        );
        self.wait_for(&what, &expr).await;
    }

    /// Waits until `sel`'s text contains `part`.
    async fn wait_text_contains(&self, sel: &str, part: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({s}); return !!e && e.textContent.includes({w}); }})()",
            s = js(sel),
            w = js(part)
        );
        self.wait_for(&format!("{sel} to contain {part:?}"), &expr)
            .await;
    }

    async fn text_now(&self, sel: &str) -> Option<String> {
        let expr = format!(
            "(() => {{ const e = document.querySelector({s}); return e ? e.textContent.trim() : null; }})()",
            s = js(sel)
        );
        self.eval_raw(&expr)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The trimmed text of `sel`, once it has some.
    async fn text(&self, sel: &str) -> String {
        let expr = format!(
            "(() => {{ const e = document.querySelector({s}); return e ? e.textContent.trim() : null; }})()",
            s = js(sel)
        );
        let v = self.wait_for(&format!("{sel} to have text"), &expr).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// A real mouse click (a user gesture, so the clipboard works) on `sel`.
    async fn click(&self, sel: &str) {
        self.wait_visible(sel).await;
        let result = match self.page.find_element(sel).await {
            Ok(el) => el.click().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.fail(&format!("clicking {sel}: {e}")).await;
        }
    }

    /// Clears the field `sel` and types `value` into it key by key.
    async fn fill(&self, sel: &str, value: &str) {
        self.wait_visible(sel).await;
        let _: Value = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({s}); e.value = ''; e.focus(); return true; }})()",
                s = js(sel)
            ))
            .await;
        let result = match self.page.find_element(sel).await {
            Ok(el) => el.type_str(value).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.fail(&format!("typing into {sel}: {e}")).await;
        }
    }

    async fn goto(&self, path: &str) {
        let url = format!("{}{}", self.admin, path);
        if let Err(e) = self.page.goto(&url).await {
            self.fail(&format!("opening {url}: {e}")).await;
        }
    }

    async fn path(&self) -> String {
        self.eval("location.pathname").await
    }

    async fn wait_path(&self, path: &str) {
        self.wait_for(
            &format!("the page {path}"),
            &format!("location.pathname === {}", js(path)),
        )
        .await;
    }

    /// Rows of a table as arrays of cell texts, for rows matching `row_sel`.
    async fn rows(&self, row_sel: &str) -> Vec<Vec<String>> {
        self.eval(&format!(
            "[...document.querySelectorAll({s})].map(tr => [...tr.cells].map(td => td.textContent.trim()))",
            s = js(row_sel)
        ))
        .await
    }

    /// Emulates a screen `size`; the phone also gets touch and a 2× scale.
    async fn resize(&self, size: (i64, i64)) {
        let phone = size.0 < 600;
        let params = SetDeviceMetricsOverrideParams::new(
            size.0,
            size.1,
            if phone { 2.0 } else { 1.0 },
            phone,
        );
        self.page
            .execute(params)
            .await
            .expect("setting the screen size");
        *self.size.lock().unwrap() = size;
        // Let layout (and the chart's resize handling) settle.
        self.wait_for(
            "the new size to apply",
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
        )
        .await;
    }

    /// Saves a full-page PNG as `target/browser-artifacts/<name>.png`.
    async fn shot(&self, name: &str) {
        self.save_shot(name, true).await;
    }

    /// Saves what the window shows (for overlays: a modal's backdrop covers the
    /// window, not the whole page).
    async fn shot_window(&self, name: &str) {
        self.save_shot(name, false).await;
    }

    async fn save_shot(&self, name: &str, full_page: bool) {
        let bytes = match self.capture(full_page).await {
            Ok(b) => b,
            Err(e) => self.fail(&format!("screenshot {name}: {e}")).await,
        };
        let path = self.dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("writing a screenshot");
    }

    async fn capture(&self, full_page: bool) -> Result<Vec<u8>, String> {
        // A full page from the top, so sticky and fixed parts sit where a user first
        // sees them; two frames, so nothing is caught mid-layout.
        let settle = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))";
        let _ = if full_page {
            self.eval_raw(&format!("scrollTo(0, 0), {settle}")).await
        } else {
            self.eval_raw(settle).await
        };
        let m = self
            .page
            .layout_metrics()
            .await
            .map_err(|e| e.to_string())?;
        let (w, h) = *self.size.lock().unwrap();
        let height = if full_page {
            m.css_content_size.height.max(h as f64).min(12_000.0)
        } else {
            h as f64
        };
        let params = CaptureScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .capture_beyond_viewport(true)
            .clip(ClipRect {
                x: 0.0,
                y: 0.0,
                width: w as f64,
                height,
                scale: 1.0,
            })
            .build();
        let res = self.page.execute(params).await.map_err(|e| e.to_string())?;
        let data: &str = res.result.data.as_ref();
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())
    }

    /// The page must not scroll sideways: wide tables scroll inside their own box.
    async fn assert_no_sideways_scroll(&self, what: &str) {
        // A phone widens its layout viewport to fit content that overflows, so compare
        // with the emulated screen width, not innerWidth.
        let width = self.size.lock().unwrap().0 as f64;
        let (scroll, inner): (f64, f64) = self
            .eval("[document.documentElement.scrollWidth, window.innerWidth]")
            .await;
        if scroll > width + 1.0 || inner > width + 1.0 {
            let culprits: Vec<String> = self
                .eval(&format!(
                    "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > {width} + 1 && (!e.parentElement.closest('.table-scroll, pre') || ['absolute', 'fixed'].includes(getComputedStyle(e).position))).slice(0, 12).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '') + ' right=' + Math.round(e.getBoundingClientRect().right))",
                ))
                .await;
            self.fail(&format!(
                "{what}: the page is {scroll}px wide (layout viewport {inner}px) on a {width}px screen; overflowing: {culprits:?}"
            ))
            .await;
        }
    }

    /// Saves `FAILED-*.png` and panics with the URL and visible text.
    async fn fail(&self, msg: &str) -> ! {
        let url = self
            .eval_raw("location.href")
            .await
            .map(|v| v.to_string())
            .unwrap_or_default();
        let body = self
            .eval_raw("document.body ? document.body.innerText.slice(0, 1500) : ''")
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        if let Ok(png) = self.capture(true).await {
            let _ = std::fs::write(self.dir.join("FAILED.png"), png);
        }
        let console = self.console.lock().unwrap().join("\n  ");
        panic!(
            "{msg}\n at {url}\n--- page text ---\n{body}\n--- console ---\n  {console}\n(screenshot: target/browser-artifacts/FAILED.png)"
        );
    }
}

/// Collects console errors/warnings, uncaught exceptions and browser log entries.
async fn listen_to_console(page: &Page, console: &Console) {
    let mut calls = page
        .event_listener::<EventConsoleApiCalled>()
        .await
        .unwrap();
    let sink = console.clone();
    tokio::spawn(async move {
        while let Some(ev) = calls.next().await {
            let kind = match ev.r#type {
                ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert => "console.error",
                ConsoleApiCalledType::Warning => "console.warn",
                _ => continue,
            };
            let text: Vec<String> = ev
                .args
                .iter()
                .map(|a| {
                    a.value
                        .as_ref()
                        .map(|v| v.to_string())
                        .or_else(|| a.description.clone())
                        .unwrap_or_default()
                })
                .collect();
            sink.lock()
                .unwrap()
                .push(format!("{kind}: {}", text.join(" ")));
        }
    });
    let mut thrown = page.event_listener::<EventExceptionThrown>().await.unwrap();
    let sink = console.clone();
    tokio::spawn(async move {
        while let Some(ev) = thrown.next().await {
            let d = &ev.exception_details;
            let what = d
                .exception
                .as_ref()
                .and_then(|e| e.description.clone())
                .unwrap_or_else(|| d.text.clone());
            sink.lock().unwrap().push(format!(
                "exception: {what} at {}:{}",
                d.url.clone().unwrap_or_default(),
                d.line_number
            ));
        }
    });
    let mut log = page.event_listener::<EventEntryAdded>().await.unwrap();
    let sink = console.clone();
    tokio::spawn(async move {
        while let Some(ev) = log.next().await {
            let e = &ev.entry;
            let level = e.level.as_ref().to_owned();
            if level == "error" || level == "warning" {
                sink.lock().unwrap().push(format!(
                    "log.{level}: {} {}",
                    e.text,
                    e.url.clone().unwrap_or_default()
                ));
            }
        }
    });
    page.enable_log().await.unwrap();
    page.enable_runtime().await.unwrap();
}

/// A console entry the flow causes on purpose: the `401`s of a wrong password, of an
/// expired session and of the check that logout ended the session (Chromium logs every
/// non-2xx fetch as "Failed to load resource").
fn expected_console_entry(entry: &str) -> bool {
    entry.contains("Failed to load resource")
        && entry.contains("status of 401")
        && ["/auth/login", "/auth/api-keys", "/auth/me"]
            .iter()
            .any(|path| entry.ends_with(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    let chromium = match chromium_path() {
        Ok(path) => path,
        Err(missing) => {
            let missing = missing.display();
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("no Chromium at {missing} (CI=true): .ci/run installs it");
            }
            eprintln!(
                "SKIPPED dashboard_in_a_real_browser: no Chromium at {missing} \
                 (apt-get install -y chromium, or set LLMO_CHROMIUM)"
            );
            return;
        }
    };
    let started = Instant::now();
    match tokio::time::timeout(OVERALL, run(chromium)).await {
        Ok(()) => eprintln!(
            "browser flow passed in {:.1} s; screenshots in target/browser-artifacts/",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => panic!("the browser flow took longer than {OVERALL:?}"),
    }
}

async fn run(chromium: PathBuf) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mock = fixture_mock().await;
    let app = TestApp::spawn(&mock.base_url()).await;
    let dir = artifacts_dir();
    for old in std::fs::read_dir(&dir).unwrap().flatten() {
        if old.path().extension().is_some_and(|e| e == "png") {
            let _ = std::fs::remove_file(old.path());
        }
    }

    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(chromium)
        .new_headless_mode()
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(DESKTOP.0 as u32, DESKTOP.1 as u32)
        .viewport(Viewport {
            width: DESKTOP.0 as u32,
            height: DESKTOP.1 as u32,
            device_scale_factor: Some(1.0),
            emulating_mobile: false,
            is_landscape: true,
            has_touch: false,
        })
        .args([
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .build()
        .expect("browser config");
    let (mut browser, mut handler) = Browser::launch(config).await.expect("launching Chromium");
    let handler_task = tokio::spawn(async move { while handler.next().await.is_some() {} });

    // The dashboard may copy to the clipboard and the test reads it back.
    for name in ["clipboard-read", "clipboard-write"] {
        let mut perm = PermissionDescriptor::new(name);
        perm.allow_without_sanitization = Some(true);
        let mut params = SetPermissionParams::new(perm, PermissionSetting::Granted);
        params.origin = Some(app.admin.clone());
        browser
            .execute(params)
            .await
            .expect("granting clipboard access");
    }

    let page = browser.new_page("about:blank").await.expect("new page");
    let console: Console = Arc::default();
    listen_to_console(&page, &console).await;
    let ui = Ui {
        page,
        admin: app.admin.clone(),
        dir,
        console: console.clone(),
        size: Mutex::new(DESKTOP),
    };

    flow(&ui, &app, &mock).await;

    let console = console.lock().unwrap().clone();
    let unexpected: Vec<&String> = console
        .iter()
        .filter(|e| !expected_console_entry(e))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the browser console has errors:\n  {}",
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );

    browser.close().await.ok();
    browser.wait().await.ok();
    handler_task.abort();
}

async fn flow(ui: &Ui, app: &TestApp, mock: &MockUpstreamHandle) {
    // ---- Without a session every page but login and signup goes to /login. ----
    for path in ["/", "/customers", "/customers/acme-corp", "/settings"] {
        ui.goto(path).await;
        assert_eq!(ui.path().await, "/login", "{path} without a session");
    }
    assert_eq!(
        ui.eval::<String>("location.search").await,
        "?next=%2Fsettings",
        "the login page knows where to return"
    );
    ui.wait_visible("#login-form").await;
    ui.shot("01-login").await;

    // ---- Sign up. ----
    ui.goto("/signup").await;
    ui.wait_visible("#signup-form").await;
    ui.shot("02-signup").await;
    ui.fill("#email", EMAIL).await;
    ui.fill("#password", "short").await;
    ui.click("#signup-submit").await;
    ui.wait_text(
        "#signup-error",
        "Choose a password of at least 8 characters.",
    )
    .await;
    ui.shot("02b-signup-error").await;
    ui.fill("#name", "Ada").await;
    ui.fill("#password", PASSWORD).await;
    ui.click("#signup-submit").await;

    // ---- Onboarding: the key, shown once, and snippets with the real URL and key. ----
    ui.wait_visible("#onboarding").await;
    ui.wait_hidden("#signup-form").await;
    ui.wait_for(
        "the new key",
        "document.getElementById('new-key').textContent.startsWith('llmo_sk_')",
    )
    .await;
    let key = ui.text("#new-key").await;
    assert!(
        key.len() >= 40 && key[8..].chars().all(|c| c.is_ascii_alphanumeric()),
        "key {key:?}"
    );
    ui.wait_text("#user-email", EMAIL).await;
    ui.wait_text("#onboarding-title", "You're all set, Ada")
        .await;
    let proxy = app.proxy.clone();
    ui.wait_text("#base-url-openai", &format!("{proxy}/v1"))
        .await;
    ui.wait_text("#base-url-anthropic", &format!("{proxy}/anthropic"))
        .await;
    let code = ui.text("#snippet-code").await;
    assert!(
        code.contains(&format!("base_url=\"{proxy}/v1\"")) && code.contains(&key),
        "python snippet:\n{code}"
    );
    ui.click("#snippet-lang-curl").await;
    ui.wait_text_contains(
        "#snippet-code",
        &format!("curl {proxy}/v1/chat/completions"),
    )
    .await;
    ui.wait_text_contains("#snippet-code", &format!("Authorization: Bearer {key}"))
        .await;
    ui.click("#snippet-provider-anthropic").await;
    ui.wait_text_contains(
        "#snippet-code",
        &format!("curl {proxy}/anthropic/v1/messages"),
    )
    .await;
    ui.click("#snippet-mode-passthrough").await;
    ui.wait_text_contains("#snippet-code", &format!("X-LLMObserve-Key: {key}"))
        .await;
    ui.wait_text_contains(
        "#snippet-env",
        &format!("ANTHROPIC_BASE_URL=\"{proxy}/anthropic\""),
    )
    .await;
    ui.click("#snippet-provider-openai").await;
    ui.click("#snippet-lang-python").await;
    ui.click("#snippet-mode-managed").await;

    // Copy the key: the button says so and the clipboard holds the key.
    ui.click("#copy-key").await;
    ui.wait_text("#copy-key", "Copied!").await;
    let clip: String = ui.eval("navigator.clipboard.readText()").await;
    assert_eq!(clip, key, "the clipboard holds the key");

    // A provider key for managed mode, stored from the onboarding form.
    ui.wait_text("#onboarding-provider option:checked", "OpenAI")
        .await;
    ui.fill("#onboarding-provider-key", MANAGED_OPENAI_KEY)
        .await;
    ui.click("#onboarding-provider-save").await;
    ui.wait_text(
        "#onboarding-provider-status",
        "Saved: OpenAI key ending in 4242.",
    )
    .await;
    ui.shot("03-onboarding").await;
    phone_shot(ui, "03-onboarding").await;

    // ---- Before the first call: the empty states. ----
    ui.click("#go-dashboard").await;
    ui.wait_path("/").await;
    ui.wait_visible("#empty-state").await;
    ui.wait_hidden("#overview").await;
    ui.wait_text("#total-cost", "$0.00").await;
    ui.wait_text("#calls", "0").await;
    ui.wait_text_contains("#empty-snippets #snippet-code", &format!("{proxy}/v1"))
        .await;
    ui.shot("03c-dashboard-empty").await;
    ui.goto("/customers").await;
    ui.wait_visible("#customers-empty").await;
    ui.wait_hidden("#customers-card").await;
    ui.shot("03d-customers-empty").await;

    // ---- Real proxied calls with that key. ----
    let call = |path: &'static str, fixture: &'static str, body: &'static str| {
        app.http
            .post(app.url(path))
            .header("x-test-fixture", fixture)
            .header("content-type", "application/json")
            .body(body)
    };
    let openai = || call("/v1/chat/completions", "openai/chat_completion.json", CHAT);
    let anthropic = || {
        call(
            "/anthropic/v1/messages",
            "anthropic/messages.json",
            MESSAGES,
        )
    };
    let passthrough = |rb: reqwest::RequestBuilder, customer: &str| {
        rb.header("x-llmobserve-key", &key)
            .header("authorization", "Bearer sk-client-own")
            .header("x-customer-id", customer)
    };
    for _ in 0..2 {
        let r = passthrough(anthropic(), ACME).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = passthrough(openai(), ACME).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..3 {
        let r = passthrough(openai(), GLOBEX).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Managed: the LLMObserve key where the provider key goes; no customer.
    let r = openai()
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let managed = mock.requests().pop().unwrap();
    assert_eq!(
        managed.header("authorization"),
        Some(format!("Bearer {MANAGED_OPENAI_KEY}").as_str()),
        "managed mode attached the provider key stored in the browser"
    );
    assert_eq!(mock.request_count(), 7);
    app.app.flush_events().await;

    // ---- The dashboard: exact totals, breakdowns, recent calls. ----
    ui.click("#nav-dashboard").await;
    ui.wait_path("/").await;
    ui.wait_text("#total-cost", "$0.05615").await;
    assert_eq!(
        ui.eval::<String>("document.getElementById('total-cost').title")
            .await,
        "$0.056147",
        "the exact total is in the tooltip"
    );
    ui.wait_text("#calls", "7").await;
    ui.wait_text("#unattributed-cost", "$0.00436").await;
    ui.wait_text("#unpriced-calls", "0").await;
    let by_model = ui.rows("#by-model tr[data-model]").await;
    let by_model: Vec<(&str, &str, &str)> = by_model
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        by_model,
        [
            ("claude-sonnet-4-5-20250929Anthropic", "2", "$0.03435"),
            ("gpt-4o-2024-08-06OpenAI", "5", "$0.0218"),
        ],
        "by model, costliest first"
    );
    let by_provider = ui.rows("#by-provider tr[data-provider]").await;
    let by_provider: Vec<(&str, &str, &str)> = by_provider
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        by_provider,
        [("Anthropic", "2", "$0.03435"), ("OpenAI", "5", "$0.0218")]
    );
    ui.wait_for(
        "7 recent calls",
        "document.querySelectorAll('#events-table tr[data-event-id]').length === 7",
    )
    .await;
    ui.wait_for(
        "the cost chart",
        "document.querySelectorAll('#cost-chart svg rect').length > 0",
    )
    .await;
    ui.wait_hidden("#empty-state").await;
    ui.shot("04-dashboard").await;

    // A model filter from the breakdown, then clear it.
    ui.click("#by-model tr[data-model^='claude'] .link-button")
        .await;
    ui.wait_text("#total-cost", "$0.03435").await;
    ui.wait_text("#calls", "2").await;
    ui.wait_for(
        "2 recent calls",
        "document.querySelectorAll('#events-table tr[data-event-id]').length === 2",
    )
    .await;
    ui.shot("04b-dashboard-filtered").await;
    ui.click("#filters-clear").await;
    ui.wait_text("#total-cost", "$0.05615").await;
    phone_shot(ui, "04-dashboard").await;

    // ---- Customers, costliest first. ----
    ui.click("#nav-customers").await;
    ui.wait_path("/customers").await;
    ui.wait_for(
        "2 customers",
        "document.querySelectorAll('#customers-table tr[data-customer]').length === 2",
    )
    .await;
    let customers: Vec<(String, String, String)> = ui
        .eval(
            "[...document.querySelectorAll('#customers-table tr[data-customer]')].map(tr => [tr.dataset.customer, tr.cells[1].textContent.trim(), tr.cells[4].textContent.trim()])",
        )
        .await;
    assert_eq!(
        customers,
        [
            (ACME.into(), "3".into(), "$0.03871".into()),
            (GLOBEX.into(), "3".into(), "$0.01308".into()),
        ]
    );
    ui.wait_text_contains("#customers-summary", "2 customers")
        .await;
    ui.wait_hidden("#customers-empty").await;
    ui.wait_visible("#customers-card").await;
    ui.shot("05-customers").await;
    phone_shot(ui, "05-customers").await;

    // ---- One customer. ----
    ui.click(&format!("#customers-table tr[data-customer='{ACME}'] a"))
        .await;
    ui.wait_path(&format!("/customers/{ACME}")).await;
    ui.wait_text("#customer-id", ACME).await;
    ui.wait_text("#customer-cost", "$0.03871").await;
    ui.wait_text("#customer-calls", "3").await;
    let models = ui.rows("#customer-by-model tr[data-model]").await;
    let models: Vec<(&str, &str, &str)> = models
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        models,
        [
            ("claude-sonnet-4-5-20250929Anthropic", "2", "$0.03435"),
            ("gpt-4o-2024-08-06OpenAI", "1", "$0.00436"),
        ]
    );
    ui.wait_for(
        "3 calls of this customer",
        "document.querySelectorAll('#events-table tr[data-event-id]').length === 3",
    )
    .await;
    ui.wait_for(
        "the customer chart",
        "document.querySelectorAll('#customer-chart svg rect').length > 0",
    )
    .await;
    ui.shot("06-customer").await;
    phone_shot(ui, "06-customer").await;

    // ---- Settings: create a key (shown once), revoke it with confirmation. ----
    ui.click("#nav-settings").await;
    ui.wait_path("/settings").await;
    ui.wait_for(
        "one API key",
        "document.querySelectorAll('#api-keys tr[data-key-id]').length === 1",
    )
    .await;
    ui.wait_text_contains("#provider-keys tr[data-provider='openai']", "4242")
        .await;
    ui.wait_text("#account-email", EMAIL).await;
    ui.wait_text("#account-proxy", &proxy).await;
    let user_id = ui.text("#account-id").await;
    ui.shot("07-settings").await;
    phone_shot(ui, "07-settings").await;

    ui.fill("#key-name", "ci-key").await;
    ui.click("#create-key").await;
    ui.wait_visible("#new-key-panel").await;
    ui.wait_for(
        "the created key",
        "document.getElementById('new-key').textContent.startsWith('llmo_sk_')",
    )
    .await;
    let new_key = ui.text("#new-key").await;
    assert_ne!(new_key, key);
    ui.wait_for(
        "two API keys",
        "document.querySelectorAll('#api-keys tr[data-key-id]').length === 2",
    )
    .await;
    ui.click("#copy-key").await;
    ui.wait_text("#copy-key", "Copied!").await;
    let clip: String = ui.eval("navigator.clipboard.readText()").await;
    assert_eq!(clip, new_key);
    ui.shot("08-settings-new-key").await;

    let r = openai()
        .header("x-llmobserve-key", &new_key)
        .header("authorization", "Bearer sk-client-own")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the new key works");

    let new_key_id: String = ui
        .eval(
            "[...document.querySelectorAll('#api-keys tr[data-key-id]')].find(tr => tr.cells[0].textContent.trim() === 'ci-key').dataset.keyId",
        )
        .await;
    let row = format!("#api-keys tr[data-key-id='{new_key_id}']");
    ui.click(&format!("{row} .revoke-key")).await;
    ui.wait_visible("#confirm-dialog").await;
    ui.wait_text("#confirm-title", "Revoke this key?").await;
    ui.shot_window("09-revoke-confirm").await;
    ui.click("#confirm-ok").await;
    ui.wait_hidden("#confirm-dialog").await;
    ui.wait_text_contains(&row, "Revoked").await;
    ui.wait_hidden("#new-key-panel").await; // the revoked key is no longer offered
    ui.wait_for(
        "the revoke button to go",
        &format!(
            "!document.querySelector({})",
            js(&format!("{row} .revoke-key"))
        ),
    )
    .await;
    ui.shot("10-settings-revoked").await;
    phone_shot(ui, "10-settings-revoked").await;

    let r = openai()
        .header("x-llmobserve-key", &new_key)
        .header("authorization", "Bearer sk-client-own")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the revoked key is refused");
    let r = openai()
        .header("x-llmobserve-key", &key)
        .header("authorization", "Bearer sk-client-own")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the first key still works");
    assert_eq!(mock.request_count(), 9, "the revoked key reached nothing");
    app.app.flush_events().await;

    // ---- An expired session: in an open page, then on navigation. ----
    let expired = {
        use llmobserve::auth::jwt::{JwtKeys, SESSION_TTL_SECS, now_secs};
        JwtKeys::new(&app.app.state.jwt_secret)
            .issue(&user_id, 0, now_secs() - SESSION_TTL_SECS - 3600)
            .unwrap()
            .token
    };
    set_session_cookie(ui, &expired).await;
    ui.fill("#key-name", "too-late").await;
    ui.click("#create-key").await;
    ui.wait_path("/login").await;
    ui.wait_text(
        "#login-notice",
        "Your session has expired. Please log in again.",
    )
    .await;
    ui.shot("11-login-expired").await;
    ui.goto("/customers/acme-corp").await;
    assert_eq!(
        ui.path().await,
        "/login",
        "an expired token lands on /login"
    );

    // ---- A wrong password says so; the right one returns to the page asked for. ----
    ui.fill("#email", EMAIL).await;
    ui.fill("#password", "not the password").await;
    ui.click("#login-submit").await;
    ui.wait_text(
        "#login-error",
        "Wrong email or password. Check both and try again.",
    )
    .await;
    ui.shot("12-login-wrong-password").await;
    phone_shot(ui, "12-login-wrong-password").await;
    ui.fill("#password", PASSWORD).await;
    ui.click("#login-submit").await;
    ui.wait_path(&format!("/customers/{ACME}")).await;
    ui.wait_text("#customer-cost", "$0.03871").await;
    ui.click("#nav-dashboard").await;
    ui.wait_path("/").await;
    ui.wait_text("#calls", "9").await;
    ui.wait_text("#total-cost", "$0.06487").await; // 0.056147 + 2 × 0.00436

    // The phone menu opens and shows the links.
    ui.resize(PHONE).await;
    ui.wait_visible("#nav-toggle").await;
    ui.click("#nav-toggle").await;
    ui.wait_visible("#nav-settings").await;
    ui.wait_visible("#logout").await;
    ui.shot_window("13-nav-menu-phone").await;
    ui.resize(DESKTOP).await;

    // ---- Log out: back to /login, and / stays there. ----
    ui.goto("/").await;
    ui.click("#logout").await;
    ui.wait_path("/login").await;
    ui.wait_text("#login-notice", "You have been logged out.")
        .await;
    ui.shot("14-logged-out").await;
    for path in ["/", "/settings"] {
        ui.goto(path).await;
        assert_eq!(ui.path().await, "/login", "{path} after logout");
    }
    let status: u16 = ui
        .eval("fetch('/auth/me', {credentials: 'same-origin'}).then(r => r.status)")
        .await;
    assert_eq!(status, 401, "the session cookie is gone");
}

/// The current page at phone width (`<name>-phone.png`), checked for sideways
/// scrolling; then back to the desktop size.
async fn phone_shot(ui: &Ui, name: &str) {
    ui.resize(PHONE).await;
    ui.assert_no_sideways_scroll(&format!("{name} at phone width"))
        .await;
    ui.shot(&format!("{name}-phone")).await;
    ui.resize(DESKTOP).await;
    ui.assert_no_sideways_scroll(&format!("{name} at laptop width"))
        .await;
}

async fn set_session_cookie(ui: &Ui, token: &str) {
    let mut cookie = CookieParam::new("llmo_session", token);
    cookie.url = Some(ui.admin.clone());
    cookie.path = Some("/".into());
    cookie.http_only = Some(true);
    cookie.same_site = Some(CookieSameSite::Strict);
    ui.page
        .set_cookie(cookie)
        .await
        .expect("setting the cookie");
}
