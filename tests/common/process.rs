//! The real `llmobserve` binary as a child process: for crash, signal and log tests.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::mock_upstream::ca_pem_path;

pub struct Server {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:PORT` of the proxy.
    pub proxy: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    /// Every line the server logged (JSON), kept for inspection.
    pub logs: Arc<Mutex<Vec<String>>>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_llmobserve")
}

/// `llmobserve account create` on `data_dir`; returns the printed key.
pub fn create_account(data_dir: &Path, email: &str) -> String {
    let out = std::process::Command::new(bin())
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["account", "create", "--email", email])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find(|l| l.starts_with("llmo_sk_"))
        .expect("key printed")
        .to_owned()
}

/// Starts the binary on ephemeral ports with OpenAI, Anthropic and Gemini pointed at
/// `upstream`, JSON logs at `log_level`, and waits until it listens.
pub async fn start_server(data_dir: &Path, upstream: &str, log_level: &str) -> Server {
    start_server_with(data_dir, upstream, log_level, &[]).await
}

/// [`start_server`] with extra command-line flags.
pub async fn start_server_with(
    data_dir: &Path,
    upstream: &str,
    log_level: &str,
    extra_args: &[&str],
) -> Server {
    let mut child = tokio::process::Command::new(bin())
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(extra_args)
        .args(["--proxy-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--log-format", "json", "--shutdown-grace-ms", "10000"])
        .env("LLMO_OPENAI_BASE_URL", upstream)
        .env("LLMO_ANTHROPIC_BASE_URL", upstream)
        .env("LLMO_GEMINI_BASE_URL", upstream)
        .env("LLMO_UPSTREAM_CA", ca_pem_path())
        .env("LLMO_LOG", log_level)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let logs: Arc<Mutex<Vec<String>>> = Arc::default();
    let stderr = child.stderr.take().unwrap();
    let l = logs.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            l.lock().unwrap().push(line);
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let l = logs.clone();
    let (proxy, admin) = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            l.lock().unwrap().push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let (Some(p), Some(a)) = (
                    v["fields"]["proxy"].as_str(),
                    v["fields"]["dashboard"].as_str(),
                )
            {
                return (p.to_owned(), a.to_owned());
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server starts");
    // Keep reading its output so it never blocks on a full pipe.
    let l = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            l.lock().unwrap().push(line);
        }
    });
    Server {
        child,
        proxy,
        admin,
        logs,
    }
}

impl Server {
    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub async fn terminate(&mut self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exits within the grace period")
            .unwrap();
        assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    }
}
