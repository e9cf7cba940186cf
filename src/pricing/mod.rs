//! Price tables and cost computation.
//!
//! Owns the per-provider price files in `pricing/` (embedded in the binary), the
//! optional `--pricing-file` override, model-name resolution and the exact cost
//! formula. The proxy's meter calls [`PriceTable::cost`] once per finished call
//! with the [`ParsedUsage`] its parser produced; startup builds the table once
//! with [`PriceTable::embedded`] or [`PriceTable::from_file`].
//!
//! # Price file format (TOML)
//!
//! One file per provider (`pricing/openai.toml`, ...). An override file uses the
//! same format and may hold several providers' models (set `provider` per entry).
//! All prices are **USD per million tokens**, written as quoted decimal strings
//! (`"0.075"`; at most 9 decimals) so they stay exact; fees are USD per 1,000 requests.
//!
//! ```toml
//! provider = "openai"                 # default provider of every entry in this file
//!
//! [defaults]                          # optional, applies to every entry of this file
//! tiers.batch = { multiplier = "0.5" }
//! web_search_per_1k = "10"            # USD per 1,000 server-side web searches
//! grounding_per_1k = "35"             # USD per 1,000 grounded prompts (Gemini)
//!
//! [[model]]
//! name = "gpt-4o"                     # canonical name (what the provider's response says)
//! provider = "openai"                 # optional here; required if the file sets none
//! aliases = ["gpt-4o-2024-08-06"]     # other exact names for the same prices
//! effective = 2024-10-01              # TOML date or UTC datetime: in effect from then on
//! input = "2.50"                      # fresh prompt tokens
//! cached_input = "1.25"               # cache reads      (missing: billed as input)
//! cache_write_5m = "3.125"            # 5-minute writes  (missing: billed as input)
//! cache_write_1h = "5.00"             # 1-hour writes    (missing: billed as 5-minute writes)
//! output = "10.00"                    # output tokens, reasoning included
//! long_context = { threshold = 200000, input = "5", cached_input = "0.5", output = "15" }
//! tiers.flex = { multiplier = "0.5" } # service tier named by the response, or "batch"
//! tiers.priority = { input = "4.25", cached_input = "2.125", output = "17" }
//! off_peak = { multiplier = "0.5", peak_hours_utc = [[1, 4], [6, 10]], peak_weekdays_only = true }
//! note = "free text"
//! ```
//!
//! Semantics:
//! - **Dated versions**: a model may have several `[[model]]` entries with the same
//!   name and different `effective` dates; a request is priced by the latest entry
//!   whose date is not after the request time (a time before the first entry gets
//!   the first entry).
//! - **Long context**: when the whole prompt (`input_tokens`: fresh + cache read +
//!   cache write) is greater than `threshold`, the *whole request* uses those rates
//!   (`input` and `output` are required; missing cache rates fall back within the
//!   tier exactly as the base ones do).
//! - **Tiers**: `multiplier` scales every token rate (default 1); explicit rates
//!   replace the scaled ones for the standard context. In the long-context tier only
//!   the multiplier applies. `batch` is used when the call came through a Batch API;
//!   otherwise the tier named by the response's `service_tier` (case-insensitive), if
//!   the model has one; any other tier name is billed at standard rates.
//! - **Off-peak**: outside the peak UTC hours every token rate is multiplied.
//! - **Fees**: per-request tool fees are added after tiers (never scaled).
//! - **Overrides**: a model named in an override file replaces every embedded entry
//!   of that model (all dated versions and its aliases); other models are added.
//! - Unknown keys are errors (a typo must not silently drop a price).
//!
//! # Name resolution ([`PriceTable::resolve`])
//! Exact name or alias (one hash lookup) → fine-tune `ft:BASE:org::id` to the
//! `ft:BASE` entry → without a `vendor/` or `models/` prefix → without a date suffix
//! (`-2024-08-06`, `-20250929`, `-0709`, Mistral's `-2501`, Vertex `@20250805`) → without `-latest`. Azure
//! models missing from `azure.toml` are looked up in the OpenAI table (the caller
//! passes the response's model, never the deployment name).

pub mod money;

mod error;
mod file;
mod model;
mod resolve;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use error::PricingError;
pub use model::{
    LongContext, ModelPrice, Multiplier, OffPeak, PartialRates, PriceContext, PriceVersion, Rates,
    Tier,
};
pub use money::Money;

use crate::hash::FastMap;
use crate::providers::{ParsedUsage, Provider, Usage};

/// The price files compiled into the binary, one per provider.
const EMBEDDED: [(&str, &str); 11] = [
    (
        "pricing/openai.toml",
        include_str!("../../pricing/openai.toml"),
    ),
    (
        "pricing/anthropic.toml",
        include_str!("../../pricing/anthropic.toml"),
    ),
    (
        "pricing/gemini.toml",
        include_str!("../../pricing/gemini.toml"),
    ),
    (
        "pricing/deepseek.toml",
        include_str!("../../pricing/deepseek.toml"),
    ),
    (
        "pricing/mistral.toml",
        include_str!("../../pricing/mistral.toml"),
    ),
    ("pricing/groq.toml", include_str!("../../pricing/groq.toml")),
    ("pricing/xai.toml", include_str!("../../pricing/xai.toml")),
    (
        "pricing/together.toml",
        include_str!("../../pricing/together.toml"),
    ),
    (
        "pricing/fireworks.toml",
        include_str!("../../pricing/fireworks.toml"),
    ),
    (
        "pricing/openrouter.toml",
        include_str!("../../pricing/openrouter.toml"),
    ),
    (
        "pricing/azure.toml",
        include_str!("../../pricing/azure.toml"),
    ),
];

/// Who decided the amount of a [`Cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PricedBy {
    /// Computed from our price table.
    Table,
    /// Reported by the provider itself (OpenRouter `usage.cost`, xAI ticks).
    Provider,
}

/// The price of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    pub usd: Money,
    pub priced_by: PricedBy,
    /// Identifies the price data used (store it with the cost record).
    pub table_version: Arc<str>,
}

/// All known prices, by provider. Immutable after loading; share it behind an `Arc`.
/// Lookups are a hash-map probe plus at most a few string trims, without allocation.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Indexed by `Provider as usize`.
    providers: Vec<ProviderPrices>,
    version: Arc<str>,
}

#[derive(Debug, Clone, Default)]
struct ProviderPrices {
    models: Vec<ModelPrice>,
    /// Canonical names and aliases → index into `models`.
    index: FastMap<Box<str>, usize>,
    /// Fine-tune entries (`ft:gpt-4o-mini`) by base name (`gpt-4o-mini`).
    fine_tunes: FastMap<Box<str>, usize>,
}

impl ProviderPrices {
    fn get(&self, name: &str) -> Option<&ModelPrice> {
        self.index.get(name).and_then(|&i| self.models.get(i))
    }

    fn get_fine_tune(&self, base: &str) -> Option<&ModelPrice> {
        self.fine_tunes.get(base).and_then(|&i| self.models.get(i))
    }

    /// Rebuilds both indexes. Aliases first, then canonical names, so a model's own
    /// name always beats another model's alias.
    fn reindex(&mut self) {
        self.index.clear();
        self.fine_tunes.clear();
        for (i, m) in self.models.iter().enumerate() {
            for a in &m.aliases {
                self.index.insert(a.clone(), i);
                if let Some(base) = a.strip_prefix("ft:") {
                    self.fine_tunes.insert(base.into(), i);
                }
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            self.index.insert(m.name.clone(), i);
            if let Some(base) = m.name.strip_prefix("ft:") {
                self.fine_tunes.insert(base.into(), i);
            }
        }
    }
}

impl PriceTable {
    /// The price files embedded in the binary. Fails only if a bundled file is
    /// broken (a bug caught by the tests).
    pub fn embedded() -> Result<PriceTable, PricingError> {
        let mut table = PriceTable {
            providers: vec![ProviderPrices::default(); Provider::ALL.len()],
            version: Arc::from(""),
        };
        let mut hasher = Sha256::new();
        for (name, text) in EMBEDDED {
            hasher.update(name.as_bytes());
            hasher.update(text.as_bytes());
            for m in file::parse(name, text)? {
                let slot = table.slot(m.provider);
                if slot.models.iter().any(|x| x.name == m.name) {
                    return Err(invalid(name, &m.name, "defined in two embedded files"));
                }
                slot.models.push(m);
            }
        }
        for p in &mut table.providers {
            check_unique_names(p)?;
            p.reindex();
        }
        table.version = format!("embedded-{}", short_hash(hasher)).into();
        Ok(table)
    }

    /// The embedded tables overridden by the file at `path` (`--pricing-file`).
    /// Reads the file synchronously: call it at startup, not on the runtime.
    pub fn from_file(path: &Path) -> Result<PriceTable, PricingError> {
        let text = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
            path: path.to_owned(),
            source,
        })?;
        PriceTable::embedded()?.with_override_named(&path.display().to_string(), &text)
    }

    /// Applies an override file (same format, any providers). Every model it names
    /// replaces that model's embedded entries entirely (all dated versions and
    /// aliases); other models are added.
    pub fn with_override(self, file_text: &str) -> Result<PriceTable, PricingError> {
        self.with_override_named("override", file_text)
    }

    fn with_override_named(mut self, file: &str, text: &str) -> Result<PriceTable, PricingError> {
        for m in file::parse(file, text)? {
            let slot = self.slot(m.provider);
            match slot.models.iter_mut().find(|x| x.name == m.name) {
                Some(existing) => *existing = m,
                None => slot.models.push(m),
            }
        }
        for p in &mut self.providers {
            p.reindex();
        }
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        self.version = format!("{}+override-{}", self.version, short_hash(hasher)).into();
        Ok(self)
    }

    /// Identifies the loaded price data: `embedded-<hash>[+override-<hash>]`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every priced model of `provider`.
    pub fn models(&self, provider: Provider) -> &[ModelPrice] {
        self.providers
            .get(provider as usize)
            .map_or(&[], |p| p.models.as_slice())
    }

    /// The prices for `model` as a response (or request) names it; `None` if unknown.
    /// See the module docs for the resolution order.
    pub fn resolve(&self, provider: Provider, model: &str) -> Option<&ModelPrice> {
        self.resolve_in(provider, model).or_else(|| match provider {
            Provider::Azure => self.resolve_in(Provider::OpenAi, model),
            _ => None,
        })
    }

    fn resolve_in(&self, provider: Provider, model: &str) -> Option<&ModelPrice> {
        let prices = self.providers.get(provider as usize)?;
        let model = model.trim();
        if let Some(m) = prices.get(model) {
            return Some(m);
        }
        if let Some(base) = resolve::fine_tune_base(model) {
            // A fine-tune is priced only by its own `ft:` entry, never as the base model.
            return prices.get_fine_tune(base).or_else(|| {
                resolve::strip_date_suffix(base).and_then(|b| prices.get_fine_tune(b))
            });
        }
        resolve::candidates(model).find_map(|name| prices.get(name))
    }

    /// The cost of one call from what its parser saw. A provider-reported cost
    /// wins over the table; `None` when usage is missing or the model is unpriced
    /// (store `cost_usd: null`, `priced: false`).
    pub fn cost(
        &self,
        provider: Provider,
        model: &str,
        parsed: &ParsedUsage,
        ctx: &PriceContext<'_>,
    ) -> Option<Cost> {
        let usage = parsed.usage.as_ref()?;
        let reported = parsed
            .provider_cost_usd
            .as_deref()
            .and_then(|s| Money::parse_usd(s).ok())
            .filter(|m| *m >= Money::ZERO);
        if let Some(usd) = reported {
            return Some(Cost {
                usd,
                priced_by: PricedBy::Provider,
                table_version: self.version.clone(),
            });
        }
        self.cost_usage(provider, model, usage, ctx)
    }

    /// The table price of `usage` (ignores any provider-reported cost).
    pub fn cost_usage(
        &self,
        provider: Provider,
        model: &str,
        usage: &Usage,
        ctx: &PriceContext<'_>,
    ) -> Option<Cost> {
        let price = self.resolve(provider, model)?;
        Some(Cost {
            usd: price.at(ctx.at_unix_ms).cost(usage, ctx),
            priced_by: PricedBy::Table,
            table_version: self.version.clone(),
        })
    }

    fn slot(&mut self, provider: Provider) -> &mut ProviderPrices {
        let i = provider as usize;
        if self.providers.len() <= i {
            self.providers.resize_with(i + 1, ProviderPrices::default);
        }
        &mut self.providers[i]
    }
}

/// Embedded data must be unambiguous: no alias shared by two models or equal to
/// another model's name.
fn check_unique_names(p: &ProviderPrices) -> Result<(), PricingError> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for m in &p.models {
        for n in std::iter::once(&m.name).chain(&m.aliases) {
            if let Some(other) = seen.insert(n, &m.name) {
                return Err(invalid(
                    m.provider.as_str(),
                    &m.name,
                    &format!("name or alias {n:?} is also used by {other:?}"),
                ));
            }
        }
    }
    Ok(())
}

fn invalid(file: &str, model: &str, reason: &str) -> PricingError {
    PricingError::Invalid {
        file: file.to_owned(),
        model: model.to_owned(),
        reason: reason.to_owned(),
    }
}

fn short_hash(hasher: Sha256) -> String {
    let digest = hasher.finalize();
    hex::encode(&digest[..6])
}
