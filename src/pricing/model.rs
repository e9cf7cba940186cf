//! One model's prices (all its dated versions) and the per-request cost formula.
//!
//! Built by `file.rs` from the TOML tables, looked up by `PriceTable::resolve`,
//! and evaluated by [`PriceVersion::cost`]. All rates are exact [`Money`] per
//! single token; multipliers are exact decimal fractions. No floats anywhere.

use crate::pricing::money::{Money, SCALE};
use crate::providers::{Provider, Usage};

/// Per-token rates for the five token categories of [`Usage`].
///
/// A missing cache rate falls back as documented in [`Rates::cached`],
/// [`Rates::write_5m`] and [`Rates::write_1h`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rates {
    /// Fresh (uncached) prompt tokens.
    pub input: Money,
    /// Prompt tokens read from a cache; `None`: billed as `input`.
    pub cached_input: Option<Money>,
    /// Prompt tokens written to a 5-minute (or unknown-TTL) cache; `None`: billed as `input`.
    pub cache_write_5m: Option<Money>,
    /// Prompt tokens written to a 1-hour cache; `None`: billed as the 5-minute write.
    pub cache_write_1h: Option<Money>,
    /// Output tokens, reasoning included.
    pub output: Money,
}

impl Rates {
    pub fn cached(&self) -> Money {
        self.cached_input.unwrap_or(self.input)
    }

    pub fn write_5m(&self) -> Money {
        self.cache_write_5m.unwrap_or(self.input)
    }

    pub fn write_1h(&self) -> Money {
        self.cache_write_1h.unwrap_or_else(|| self.write_5m())
    }

    fn scaled(&self, m: Multiplier) -> Rates {
        Rates {
            input: m.apply(self.input),
            cached_input: self.cached_input.map(|r| m.apply(r)),
            cache_write_5m: self.cache_write_5m.map(|r| m.apply(r)),
            cache_write_1h: self.cache_write_1h.map(|r| m.apply(r)),
            output: m.apply(self.output),
        }
    }

    /// Token cost of `usage` at these rates. Reasoning is inside `output_tokens`
    /// and is never added again.
    fn token_cost(&self, usage: &Usage) -> Money {
        self.input * usage.input_fresh_tokens()
            + self.cached() * usage.cached_input_tokens
            + self.write_5m() * usage.cache_write_5m_tokens
            + self.write_1h() * usage.cache_write_1h_tokens
            + self.output * usage.output_tokens
    }
}

/// Rates that may each be absent (an explicit tier price list overrides only what it names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialRates {
    pub input: Option<Money>,
    pub cached_input: Option<Money>,
    pub cache_write_5m: Option<Money>,
    pub cache_write_1h: Option<Money>,
    pub output: Option<Money>,
}

/// An exact decimal factor such as `0.5` or `1.8`, stored as a fraction of [`SCALE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multiplier(Money);

impl Multiplier {
    pub const ONE: Multiplier = Multiplier(Money::from_femto(SCALE));

    pub fn new(factor: Money) -> Multiplier {
        Multiplier(factor)
    }

    /// `amount × factor`, rounded half away from zero at femto-dollar resolution.
    pub fn apply(self, amount: Money) -> Money {
        amount.mul_ratio(self.0.femto(), SCALE)
    }
}

/// The higher rates that apply to the whole request once its prompt is long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongContext {
    /// The tier applies when `Usage::input_tokens` (fresh + cache read + cache write)
    /// is strictly greater than this.
    pub threshold_tokens: u64,
    pub rates: Rates,
}

/// A service tier (`batch`, `flex`, `priority`, ...): a multiplier on the standard
/// rates, optionally with explicit standard-context rates that replace the scaled ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: Box<str>,
    pub multiplier: Multiplier,
    /// Explicit prices for the standard context; in the long-context tier only the
    /// multiplier applies.
    pub explicit: PartialRates,
}

impl Tier {
    fn apply(&self, base: &Rates, long_context: bool) -> Rates {
        let scaled = base.scaled(self.multiplier);
        if long_context {
            return scaled;
        }
        let e = &self.explicit;
        Rates {
            input: e.input.unwrap_or(scaled.input),
            cached_input: e.cached_input.or(scaled.cached_input),
            cache_write_5m: e.cache_write_5m.or(scaled.cache_write_5m),
            cache_write_1h: e.cache_write_1h.or(scaled.cache_write_1h),
            output: e.output.unwrap_or(scaled.output),
        }
    }
}

/// Time-of-day pricing (DeepSeek): outside the peak windows every token rate is
/// multiplied by `multiplier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffPeak {
    pub multiplier: Multiplier,
    /// Half-open UTC hour ranges `[start, end)` that are peak.
    pub peak_hours_utc: Vec<(u8, u8)>,
    /// Peak windows apply Monday to Friday only (weekends are all off-peak).
    pub peak_weekdays_only: bool,
}

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 86_400_000;

impl OffPeak {
    pub fn is_off_peak(&self, at_unix_ms: i64) -> bool {
        // 1970-01-01 was a Thursday: with Monday = 0 that is day 3.
        let weekday = (at_unix_ms.div_euclid(MS_PER_DAY) + 3).rem_euclid(7);
        if self.peak_weekdays_only && weekday >= 5 {
            return true;
        }
        let hour = at_unix_ms.div_euclid(MS_PER_HOUR).rem_euclid(24);
        !self
            .peak_hours_utc
            .iter()
            .any(|&(start, end)| (i64::from(start)..i64::from(end)).contains(&hour))
    }
}

/// What the caller knows about one request besides its token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriceContext<'a> {
    /// When the request arrived (picks the dated price version and off-peak windows).
    pub at_unix_ms: i64,
    /// The service tier the *response* reports (`default`, `flex`, `priority`, `standard`, ...).
    /// A tier the model has no price for is billed at standard rates.
    pub service_tier: Option<&'a str>,
    /// The call went through a Batch API (takes precedence over `service_tier`).
    pub batch: bool,
}

/// The prices of one model in effect from `effective_unix_ms` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceVersion {
    pub effective_unix_ms: i64,
    pub rates: Rates,
    pub long_context: Option<LongContext>,
    pub tiers: Vec<Tier>,
    /// USD per server-side web search (Anthropic `web_search_requests`).
    pub web_search_fee: Option<Money>,
    /// USD per grounded prompt (Gemini grounding with Google Search).
    pub grounding_fee: Option<Money>,
    pub off_peak: Option<OffPeak>,
}

impl PriceVersion {
    /// The exact cost of one request. Never fails; pure.
    ///
    /// Order: long-context tier (whole request) → service tier → off-peak factor →
    /// per-request tool fees (not scaled by tiers).
    pub fn cost(&self, usage: &Usage, ctx: &PriceContext<'_>) -> Money {
        let long = self
            .long_context
            .as_ref()
            .filter(|lc| usage.input_tokens > lc.threshold_tokens);
        let base = long.map_or(&self.rates, |lc| &lc.rates);
        let mut tokens = match self.tier_for(ctx) {
            Some(tier) => tier.apply(base, long.is_some()).token_cost(usage),
            None => base.token_cost(usage),
        };
        if let Some(op) = self
            .off_peak
            .as_ref()
            .filter(|op| op.is_off_peak(ctx.at_unix_ms))
        {
            tokens = op.multiplier.apply(tokens);
        }
        let fee = |rate: Option<Money>, n: u64| match rate {
            Some(r) if n > 0 => r * n,
            _ => Money::ZERO,
        };
        tokens
            + fee(self.web_search_fee, usage.web_search_requests)
            + fee(self.grounding_fee, usage.grounded_prompts)
    }

    /// The tier named `name` (ASCII case-insensitive), if this version prices it.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    fn tier_for(&self, ctx: &PriceContext<'_>) -> Option<&Tier> {
        if ctx.batch {
            return self.tier("batch");
        }
        ctx.service_tier.and_then(|name| self.tier(name))
    }
}

/// Every dated price version of one model, with the names it answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    pub(crate) provider: Provider,
    pub(crate) name: Box<str>,
    pub(crate) aliases: Vec<Box<str>>,
    /// Sorted by `effective_unix_ms`, never empty, no two with the same date.
    pub(crate) versions: Vec<PriceVersion>,
}

impl ModelPrice {
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The canonical name, as written in the price file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Other exact names (dated snapshots, `-latest`) that resolve to this model.
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.aliases.iter().map(|a| &**a)
    }

    /// All versions, oldest first.
    pub fn versions(&self) -> &[PriceVersion] {
        &self.versions
    }

    /// The version in effect at `at_unix_ms`: the latest one whose `effective`
    /// is not after it. A time before the first known version gets the first one
    /// (the oldest price we know is the best estimate, and clocks skew).
    pub fn at(&self, at_unix_ms: i64) -> &PriceVersion {
        let after = self
            .versions
            .partition_point(|v| v.effective_unix_ms <= at_unix_ms);
        &self.versions[after.saturating_sub(1)]
    }
}
