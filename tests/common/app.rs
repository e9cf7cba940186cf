//! `TestApp`: a whole LLMObserve (both listeners, redb in a temp dir) with every
//! upstream pointed at one mock, plus helpers to make accounts and read events.

use std::time::Duration;

use llmobserve::app::RunningApp;
use llmobserve::config::Config;
use llmobserve::store::model::CostEvent;

use super::mock_upstream::{ca_pem_path, install_crypto_provider};

pub struct TestApp {
    pub app: RunningApp,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of the proxy listener.
    pub proxy: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
}

/// The password of accounts made with [`TestApp::signup`].
pub const PASSWORD: &str = "correct horse battery";

/// An account made through `POST /auth/signup`, as the dashboard makes one.
pub struct SignedUp {
    /// The session token (JWT).
    pub token: String,
    pub user_id: String,
    /// The first `llmo_sk_` key, in full.
    pub key: String,
    pub key_id: String,
}

/// A freshly created account and its first key.
pub struct Account {
    pub user_id: String,
    pub key: String,
    pub key_id: String,
}

impl TestApp {
    /// Starts with every provider's upstream at `upstream_base`, trusting the test CA.
    pub async fn spawn(upstream_base: &str) -> TestApp {
        Self::spawn_with(upstream_base, |_| {}).await
    }

    pub async fn spawn_with(upstream_base: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::spawn_in(dir, upstream_base, tweak).await
    }

    async fn spawn_in(
        dir: tempfile::TempDir,
        upstream_base: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        install_crypto_provider();
        let mut config = Config::for_data_dir(dir.path())
            .with_all_upstreams(upstream_base)
            .expect("upstream url");
        config.upstream_ca = Some(ca_pem_path());
        config.shutdown_grace = Duration::from_secs(5);
        tweak(&mut config);
        let app = llmobserve::app::start(config).await.expect("app starts");
        let proxy = format!("http://{}", app.proxy_addr);
        let admin = format!("http://{}", app.admin_addr);
        TestApp {
            app,
            dir,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            proxy,
            admin,
        }
    }

    /// Shuts down and starts again on the same data dir (same upstream).
    pub async fn restart(self, upstream_base: &str) -> TestApp {
        self.restart_with(upstream_base, |_| {}).await
    }

    /// [`restart`](Self::restart) with a config tweak for the new start.
    pub async fn restart_with(
        self,
        upstream_base: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let TestApp { app, dir, .. } = self;
        app.shutdown().await;
        Self::spawn_in(dir, upstream_base, tweak).await
    }

    /// Signs up through the admin API with [`PASSWORD`]; the answer must be `201`.
    pub async fn signup(&self, email: &str) -> SignedUp {
        let r = self
            .http
            .post(format!("{}/auth/signup", self.admin))
            .json(&serde_json::json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "signup of {email}");
        let v: serde_json::Value = r.json().await.unwrap();
        let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
        SignedUp {
            token: text(&v["token"]),
            user_id: text(&v["user"]["id"]),
            key: text(&v["api_key"]["key"]),
            key_id: text(&v["api_key"]["id"]),
        }
    }

    /// Logs in through the admin API with [`PASSWORD`]; returns the new session token.
    pub async fn login(&self, email: &str) -> String {
        let r = self
            .http
            .post(format!("{}/auth/login", self.admin))
            .json(&serde_json::json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login of {email}");
        let v: serde_json::Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// `GET` on the admin listener with a session token: status and JSON body (null
    /// when the body is not JSON).
    pub async fn api_get(&self, token: &str, path_and_query: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.admin))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Creates an account through the same code path the CLI uses.
    pub async fn account(&self, email: &str) -> Account {
        let state = self.app.state.clone();
        let email = email.to_owned();
        let (user, key) = tokio::task::spawn_blocking(move || {
            llmobserve::accounts::create_account(&state, &email, Some("password123"), None)
        })
        .await
        .unwrap()
        .expect("account created");
        Account {
            user_id: user.id,
            key: key.secret.expose().to_owned(),
            key_id: key.record.id,
        }
    }

    /// Stores a provider key for managed mode, as Settings does.
    pub async fn provider_key(
        &self,
        user_id: &str,
        provider: llmobserve::providers::Provider,
        key: &str,
    ) {
        let state = self.app.state.clone();
        let (user_id, key) = (user_id.to_owned(), key.to_owned());
        tokio::task::spawn_blocking(move || {
            llmobserve::accounts::set_provider_key(&state, &user_id, provider, &key)
        })
        .await
        .unwrap()
        .expect("provider key stored");
    }

    /// A POST to the proxy in pass-through mode (`X-LLMObserve-Key: key`).
    pub fn passthrough(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("x-llmobserve-key", key)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.proxy, path)
    }

    /// Every event of `user_id`, newest first, after the writer has committed.
    pub async fn events(&self, user_id: &str) -> Vec<CostEvent> {
        self.app.flush_events().await;
        let store = self.app.state.store.clone();
        let user_id = user_id.to_owned();
        tokio::task::spawn_blocking(move || store.events_desc(&user_id, None, usize::MAX, |_| true))
            .await
            .unwrap()
            .unwrap()
    }

    /// Waits (bounded) until `user_id` has `n` events, then returns them newest first.
    pub async fn wait_events(&self, user_id: &str, n: usize) -> Vec<CostEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ev = self.events(user_id).await;
            if ev.len() >= n || tokio::time::Instant::now() > deadline {
                return ev;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The single event of `user_id` (panics unless there is exactly one).
    pub async fn only_event(&self, user_id: &str) -> CostEvent {
        let mut ev = self.wait_events(user_id, 1).await;
        assert_eq!(ev.len(), 1, "expected one event, got {ev:#?}");
        ev.remove(0)
    }
}
