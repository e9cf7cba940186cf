//! Resolution, dated versions, tiers, off-peak pricing and override files.

use super::*;

// ---- resolution -------------------------------------------------------------------

#[test]
fn dated_and_prefixed_names_fall_back_to_the_family() {
    let t = table();
    let name = |p, m| t.resolve(p, m).map(|mp| mp.name().to_owned());
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(name(Provider::OpenAi, "gpt-4o-2024-08-06"), some("gpt-4o"));
    assert_eq!(
        name(Provider::OpenAi, "gpt-4.1-2025-04-14"),
        some("gpt-4.1")
    );
    assert_eq!(
        name(Provider::OpenAi, "o4-mini-2025-04-16"),
        some("o4-mini")
    );
    assert_eq!(
        name(Provider::OpenAi, "openai/gpt-4o-mini"),
        some("gpt-4o-mini")
    );
    // A dated snapshot with its own price is not collapsed into the family.
    assert_eq!(
        name(Provider::OpenAi, "gpt-4o-2024-05-13"),
        some("gpt-4o-2024-05-13")
    );
    assert_eq!(
        name(Provider::Anthropic, "claude-sonnet-4-5-20250929"),
        some("claude-sonnet-4-5")
    );
    assert_eq!(
        name(Provider::Anthropic, "claude-haiku-4-5-20251001"),
        some("claude-haiku-4-5")
    );
    assert_eq!(
        name(Provider::Anthropic, "claude-opus-4-1@20250805"),
        some("claude-opus-4-1")
    );
    assert_eq!(name(Provider::Xai, "grok-4-0709"), some("grok-4"));
    assert_eq!(name(Provider::Xai, "grok-3-mini-0415"), some("grok-3-mini"));
    assert_eq!(
        name(Provider::Gemini, "models/gemini-2.5-pro"),
        some("gemini-2.5-pro")
    );
    assert_eq!(
        name(Provider::Gemini, "gemini-2.5-flash"),
        some("gemini-2.5-flash")
    );
    assert_eq!(
        name(Provider::Mistral, "mistral-small-latest"),
        some("mistral-small")
    );
    assert_eq!(name(Provider::Mistral, "codestral-2501"), some("codestral"));
    assert_eq!(
        name(Provider::DeepSeek, "deepseek-v4-pro-0813"),
        some("deepseek-v4-pro")
    );
    assert_eq!(
        name(Provider::OpenRouter, "anthropic/claude-sonnet-4.5"),
        some("anthropic/claude-sonnet-4.5")
    );
    assert_eq!(
        name(Provider::Fireworks, "llama-v3p3-70b-instruct"),
        some("accounts/fireworks/models/llama-v3p3-70b-instruct")
    );
}

#[test]
fn azure_falls_back_to_openai_prices() {
    let t = table();
    let azure_own = t
        .resolve(Provider::Azure, "gpt-4o-2024-11-20")
        .expect("azure gpt-4o");
    assert_eq!(azure_own.provider(), Provider::Azure);
    let borrowed = t
        .resolve(Provider::Azure, "gpt-4.1-mini-2025-04-14")
        .expect("fallback");
    assert_eq!(
        (borrowed.provider(), borrowed.name()),
        (Provider::OpenAi, "gpt-4.1-mini")
    );
}

#[test]
fn fine_tunes_use_ft_prices() {
    let t = table();
    let ft = t
        .resolve(Provider::OpenAi, "ft:gpt-4o-mini-2024-07-18:my-org::9xYz")
        .expect("ft price");
    assert_eq!(ft.name(), "ft:gpt-4o-mini");
    // 1000 × 0.30 + 1000 × 1.20 = 1500 µ$
    let u = Usage {
        input_tokens: 1000,
        output_tokens: 1000,
        ..Usage::default()
    };
    let cost = t
        .cost_usage(
            Provider::OpenAi,
            "ft:gpt-4o-mini-2024-07-18:my-org::9xYz",
            &u,
            &ctx(TODAY),
        )
        .expect("priced");
    assert_eq!(cost.usd.to_string(), "0.0015");
    let ft41 = t
        .resolve(Provider::OpenAi, "ft:gpt-4.1-nano-2025-04-14:o:n:id")
        .expect("ft");
    assert_eq!(ft41.name(), "ft:gpt-4.1-nano");
}

// ---- dated versions, tiers, off-peak -----------------------------------------------

#[test]
fn dated_versions_pick_the_entry_in_effect() {
    let t = table();
    let u = Usage {
        input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    let price = |p, m, at: &str| {
        t.cost_usage(p, m, &u, &ctx(at))
            .expect("priced")
            .usd
            .to_string()
    };
    // o3: $10 / $40 at launch, $2 / $8 from 2025-06-10.
    assert_eq!(
        price(Provider::OpenAi, "o3-2025-04-16", "2025-05-01T00:00:00Z"),
        "50"
    );
    assert_eq!(
        price(Provider::OpenAi, "o3-2025-04-16", "2025-06-10T00:00:00Z"),
        "10"
    );
    // Gemini 3.8 Flash: $0.75 / $3.75 through 2026-12-31, $1.50 / $7.50 from 2027.
    assert_eq!(
        price(Provider::Gemini, "gemini-3.8-flash", "2026-12-31T23:59:59Z"),
        "4.5"
    );
    assert_eq!(
        price(Provider::Gemini, "gemini-3.8-flash", "2027-01-01T00:00:00Z"),
        "9"
    );
    // Before the first known entry: the first entry.
    assert_eq!(price(Provider::OpenAi, "o3", "2020-01-01T00:00:00Z"), "50");
    // Sonnet 5.5 cache reads: $0.20 until 2026-10-07, then $0.10 per million.
    let cached = Usage {
        input_tokens: 1_000_000,
        cached_input_tokens: 1_000_000,
        ..Usage::default()
    };
    let cache_read = |at: &str| {
        t.cost_usage(Provider::Anthropic, "claude-sonnet-5-5", &cached, &ctx(at))
            .expect("priced")
            .usd
            .to_string()
    };
    assert_eq!(cache_read("2026-10-06T23:59:59Z"), "0.2");
    assert_eq!(cache_read("2026-10-07T00:00:00Z"), "0.1");
}

#[test]
fn deepseek_off_peak_halves_token_rates() {
    let t = table();
    // deepseek-flash: 1M miss × 0.30 + 1M hit × 0.006 + 1M out × 1.20 = $1.506 at peak.
    let u = Usage {
        input_tokens: 2_000_000,
        cached_input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    let price = |at: &str| {
        t.cost_usage(Provider::DeepSeek, "deepseek-flash", &u, &ctx(at))
            .expect("priced")
            .usd
            .to_string()
    };
    assert_eq!(price("2026-11-25T02:30:00Z"), "1.506"); // Wednesday, peak 01-04
    assert_eq!(price("2026-11-25T09:59:59Z"), "1.506"); // Wednesday, peak 06-10
    assert_eq!(price("2026-11-25T10:00:00Z"), "0.753"); // Wednesday, off-peak
    assert_eq!(price("2026-11-25T04:00:00Z"), "0.753"); // Wednesday, between windows
    assert_eq!(price("2026-11-28T02:30:00Z"), "0.753"); // Saturday: off-peak all day
}

#[test]
fn long_context_applies_to_the_whole_request_with_tiers() {
    let t = table();
    // Sonnet 4.5, 250K prompt of which 50K cache reads: > 200K → 6 / 0.60 / 22.50.
    // 200000 × 6 + 50000 × 0.60 + 1000 × 22.50 = 1200000 + 30000 + 22500 = 1252500 µ$
    let u = Usage {
        input_tokens: 250_000,
        cached_input_tokens: 50_000,
        output_tokens: 1000,
        ..Usage::default()
    };
    let cost = |c: &PriceContext<'_>| {
        t.cost_usage(Provider::Anthropic, "claude-sonnet-4-5-20250929", &u, c)
            .expect("priced")
            .usd
            .to_string()
    };
    assert_eq!(cost(&ctx(TODAY)), "1.2525");
    // Batch halves the long-context rates: 626250 µ$
    let batch = PriceContext {
        batch: true,
        ..ctx(TODAY)
    };
    assert_eq!(cost(&batch), "0.62625");
    // Haiku 5.5 switches band above 100K: 100001 × 0.50 + 10 × 2.50 = 50000.5 + 25 µ$
    let haiku = Usage {
        input_tokens: 100_001,
        output_tokens: 10,
        ..Usage::default()
    };
    let c = t
        .cost_usage(Provider::Anthropic, "claude-haiku-5-5", &haiku, &ctx(TODAY))
        .expect("priced");
    assert_eq!(c.usd.to_string(), "0.0500255");
}

// ---- loading and overrides ----------------------------------------------------------

#[test]
fn every_provider_has_prices_and_every_fixture_model_resolves() {
    let t = table();
    for p in Provider::ALL {
        assert!(!t.models(p).is_empty(), "{p} has no prices");
    }
    assert!(t.version().starts_with("embedded-"));
    for (p, m) in [
        (Provider::OpenAi, "gpt-4o-2024-08-06"),
        (Provider::OpenAi, "gpt-4o-mini-2024-07-18"),
        (Provider::OpenAi, "o4-mini-2025-04-16"),
        (Provider::OpenAi, "gpt-5-mini-2025-08-07"),
        (Provider::OpenAi, "gpt-4.1-2025-04-14"),
        (Provider::OpenAi, "text-embedding-3-small"),
        (Provider::OpenAi, "gpt-3.5-turbo-instruct"),
        (Provider::Azure, "gpt-4o-2024-11-20"),
        (Provider::Anthropic, "claude-sonnet-4-5-20250929"),
        (Provider::Anthropic, "claude-3-5-haiku-20241022"),
        (Provider::Anthropic, "claude-opus-4-1-20250805"),
        (Provider::Gemini, "gemini-2.5-flash"),
        (Provider::Gemini, "gemini-2.5-pro"),
        (Provider::DeepSeek, "deepseek-chat"),
        (Provider::DeepSeek, "deepseek-reasoner"),
        (Provider::Groq, "llama-3.3-70b-versatile"),
        (Provider::Mistral, "mistral-small-latest"),
        (Provider::Xai, "grok-4-0709"),
        (Provider::OpenRouter, "anthropic/claude-sonnet-4.5"),
    ] {
        assert!(t.resolve(p, m).is_some(), "{p}/{m} unpriced");
    }
}

#[test]
fn override_replaces_and_adds_models() {
    let base = table();
    let version = base.version().to_owned();
    let t = base
        .with_override(
            r#"
            [[model]]
            provider = "openai"
            name = "gpt-4o"
            aliases = ["gpt-4o-2024-08-06"]
            effective = 2020-01-01
            input = "2"
            output = "8"

            [[model]]
            provider = "anthropic"
            name = "claude-internal-1"
            effective = "2026-01-01T00:00:00Z"
            input = 1.5
            output = 4
            "#,
        )
        .expect("override parses");
    assert!(t.version().starts_with(&version) && t.version().contains("+override-"));
    let u = Usage {
        input_tokens: 1_000_000,
        cached_input_tokens: 500_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    // Replaced: no cache price any more, so cached tokens bill as input:
    // 1M × 2 + 1M × 8 = $10 (the embedded price would be 1.25 + 0.625 + 10).
    let c = t
        .cost_usage(Provider::OpenAi, "gpt-4o-2024-08-06", &u, &ctx(TODAY))
        .expect("priced");
    assert_eq!(c.usd.to_string(), "10");
    // The embedded alias of the replaced model keeps resolving to the new prices.
    let c = t
        .cost_usage(Provider::OpenAi, "gpt-4o-2024-11-20", &u, &ctx(TODAY))
        .expect("priced");
    assert_eq!(c.usd.to_string(), "10");
    // Added (TOML floats are read through their text form): 1M × 1.5 + 1M × 4 = $5.5
    let c = t
        .cost_usage(Provider::Anthropic, "claude-internal-1", &u, &ctx(TODAY))
        .expect("priced");
    assert_eq!(c.usd.to_string(), "5.5");
    // Untouched models keep their prices.
    assert!(t.resolve(Provider::OpenAi, "gpt-4o-mini").is_some());
}

#[test]
fn from_file_reads_an_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("prices.toml");
    std::fs::write(
        &path,
        "provider = \"groq\"\n[[model]]\nname = \"llama-3.3-70b-versatile\"\neffective = 2024-01-01\ninput = \"1\"\noutput = \"1\"\n",
    )
    .expect("write");
    let t = PriceTable::from_file(&path).expect("loads");
    let u = Usage {
        input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    let c = t
        .cost_usage(Provider::Groq, "llama-3.3-70b-versatile", &u, &ctx(TODAY))
        .expect("priced");
    assert_eq!(c.usd.to_string(), "2");
    let missing = PriceTable::from_file(&dir.path().join("nope.toml"));
    assert!(matches!(missing, Err(PricingError::Read { .. })));
}

#[test]
fn bad_override_files_are_rejected() {
    let bad = [
        ("not toml", "[[model]\n"),
        (
            "unknown provider",
            "[[model]]\nprovider = \"acme\"\nname = \"m\"\neffective = 2024-01-01\ninput = \"1\"\noutput = \"1\"\n",
        ),
        (
            "no provider",
            "[[model]]\nname = \"m\"\neffective = 2024-01-01\ninput = \"1\"\noutput = \"1\"\n",
        ),
        (
            "too precise",
            "provider = \"openai\"\n[[model]]\nname = \"m\"\neffective = 2024-01-01\ninput = \"0.0000000001\"\noutput = \"1\"\n",
        ),
        (
            "negative",
            "provider = \"openai\"\n[[model]]\nname = \"m\"\neffective = 2024-01-01\ninput = \"-1\"\noutput = \"1\"\n",
        ),
        (
            "typo field",
            "provider = \"openai\"\n[[model]]\nname = \"m\"\neffective = 2024-01-01\ninput = \"1\"\nouptut = \"1\"\n",
        ),
        (
            "bad date",
            "provider = \"openai\"\n[[model]]\nname = \"m\"\neffective = \"yesterday\"\ninput = \"1\"\noutput = \"1\"\n",
        ),
        (
            "duplicate date",
            "provider = \"openai\"\n[[model]]\nname = \"m\"\neffective = 2024-01-01\ninput = \"1\"\noutput = \"1\"\n[[model]]\nname = \"m\"\neffective = 2024-01-01\ninput = \"2\"\noutput = \"2\"\n",
        ),
        (
            "bad peak hours",
            "provider = \"deepseek\"\n[[model]]\nname = \"m\"\neffective = 2024-01-01\ninput = \"1\"\noutput = \"1\"\noff_peak = { multiplier = \"0.5\", peak_hours_utc = [[4, 1]] }\n",
        ),
    ];
    for (what, text) in bad {
        assert!(table().with_override(text).is_err(), "{what} accepted");
    }
}
