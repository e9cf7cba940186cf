//! The TOML price-file format (see the module docs of `pricing` for the spec):
//! raw serde structs, then validation into [`ModelPrice`] values.
//!
//! Called by `PriceTable` at startup only; nothing here runs per request.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::pricing::PricingError;
use crate::pricing::model::{
    LongContext, ModelPrice, Multiplier, OffPeak, PartialRates, PriceVersion, Rates, Tier,
};
use crate::pricing::money::Money;
use crate::providers::Provider;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Default provider of every entry (per-provider files set it once).
    provider: Option<String>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default, rename = "model")]
    models: Vec<RawModel>,
}

/// Applied to every entry of the same file unless the entry sets its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default)]
    tiers: BTreeMap<String, RawTier>,
    web_search_per_1k: Option<Money>,
    grounding_per_1k: Option<Money>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    provider: Option<String>,
    effective: EffectiveDate,
    #[serde(default)]
    aliases: Vec<String>,
    input: Money,
    output: Money,
    cached_input: Option<Money>,
    cache_write_5m: Option<Money>,
    cache_write_1h: Option<Money>,
    long_context: Option<RawLongContext>,
    #[serde(default)]
    tiers: BTreeMap<String, RawTier>,
    web_search_per_1k: Option<Money>,
    grounding_per_1k: Option<Money>,
    off_peak: Option<RawOffPeak>,
    /// Free text for humans (why a number is what it is); ignored.
    #[serde(rename = "note")]
    _note: Option<de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLongContext {
    threshold: u64,
    input: Money,
    output: Money,
    cached_input: Option<Money>,
    cache_write_5m: Option<Money>,
    cache_write_1h: Option<Money>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    multiplier: Option<Money>,
    input: Option<Money>,
    cached_input: Option<Money>,
    cache_write_5m: Option<Money>,
    cache_write_1h: Option<Money>,
    output: Option<Money>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffPeak {
    multiplier: Money,
    peak_hours_utc: Vec<[u8; 2]>,
    #[serde(default)]
    peak_weekdays_only: bool,
}

/// `effective` accepts a TOML date (`2025-08-07`), a TOML offset datetime
/// (`2026-08-16T16:00:00Z`), or the same as a quoted string. Dates mean 00:00 UTC.
#[derive(Debug)]
struct EffectiveDate(String);

impl<'de> Deserialize<'de> for EffectiveDate {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EffectiveDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date (2025-08-07) or an RFC 3339 UTC datetime")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EffectiveDate, E> {
                Ok(EffectiveDate(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EffectiveDate, A::Error> {
                let dt =
                    toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(EffectiveDate(dt.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl EffectiveDate {
    fn unix_ms(&self) -> Result<i64, String> {
        use time::format_description::well_known::Rfc3339;
        let s = self.0.trim();
        let ts = if s.len() == 10 {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(s, fmt)
                .map(|d| d.midnight().assume_utc())
                .map_err(|e| format!("effective {s:?}: {e}"))?
        } else {
            time::OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("effective {s:?}: {e}"))?
        };
        i64::try_from(ts.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| format!("effective {s:?} out of range"))
    }
}

/// One parsed file: its models, each with the provider it belongs to.
pub(crate) fn parse(file: &str, text: &str) -> Result<Vec<ModelPrice>, PricingError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| PricingError::Toml {
        file: file.to_owned(),
        source: Box::new(e),
    })?;
    let default_provider = raw
        .provider
        .as_deref()
        .map(|p| provider_named(file, p))
        .transpose()?;

    // Group dated entries by (provider, name), keeping file order of first appearance.
    let mut grouped: Vec<ModelPrice> = Vec::new();
    for m in raw.models {
        let provider = match m.provider.as_deref() {
            Some(p) => provider_named(file, p)?,
            None => default_provider.ok_or_else(|| PricingError::MissingProvider {
                file: file.to_owned(),
                model: m.name.clone(),
            })?,
        };
        let invalid = |reason: String| PricingError::Invalid {
            file: file.to_owned(),
            model: m.name.clone(),
            reason,
        };
        if m.name.trim().is_empty() || m.name.trim() != m.name {
            return Err(invalid(
                "name must be non-empty without surrounding spaces".into(),
            ));
        }
        let version = build_version(&m, &raw.defaults).map_err(invalid)?;
        let aliases: Vec<Box<str>> = m.aliases.iter().map(|a| a.as_str().into()).collect();
        match grouped
            .iter_mut()
            .find(|g| g.provider == provider && *g.name == *m.name)
        {
            Some(g) => {
                if g.versions
                    .iter()
                    .any(|v| v.effective_unix_ms == version.effective_unix_ms)
                {
                    return Err(invalid("two entries with the same effective date".into()));
                }
                for a in aliases {
                    if !g.aliases.contains(&a) {
                        g.aliases.push(a);
                    }
                }
                g.versions.push(version);
                g.versions.sort_by_key(|v| v.effective_unix_ms);
            }
            None => grouped.push(ModelPrice {
                provider,
                name: m.name.as_str().into(),
                aliases,
                versions: vec![version],
            }),
        }
    }
    Ok(grouped)
}

fn provider_named(file: &str, name: &str) -> Result<Provider, PricingError> {
    Provider::from_name(name).ok_or_else(|| PricingError::UnknownProvider {
        file: file.to_owned(),
        provider: name.to_owned(),
    })
}

fn build_version(m: &RawModel, defaults: &RawDefaults) -> Result<PriceVersion, String> {
    let rates = Rates {
        input: per_token(m.input, "input")?,
        cached_input: per_token_opt(m.cached_input, "cached_input")?,
        cache_write_5m: per_token_opt(m.cache_write_5m, "cache_write_5m")?,
        cache_write_1h: per_token_opt(m.cache_write_1h, "cache_write_1h")?,
        output: per_token(m.output, "output")?,
    };
    let long_context = m
        .long_context
        .as_ref()
        .map(|lc| {
            if lc.threshold == 0 {
                return Err("long_context.threshold must be > 0".to_owned());
            }
            Ok(LongContext {
                threshold_tokens: lc.threshold,
                rates: Rates {
                    input: per_token(lc.input, "long_context.input")?,
                    cached_input: per_token_opt(lc.cached_input, "long_context.cached_input")?,
                    cache_write_5m: per_token_opt(
                        lc.cache_write_5m,
                        "long_context.cache_write_5m",
                    )?,
                    cache_write_1h: per_token_opt(
                        lc.cache_write_1h,
                        "long_context.cache_write_1h",
                    )?,
                    output: per_token(lc.output, "long_context.output")?,
                },
            })
        })
        .transpose()?;

    let mut tiers_raw = defaults.tiers.clone();
    tiers_raw.extend(m.tiers.iter().map(|(k, v)| (k.clone(), v.clone())));
    let tiers = tiers_raw
        .iter()
        .map(|(name, t)| build_tier(name, t))
        .collect::<Result<Vec<_>, _>>()?;

    let fee = |per_1k: Option<Money>, what: &str| -> Result<Option<Money>, String> {
        per_1k
            .map(|p| {
                non_negative(p, what)?;
                // USD per 1,000 requests → per request; exact unless below femto resolution.
                if p.femto() % 1000 != 0 {
                    return Err(format!("{what} is too precise"));
                }
                Ok(Money::from_femto(p.femto() / 1000))
            })
            .transpose()
    };
    let off_peak = m
        .off_peak
        .as_ref()
        .map(|op| {
            if op.peak_hours_utc.iter().any(|&[s, e]| s >= e || e > 24) {
                return Err(
                    "off_peak.peak_hours_utc needs [start, end) hour pairs within 0..=24"
                        .to_owned(),
                );
            }
            Ok(OffPeak {
                multiplier: multiplier(op.multiplier, "off_peak.multiplier")?,
                peak_hours_utc: op.peak_hours_utc.iter().map(|&[s, e]| (s, e)).collect(),
                peak_weekdays_only: op.peak_weekdays_only,
            })
        })
        .transpose()?;

    Ok(PriceVersion {
        effective_unix_ms: m.effective.unix_ms()?,
        rates,
        long_context,
        tiers,
        web_search_fee: fee(
            m.web_search_per_1k.or(defaults.web_search_per_1k),
            "web_search_per_1k",
        )?,
        grounding_fee: fee(
            m.grounding_per_1k.or(defaults.grounding_per_1k),
            "grounding_per_1k",
        )?,
        off_peak,
    })
}

fn build_tier(name: &str, t: &RawTier) -> Result<Tier, String> {
    if name.is_empty() {
        return Err("empty tier name".into());
    }
    let field = |v: Option<Money>, what: &str| per_token_opt(v, &format!("tiers.{name}.{what}"));
    Ok(Tier {
        name: name.into(),
        multiplier: match t.multiplier {
            Some(m) => multiplier(m, &format!("tiers.{name}.multiplier"))?,
            None => Multiplier::ONE,
        },
        explicit: PartialRates {
            input: field(t.input, "input")?,
            cached_input: field(t.cached_input, "cached_input")?,
            cache_write_5m: field(t.cache_write_5m, "cache_write_5m")?,
            cache_write_1h: field(t.cache_write_1h, "cache_write_1h")?,
            output: field(t.output, "output")?,
        },
    })
}

fn non_negative(m: Money, what: &str) -> Result<(), String> {
    if m < Money::ZERO {
        return Err(format!("{what} must not be negative"));
    }
    Ok(())
}

fn multiplier(m: Money, what: &str) -> Result<Multiplier, String> {
    non_negative(m, what)?;
    Ok(Multiplier::new(m))
}

/// A price per million tokens as an exact per-token price.
fn per_token(per_million: Money, what: &str) -> Result<Money, String> {
    non_negative(per_million, what)?;
    Money::per_token_from_per_million(per_million)
        .map_err(|_| format!("{what} has more than 9 decimals per million tokens"))
}

fn per_token_opt(per_million: Option<Money>, what: &str) -> Result<Option<Money>, String> {
    per_million.map(|p| per_token(p, what)).transpose()
}
