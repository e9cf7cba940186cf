//! `--callgrind`: instructions per request, counted by valgrind's callgrind.
//!
//! Wall-clock numbers on a shared 2-core machine move by ±20% from run to run;
//! instruction counts do not (the same binary and inputs give the same count whatever
//! else the machine is doing). So this is the measure to compare two builds of the hot
//! path with: the pass-through and LLMObserve each run under callgrind, get a warm-up,
//! then a fixed number of requests on one connection per scenario, and the counter is
//! read before and after (`callgrind_control`). Everything the process did in between
//! is counted: workers, the event writer and the kernel-facing parts of the syscalls
//! (not the kernel itself, which callgrind cannot see).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::process::Command;

use crate::load::{self, LoadSpec, Scenario};
use crate::report::{BASELINE, LLMOBSERVE};
use crate::spawn_role;

/// Requests before counting starts (connection set-up, pools, caches).
const WARMUP: u64 = 300;

#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub scenario: String,
    pub target: String,
    pub requests: u64,
    pub instructions: u64,
    pub instructions_per_request: f64,
    /// The event writer thread's part of it. At one connection each commit carries few
    /// events, so this overstates what the writer costs per event under load.
    pub writer_per_request: f64,
    /// Errors and wrong bodies during the counted requests (must be 0).
    pub errors: u64,
}

/// Runs both proxies under callgrind against `mock`; returns one count per
/// (scenario, target). The dumps stay in `work` (one file per scenario, in order, for
/// `callgrind_annotate`); LLMObserve's database goes under `data`.
pub async fn run(
    up: &[String],
    scenarios: &[Scenario],
    key_header: &str,
    requests: u64,
    work: &Path,
    data: &Path,
) -> anyhow::Result<Vec<Count>> {
    let valgrind = which("valgrind").context(
        "--callgrind needs valgrind and callgrind_control on PATH (Debian: apt install valgrind)",
    )?;
    which("callgrind_control").context("callgrind_control not found")?;
    let mut out = Vec::new();
    for (target, role) in [(BASELINE, "baseline"), (LLMOBSERVE, "llmobserve")] {
        let prefix = work.join(format!("callgrind.{role}"));
        let wrapper = vec![
            valgrind.display().to_string(),
            "--tool=callgrind".to_owned(),
            format!("--callgrind-out-file={}.%p", prefix.display()),
            // One dump per thread, so the event writer's share can be told apart.
            "--separate-threads=yes".to_owned(),
        ];
        let mut args = up.to_vec();
        if role == "llmobserve" {
            args.extend([
                "--data-dir".to_owned(),
                data.join("callgrind-data").display().to_string(),
            ]);
        }
        eprintln!("callgrind: starting {target} under valgrind ...");
        let server = spawn_role(role, &args, Some(&wrapper)).await?;
        for s in scenarios {
            let s = with_key(s, key_header, server.key.as_deref())?;
            let spec = |n| LoadSpec {
                concurrency: 1,
                duration: Duration::from_secs(600),
                warmup: Duration::ZERO,
                requests_per_conn: Some(n),
                pace: None,
            };
            load::run(server.addr, &s, spec(WARMUP)).await;
            settle().await;
            control(&["-z"], server.pid).await?;
            let r = load::run(server.addr, &s, spec(requests)).await;
            // Let the event writer commit what these requests produced.
            settle().await;
            let d = dump_and_read(server.pid, work, &prefix).await?;
            let done = r.answered.max(1);
            let per = |n: u64| n as f64 / done as f64;
            eprintln!(
                "callgrind: {:<7} {target:<13} {:>10.0} instructions/request ({:.0} in the writer)",
                s.name,
                per(d.all),
                per(d.writer)
            );
            out.push(Count {
                scenario: s.name.to_owned(),
                target: target.to_owned(),
                requests: done,
                instructions: d.all,
                instructions_per_request: per(d.all),
                writer_per_request: per(d.writer),
                errors: r.errors + r.wrong_bytes,
            });
        }
        server.stop().await;
    }
    Ok(out)
}

/// The scenario with LLMObserve's key swapped for the one this server printed.
fn with_key(s: &Scenario, header: &str, key: Option<&str>) -> anyhow::Result<Scenario> {
    let mut s = s.clone();
    if let Some(key) = key {
        s.headers.retain(|(k, _)| k.as_str() != header);
        s.headers.push((
            http::HeaderName::from_bytes(header.as_bytes())?,
            http::HeaderValue::from_str(key)?,
        ));
    }
    Ok(s)
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

async fn control(args: &[&str], pid: u32) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "callgrind_control {args:?} failed");
    Ok(())
}

/// Instructions since the last zeroing: all threads, and the event writer's thread alone.
#[derive(Debug, Clone, Copy, Default)]
struct Dumped {
    all: u64,
    writer: u64,
}

/// Dumps (and zeroes) the counters, then reads the totals of the new dump files (one per
/// thread).
async fn dump_and_read(pid: u32, dir: &Path, prefix: &Path) -> anyhow::Result<Dumped> {
    let before = dumps(dir, prefix);
    control(&["-d"], pid).await?;
    let mut seen = 0;
    let mut stable = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let new: Vec<PathBuf> = dumps(dir, prefix)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        // Files appear one thread at a time, each complete once it has its totals line.
        let texts: Vec<String> = new
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect();
        let complete = !texts.is_empty() && texts.iter().all(|t| total(t).is_some());
        stable = if complete && new.len() == seen {
            stable + 1
        } else {
            0
        };
        seen = new.len();
        if stable >= 4 {
            let mut d = Dumped::default();
            for t in &texts {
                let n = total(t).unwrap_or(0);
                d.all += n;
                if t.contains("llmobserve::store::writer::commit") {
                    d.writer += n;
                }
            }
            return Ok(d);
        }
    }
    anyhow::bail!("callgrind wrote no complete dump for pid {pid}")
}

fn dumps(dir: &Path, prefix: &Path) -> Vec<PathBuf> {
    let stem = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&stem))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The event count of a callgrind dump: its `totals:` (or `summary:`) line, first event
/// (instructions, `Ir`).
fn total(text: &str) -> Option<u64> {
    text.lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_totals_line() {
        let dump =
            "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=main\n3 10\ntotals: 123456\n";
        assert_eq!(total(dump), Some(123_456));
        assert_eq!(total("summary: 77\n"), Some(77));
        assert_eq!(total("events: Ir\n"), None);
    }
}
