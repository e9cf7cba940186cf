//! Configuration: the clap command line (every flag also an `LLMO_*` variable) and the
//! validated [`Config`] the rest of the program reads. Tests build `Config` directly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::providers::Provider;

#[derive(Debug, Parser)]
#[command(
    name = "llmobserve",
    version,
    about = "A transparent metering proxy for LLM APIs"
)]
pub struct Cli {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage accounts from the command line.
    Account {
        #[command(subcommand)]
        action: AccountAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountAction {
    /// Create an account and print its first llmo_sk_ key.
    Create {
        #[arg(long)]
        email: String,
        /// Password for dashboard login; without it the account can only use the key.
        #[arg(long, env = "LLMO_ACCOUNT_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Address of the proxy listener.
    #[arg(long, env = "LLMO_PROXY_ADDR", default_value = "127.0.0.1:8080")]
    pub proxy_addr: SocketAddr,
    /// Address of the admin listener (API and dashboard).
    #[arg(long, env = "LLMO_ADMIN_ADDR", default_value = "127.0.0.1:3000")]
    pub admin_addr: SocketAddr,
    /// Directory holding the database and generated secrets.
    #[arg(long, env = "LLMO_DATA_DIR", default_value = "./llmobserve-data")]
    pub data_dir: PathBuf,
    /// A TOML price file whose entries replace or add to the embedded tables.
    #[arg(long, env = "LLMO_PRICING_FILE")]
    pub pricing_file: Option<PathBuf>,
    /// Largest request body the proxy buffers; larger ones get 413.
    #[arg(long, env = "LLMO_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Timeout for connecting to an upstream, in milliseconds.
    #[arg(long, env = "LLMO_CONNECT_TIMEOUT_MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Timeout for the upstream's response headers, in milliseconds.
    #[arg(long, env = "LLMO_FIRST_BYTE_TIMEOUT_MS", default_value_t = 600_000)]
    pub first_byte_timeout_ms: u64,
    /// A streamed response with no bytes for this long is closed, in milliseconds.
    #[arg(long, env = "LLMO_STREAM_IDLE_TIMEOUT_MS", default_value_t = 300_000)]
    pub stream_idle_timeout_ms: u64,
    /// A client gets this long to send a request's headers (and an idle connection this
    /// long to start its next request), in milliseconds. Both listeners.
    #[arg(long, env = "LLMO_HEADER_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub header_read_timeout_ms: u64,
    /// A request body that sends no bytes for this long is refused (408), in
    /// milliseconds. Both listeners.
    #[arg(long, env = "LLMO_BODY_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_idle_timeout_ms: u64,
    /// Open connections per listener; past it a new connection gets a short 503.
    #[arg(long, env = "LLMO_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Threads serving proxy connections, each with its own runtime; 0 = one per core.
    #[arg(long, env = "LLMO_PROXY_WORKERS", default_value_t = 0)]
    pub proxy_workers: usize,
    /// Request-body bytes all in-flight requests of one listener may hold; past it 503.
    #[arg(long, env = "LLMO_MAX_BUFFERED_REQUEST_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_buffered_request_bytes: usize,
    /// Largest request head (request line and headers); past it 431.
    #[arg(long, env = "LLMO_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Extra PEM root certificate(s) to trust for upstream TLS.
    #[arg(long, env = "LLMO_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// Ask OpenAI-style streams for usage when the client did not, and hide that chunk.
    #[arg(long, env = "LLMO_INJECT_STREAM_USAGE", default_value_t = true, action = clap::ArgAction::Set)]
    pub inject_stream_usage: bool,
    /// Serve both listeners over TLS with this certificate chain (PEM).
    #[arg(long, env = "LLMO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "LLMO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Secret for signing sessions; generated into the data dir when unset.
    #[arg(long, env = "LLMO_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Key that encrypts stored provider keys; generated into the data dir when unset.
    #[arg(long, env = "LLMO_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Extra origins allowed to call the admin API cross-origin (comma separated).
    #[arg(long, env = "LLMO_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Proxy URL shown in the dashboard's snippets (default: derived from --proxy-addr).
    #[arg(long, env = "LLMO_PUBLIC_PROXY_URL")]
    pub public_proxy_url: Option<String>,
    /// How long shutdown waits for in-flight streams, in milliseconds.
    #[arg(long, env = "LLMO_SHUTDOWN_GRACE_MS", default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,
    /// Memory for the database's page cache, in MiB.
    #[arg(long, env = "LLMO_DB_CACHE_MIB", default_value_t = 16)]
    pub db_cache_mib: usize,
    /// Capacity of the event writer queue.
    #[arg(long, env = "LLMO_WRITER_QUEUE", default_value_t = 65_536)]
    pub writer_queue: usize,
    /// Save the store's allocator state at each event commit, so the file reopens at
    /// once after a crash. Off: one fsync a commit instead of two and a lighter writer,
    /// but a crash costs a full repair on the next start (~10 s at 10 M events).
    #[arg(long, env = "LLMO_STORE_QUICK_REPAIR", default_value_t = true, action = clap::ArgAction::Set)]
    pub store_quick_repair: bool,
    /// Log format: text or json.
    #[arg(long, env = "LLMO_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    #[arg(
        long,
        env = "LLMO_OPENAI_BASE_URL",
        default_value = "https://api.openai.com"
    )]
    pub openai_base_url: String,
    #[arg(
        long,
        env = "LLMO_ANTHROPIC_BASE_URL",
        default_value = "https://api.anthropic.com"
    )]
    pub anthropic_base_url: String,
    #[arg(
        long,
        env = "LLMO_GEMINI_BASE_URL",
        default_value = "https://generativelanguage.googleapis.com"
    )]
    pub gemini_base_url: String,
    #[arg(
        long,
        env = "LLMO_GROQ_BASE_URL",
        default_value = "https://api.groq.com/openai"
    )]
    pub groq_base_url: String,
    #[arg(
        long,
        env = "LLMO_MISTRAL_BASE_URL",
        default_value = "https://api.mistral.ai"
    )]
    pub mistral_base_url: String,
    #[arg(
        long,
        env = "LLMO_DEEPSEEK_BASE_URL",
        default_value = "https://api.deepseek.com"
    )]
    pub deepseek_base_url: String,
    #[arg(
        long,
        env = "LLMO_TOGETHER_BASE_URL",
        default_value = "https://api.together.xyz"
    )]
    pub together_base_url: String,
    #[arg(
        long,
        env = "LLMO_OPENROUTER_BASE_URL",
        default_value = "https://openrouter.ai/api"
    )]
    pub openrouter_base_url: String,
    #[arg(long, env = "LLMO_XAI_BASE_URL", default_value = "https://api.x.ai")]
    pub xai_base_url: String,
    #[arg(
        long,
        env = "LLMO_FIREWORKS_BASE_URL",
        default_value = "https://api.fireworks.ai/inference"
    )]
    pub fireworks_base_url: String,
    /// Your Azure OpenAI resource, e.g. https://NAME.openai.azure.com (no default).
    #[arg(long, env = "LLMO_AZURE_BASE_URL")]
    pub azure_base_url: Option<String>,
}

/// An upstream base URL, split once at start so each request only appends a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix without a trailing slash ("" or "/openai").
    pub path: String,
}

impl BaseUrl {
    pub fn parse(s: &str) -> Result<BaseUrl, ConfigError> {
        let uri: http::Uri = s.parse().map_err(|_| ConfigError::BadUrl(s.to_owned()))?;
        let scheme = uri
            .scheme()
            .filter(|s| **s == http::uri::Scheme::HTTP || **s == http::uri::Scheme::HTTPS)
            .cloned()
            .ok_or_else(|| ConfigError::BadUrl(s.to_owned()))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| ConfigError::BadUrl(s.to_owned()))?;
        if uri.query().is_some() {
            return Err(ConfigError::BadUrl(s.to_owned()));
        }
        Ok(BaseUrl {
            scheme,
            authority,
            path: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not an http(s) base URL without query: {0}")]
    BadUrl(String),
    #[error("{0}")]
    BadLimit(&'static str),
}

/// More worker threads than this is a typo, not a machine.
const MAX_PROXY_WORKERS: usize = 256;

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub pricing_file: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub stream_idle_timeout: Duration,
    /// Deadline for a request head, and for an idle connection to start its next request.
    pub header_read_timeout: Duration,
    /// Longest pause between two chunks of a request body.
    pub body_idle_timeout: Duration,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Threads serving proxy connections (at least 1).
    pub proxy_workers: usize,
    /// Request-body bytes held at once by the in-flight requests of one listener.
    pub max_buffered_request_bytes: usize,
    /// Largest request head accepted (HTTP/1.1 head, HTTP/2 header list).
    pub max_header_bytes: usize,
    pub upstream_ca: Option<PathBuf>,
    pub inject_stream_usage: bool,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub jwt_secret: Option<String>,
    pub secret_key: Option<String>,
    pub cors_origins: Vec<String>,
    pub public_proxy_url: Option<String>,
    pub shutdown_grace: Duration,
    pub writer_queue: usize,
    pub db_cache_mib: usize,
    /// Event commits keep redb's quick-repair state (see `--store-quick-repair`).
    pub store_quick_repair: bool,
    /// Upstream per provider; a provider missing here (Azure unset) answers 404.
    pub upstreams: HashMap<Provider, BaseUrl>,
    /// Tests only: a switch that makes the database file fail writes like a full disk.
    pub storage_faults: Option<std::sync::Arc<crate::store::FaultSwitch>>,
}

impl Config {
    pub fn from_args(a: RunArgs) -> Result<Config, ConfigError> {
        let mut upstreams = HashMap::new();
        let pairs = [
            (Provider::OpenAi, Some(a.openai_base_url)),
            (Provider::Anthropic, Some(a.anthropic_base_url)),
            (Provider::Gemini, Some(a.gemini_base_url)),
            (Provider::Groq, Some(a.groq_base_url)),
            (Provider::Mistral, Some(a.mistral_base_url)),
            (Provider::DeepSeek, Some(a.deepseek_base_url)),
            (Provider::Together, Some(a.together_base_url)),
            (Provider::OpenRouter, Some(a.openrouter_base_url)),
            (Provider::Xai, Some(a.xai_base_url)),
            (Provider::Fireworks, Some(a.fireworks_base_url)),
            (Provider::Azure, a.azure_base_url.filter(|s| !s.is_empty())),
        ];
        for (p, url) in pairs {
            if let Some(url) = url {
                upstreams.insert(p, BaseUrl::parse(&url)?);
            }
        }
        if a.max_buffered_request_bytes < a.max_body_bytes {
            return Err(ConfigError::BadLimit(
                "--max-buffered-request-bytes must be at least --max-body-bytes",
            ));
        }
        if a.proxy_workers > MAX_PROXY_WORKERS {
            return Err(ConfigError::BadLimit("--proxy-workers must be at most 256"));
        }
        if a.max_connections == 0 {
            return Err(ConfigError::BadLimit(
                "--max-connections must be at least 1",
            ));
        }
        Ok(Config {
            proxy_addr: a.proxy_addr,
            admin_addr: a.admin_addr,
            data_dir: a.data_dir,
            pricing_file: a.pricing_file,
            max_body_bytes: a.max_body_bytes,
            connect_timeout: Duration::from_millis(a.connect_timeout_ms),
            first_byte_timeout: Duration::from_millis(a.first_byte_timeout_ms),
            stream_idle_timeout: Duration::from_millis(a.stream_idle_timeout_ms),
            header_read_timeout: Duration::from_millis(a.header_read_timeout_ms),
            body_idle_timeout: Duration::from_millis(a.body_idle_timeout_ms),
            max_connections: a.max_connections,
            proxy_workers: match a.proxy_workers {
                0 => crate::server::one_per_core(),
                n => n,
            },
            max_buffered_request_bytes: a.max_buffered_request_bytes,
            max_header_bytes: a.max_header_bytes,
            upstream_ca: a.upstream_ca,
            inject_stream_usage: a.inject_stream_usage,
            tls: a.tls_cert.zip(a.tls_key),
            jwt_secret: a.jwt_secret,
            secret_key: a.secret_key,
            cors_origins: a.cors_origins,
            public_proxy_url: a.public_proxy_url,
            shutdown_grace: Duration::from_millis(a.shutdown_grace_ms),
            writer_queue: a.writer_queue,
            db_cache_mib: a.db_cache_mib,
            store_quick_repair: a.store_quick_repair,
            upstreams,
            storage_faults: None,
        })
    }

    /// Defaults as if run with no flags, listening on ephemeral loopback ports and
    /// keeping data in `data_dir`: the starting point for tests and embedders.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        let args = RunArgs::parse_from(["llmobserve"]);
        let mut c = Config::from_args(args).unwrap_or_else(|_| unreachable!("defaults are valid"));
        c.proxy_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        c.admin_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        c.data_dir = data_dir.into();
        c
    }

    /// Points every provider (including Azure) at one base URL: for tests with a mock.
    pub fn with_all_upstreams(mut self, base: &str) -> Result<Config, ConfigError> {
        let b = BaseUrl::parse(base)?;
        for p in Provider::ALL {
            self.upstreams.insert(p, b.clone());
        }
        Ok(self)
    }
}

#[derive(Debug, Parser)]
struct RunOnly {
    #[command(flatten)]
    run: RunArgs,
}

impl RunArgs {
    fn parse_from<I, T>(it: I) -> RunArgs
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        // Defaults (plus any LLMO_* variables set): tests then override addresses and dirs.
        match RunOnly::try_parse_from(it) {
            Ok(r) => r.run,
            Err(e) => e.exit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("https://api.groq.com/openai/").unwrap();
        assert_eq!(b.path, "/openai");
        assert_eq!(b.authority.as_str(), "api.groq.com");
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://x/?a=b").is_err());
    }

    #[test]
    fn defaults_match_design() {
        let c = Config::from_args(RunOnly::try_parse_from(["x"]).unwrap().run).unwrap();
        assert_eq!(c.proxy_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.admin_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.max_body_bytes, 32 * 1024 * 1024);
        assert!(!c.upstreams.contains_key(&Provider::Azure));
        assert_eq!(c.upstreams.len(), 10);
        assert_eq!(c.header_read_timeout, Duration::from_secs(30));
        assert_eq!(c.body_idle_timeout, Duration::from_secs(30));
        assert_eq!(c.max_connections, 1024);
        assert!(c.max_buffered_request_bytes >= c.max_body_bytes);
        assert_eq!(
            c.proxy_workers,
            crate::server::one_per_core(),
            "0 means one worker per core"
        );
    }

    #[test]
    fn quick_repair_is_on_unless_turned_off() {
        let parse = |extra: &[&str]| {
            let args = RunOnly::try_parse_from(["x"].iter().chain(extra))
                .unwrap()
                .run;
            Config::from_args(args).unwrap().store_quick_repair
        };
        assert!(parse(&[]));
        assert!(!parse(&["--store-quick-repair", "false"]));
        assert!(parse(&["--store-quick-repair", "true"]));
        assert!(RunOnly::try_parse_from(["x", "--store-quick-repair", "maybe"]).is_err());
    }

    #[test]
    fn proxy_workers_are_taken_as_given_up_to_the_cap() {
        let parse = |n: &str| {
            let args = RunOnly::try_parse_from(["x", "--proxy-workers", n])
                .unwrap()
                .run;
            Config::from_args(args)
        };
        assert_eq!(parse("3").unwrap().proxy_workers, 3);
        assert_eq!(parse("256").unwrap().proxy_workers, 256);
        assert!(matches!(parse("257"), Err(ConfigError::BadLimit(_))));
    }

    #[test]
    fn a_buffer_budget_below_the_body_limit_is_refused() {
        let args = RunOnly::try_parse_from([
            "x",
            "--max-body-bytes",
            "1000",
            "--max-buffered-request-bytes",
            "999",
        ])
        .unwrap()
        .run;
        assert!(matches!(
            Config::from_args(args),
            Err(ConfigError::BadLimit(_))
        ));
    }
}
