//! `PricingError`: everything that can go wrong while loading price tables.
//!
//! Loading happens once at startup (embedded tables, then an optional
//! `--pricing-file`); computing a cost never fails (an unknown model is `None`).

use std::path::PathBuf;

/// A price table could not be loaded. `file` names the embedded file
/// (`pricing/openai.toml`) or the override file as given.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("cannot read price file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("price file {file} is not valid TOML for the price format")]
    Toml {
        file: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("price file {file}: unknown provider {provider:?}")]
    UnknownProvider { file: String, provider: String },
    #[error(
        "price file {file}: model {model:?} has no provider (set `provider` at the top or on the entry)"
    )]
    MissingProvider { file: String, model: String },
    #[error("price file {file}: model {model:?}: {reason}")]
    Invalid {
        file: String,
        model: String,
        reason: String,
    },
}
