//! nginx as a second pass-through baseline, when the machine has it (Debian:
//! `apt-get install nginx-light`).
//!
//! The in-repo forwarder (`baseline`) is the same hyper stack as LLMObserve, so it shows
//! what metering adds; nginx is the proxy an operator would otherwise put in front of an
//! app, so it shows where both stand against a well-known one. It runs as set up for an
//! API gateway: keep-alive on both sides (no reconnect every 1,000 requests), upstream
//! connections pooled per worker, neither body buffered (an SSE chunk goes out as it
//! arrives), no access log, one worker process per core.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

/// Where the nginx binary is: `choice` is `auto` (on `PATH`, then `/usr/sbin`, where
/// Debian puts it), `off`, or a path.
pub fn find(choice: &str) -> Option<PathBuf> {
    match choice {
        "off" => None,
        "auto" => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain([PathBuf::from("/usr/sbin")])
                .map(|d| d.join("nginx"))
                .find(|p| p.is_file())
        }
        other => Some(PathBuf::from(other)),
    }
}

/// The configuration: `listen` forwarding everything to `upstream`, with `workers`
/// worker processes, every file under `dir`.
pub fn config(dir: &Path, listen: SocketAddr, upstream: SocketAddr, workers: usize) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream mock {{
        server {upstream};
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {listen} backlog=4096;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"
    )
}

/// A running nginx: its master process (killed with its workers on drop) and address.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    /// The master and its workers: the target's CPU and memory are theirs together.
    pub pids: Vec<u32>,
    /// Its process group, until it is stopped.
    group: Option<rustix::process::Pid>,
}

/// Starts `bin` in `dir` (created) in front of `upstream`; returns once it accepts
/// connections and all its workers are up.
pub async fn start(
    bin: &Path,
    dir: &Path,
    upstream: SocketAddr,
    workers: usize,
) -> anyhow::Result<Nginx> {
    std::fs::create_dir_all(dir)?;
    // nginx binds the port itself: take a free one and hand it over (a port taken in
    // between makes the start fail below, clearly).
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, listen, upstream, workers))?;
    let mut child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // Its own process group, so a stop reaches the workers too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let master = child.id().context("nginx pid")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            anyhow::bail!("nginx exited at start ({status}): {}", log.trim());
        }
        let workers_up = children_of(master);
        if workers_up.len() >= workers && tokio::net::TcpStream::connect(listen).await.is_ok() {
            let mut pids = vec![master];
            pids.extend(workers_up);
            return Ok(Nginx {
                child,
                addr: listen,
                pids,
                group: rustix::process::Pid::from_raw(master as i32),
            });
        }
        if Instant::now() > deadline {
            anyhow::bail!("nginx did not start listening on {listen} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Nginx {
    /// Fast shutdown of the master and its workers (SIGTERM to the group).
    pub async fn stop(mut self) {
        if let Some(group) = self.group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_ok()
        {
            self.group = None;
        }
    }
}

impl Drop for Nginx {
    /// A bench that fails midway must not leave workers behind: the child handle's own
    /// kill reaches the master only.
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

/// Processes whose parent is `pid`, from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                // The parent is field 4.
                .and_then(|s| crate::stat_fields(&s)?.nth(4 - 3)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_connections_and_streams_bodies() {
        let c = config(
            Path::new("/tmp/x"),
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:9090".parse().unwrap(),
            2,
        );
        for line in [
            "worker_processes 2;",
            "listen 127.0.0.1:8080 backlog=4096;",
            "server 127.0.0.1:9090;",
            "keepalive 1024;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "proxy_buffering off;",
            "proxy_request_buffering off;",
            "access_log off;",
            "pid /tmp/x/nginx.pid;",
        ] {
            assert!(c.contains(line), "missing {line:?} in\n{c}");
        }
        // Both sides' keep-alive limits are raised above nginx's default of 1,000.
        assert_eq!(c.matches("keepalive_requests 100000000;").count(), 2);
    }

    #[test]
    fn off_finds_nothing_and_a_path_is_taken_as_given() {
        assert_eq!(find("off"), None);
        assert_eq!(
            find("/opt/nginx/sbin/nginx"),
            Some(PathBuf::from("/opt/nginx/sbin/nginx"))
        );
    }

    /// Forwards a JSON answer and a stream through a real nginx, when there is one.
    #[tokio::test]
    async fn forwards_through_a_real_nginx() {
        let Some(bin) = find("auto") else {
            assert!(
                std::env::var("CI").is_err(),
                "nginx is required under CI (apt-get install nginx-light)"
            );
            eprintln!("skipping: no nginx on this machine (apt-get install nginx-light)");
            return;
        };
        let mock = crate::mock::start(false).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let nginx = start(&bin, dir.path(), mock.addr, 1).await.unwrap();
        assert_eq!(nginx.pids.len(), 2, "master and one worker");
        let scenarios = crate::scenarios("llmo_sk_unused", 3).unwrap();
        for s in &scenarios {
            let spec = crate::load::LoadSpec {
                concurrency: 2,
                duration: Duration::from_secs(5),
                warmup: Duration::ZERO,
                requests_per_conn: Some(5),
                pace: None,
            };
            let r = crate::load::run(nginx.addr, s, spec).await;
            assert_eq!((r.ok, r.errors, r.wrong_bytes), (10, 0, 0), "{}", s.name);
        }
        nginx.stop().await;
    }
}
