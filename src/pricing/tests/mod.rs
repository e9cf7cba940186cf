//! Tests of the embedded price tables: `fixtures` prices every token fixture of
//! `tests/fixtures/expected.json` exactly; `table` covers resolution, dated versions,
//! tiers, off-peak and override files. Shared helpers live here.
//!
//! Each expected string is worked out by hand from the numbers in `pricing/*.toml`;
//! the comment above it shows the arithmetic in µ$ (prices per million tokens).

mod fixtures;
mod table;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;

pub(super) const TODAY: &str = "2026-11-25T06:31:19Z";

pub(super) fn table() -> PriceTable {
    PriceTable::embedded().expect("embedded price tables load")
}

pub(super) fn ms(rfc3339: &str) -> i64 {
    let t = OffsetDateTime::parse(rfc3339, &Rfc3339).expect("valid test timestamp");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(super) fn ctx(at: &str) -> PriceContext<'static> {
    PriceContext {
        at_unix_ms: ms(at),
        service_tier: None,
        batch: false,
    }
}

/// The normalized usage of one fixture, read from `expected.json` (so the counts
/// priced here are exactly the fixture's), with `extra` per-request counters.
pub(super) fn fixture_usage(name: &str) -> Option<Usage> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/expected.json"
    ))
    .expect("expected.json readable");
    let all: serde_json::Value = serde_json::from_str(&text).expect("expected.json parses");
    let f = &all["token_fixtures"][name];
    assert!(f.is_object(), "no fixture {name}");
    let t = f.get("tokens_sum").unwrap_or(&f["tokens"]);
    if t.is_null() {
        return None;
    }
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    Some(Usage {
        input_tokens: n(t, "input_total"),
        cached_input_tokens: n(t, "cached_input"),
        cache_write_5m_tokens: n(t, "cache_write_5m"),
        cache_write_1h_tokens: n(t, "cache_write_1h"),
        output_tokens: n(t, "output"),
        reasoning_tokens: n(t, "reasoning"),
        web_search_requests: n(&f["extra"], "web_search_requests"),
        grounded_prompts: n(&f["extra"], "grounded_prompts"),
    })
}

pub(super) fn fixture_model(name: &str) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/expected.json"
    ))
    .expect("expected.json readable");
    let all: serde_json::Value = serde_json::from_str(&text).expect("expected.json parses");
    all["token_fixtures"][name]["model"]
        .as_str()
        .expect("fixture model")
        .to_owned()
}

/// Table cost of a fixture as a decimal string.
pub(super) fn priced(provider: Provider, fixture: &str, ctx: &PriceContext<'_>) -> String {
    let usage = fixture_usage(fixture).expect("fixture has usage");
    let model = fixture_model(fixture);
    let cost = table()
        .cost_usage(provider, &model, &usage, ctx)
        .unwrap_or_else(|| panic!("{fixture}: {model} is unpriced"));
    assert_eq!(cost.priced_by, PricedBy::Table);
    cost.usd.to_string()
}
