//! Every token fixture priced exactly (see the parent module for the conventions).

use super::*;

// ---- every token fixture, exact --------------------------------------------------

#[test]
fn openai_fixtures() {
    let today = ctx(TODAY);
    // gpt-4o: 256 × 2.50 + 1280 × 1.25 + 212 × 10.00 = 640 + 1600 + 2120 = 4360 µ$
    assert_eq!(
        priced(Provider::OpenAi, "openai/chat_completion.json", &today),
        "0.00436"
    );
    // gpt-4o-mini: 24 × 0.15 + 8 × 0.60 = 3.6 + 4.8 = 8.4 µ$
    assert_eq!(
        priced(
            Provider::OpenAi,
            "openai/chat_stream_include_usage.sse",
            &today
        ),
        "0.0000084"
    );
    // gpt-5-mini: 320 × 0.25 + 1152 × 0.025 + 938 × 2.00 = 80 + 28.8 + 1876 = 1984.8 µ$
    assert_eq!(
        priced(Provider::OpenAi, "openai/responses.json", &today),
        "0.0019848"
    );
    // gpt-4.1 (dated name, date stripped): 37 × 2.00 + 10 × 8.00 = 74 + 80 = 154 µ$
    assert_eq!(
        priced(Provider::OpenAi, "openai/responses_stream.sse", &today),
        "0.000154"
    );
    // text-embedding-3-small: 17 × 0.02 = 0.34 µ$
    assert_eq!(
        priced(Provider::OpenAi, "openai/embeddings.json", &today),
        "0.00000034"
    );
    // gpt-3.5-turbo-instruct: 12 × 1.50 + 24 × 2.00 = 18 + 48 = 66 µ$
    assert_eq!(
        priced(Provider::OpenAi, "openai/completions_legacy.json", &today),
        "0.000066"
    );
}

#[test]
fn openai_flex_tier_from_the_response() {
    // o4-mini flex = 0.5 × (1.10 / 0.275 / 4.40) = 0.55 / 0.1375 / 2.20:
    // 176 × 0.55 + 2944 × 0.1375 + 1873 × 2.20 = 96.8 + 404.8 + 4120.6 = 4622.2 µ$
    let flex = PriceContext {
        service_tier: Some("flex"),
        ..ctx(TODAY)
    };
    assert_eq!(
        priced(
            Provider::OpenAi,
            "openai/chat_completion_reasoning.json",
            &flex
        ),
        "0.0046222"
    );
    // Same usage at the default tier: 176 × 1.10 + 2944 × 0.275 + 1873 × 4.40
    // = 193.6 + 809.6 + 8241.2 = 9244.4 µ$
    let default = PriceContext {
        service_tier: Some("default"),
        ..ctx(TODAY)
    };
    assert_eq!(
        priced(
            Provider::OpenAi,
            "openai/chat_completion_reasoning.json",
            &default
        ),
        "0.0092444"
    );
    // Explicit priority prices 2.00 / 0.50 / 8.00:
    // 176 × 2 + 2944 × 0.5 + 1873 × 8 = 352 + 1472 + 14984 = 16808 µ$
    let priority = PriceContext {
        service_tier: Some("Priority"),
        ..ctx(TODAY)
    };
    assert_eq!(
        priced(
            Provider::OpenAi,
            "openai/chat_completion_reasoning.json",
            &priority
        ),
        "0.016808"
    );
}

#[test]
fn openai_batch_output_at_half_price() {
    let batch = PriceContext {
        batch: true,
        service_tier: Some("default"),
        ..ctx(TODAY)
    };
    // Line 1: (412 × 0.15 + 57 × 0.60) × 0.5 = (61.8 + 34.2) / 2 = 48 µ$
    // Line 2: (388 × 0.15 + 61 × 0.60) × 0.5 = (58.2 + 36.6) / 2 = 47.4 µ$
    // Sum over both lines (800 in, 118 out) = 95.4 µ$
    assert_eq!(
        priced(Provider::OpenAi, "openai/batch_output.jsonl", &batch),
        "0.0000954"
    );
    let t = table();
    let line = |input, output| Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    };
    let lines: Money = [line(412, 57), line(388, 61)]
        .iter()
        .map(|u| t.cost_usage(Provider::OpenAi, "gpt-4o-mini-2024-07-18", u, &batch))
        .map(|c| c.expect("priced").usd)
        .sum();
    assert_eq!(lines.to_string(), "0.0000954");
}

#[test]
fn azure_fixtures_price_by_response_model() {
    let today = ctx(TODAY);
    // gpt-4o-2024-11-20 (azure.toml alias): 58 × 2.50 + 120 × 10.00 = 145 + 1200 = 1345 µ$
    assert_eq!(
        priced(Provider::Azure, "azure/chat_completion.json", &today),
        "0.001345"
    );
    // 19 × 2.50 + 9 × 10.00 = 47.5 + 90 = 137.5 µ$
    assert_eq!(
        priced(
            Provider::Azure,
            "azure/chat_stream_include_usage.sse",
            &today
        ),
        "0.0001375"
    );
}

#[test]
fn anthropic_fixtures() {
    let today = ctx(TODAY);
    // sonnet 4.5: 312 × 3 + 9600 × 0.30 + 1850 × 3.75 (5m write) + 428 × 15
    // = 936 + 2880 + 6937.5 + 6420 = 17173.5 µ$
    assert_eq!(
        priced(Provider::Anthropic, "anthropic/messages.json", &today),
        "0.0171735"
    );
    // 24 × 3 + 14336 × 0.30 + 3072 × 6.00 (1h write) + 156 × 15
    // = 72 + 4300.8 + 18432 + 2340 = 25144.8 µ$
    assert_eq!(
        priced(Provider::Anthropic, "anthropic/messages_stream.sse", &today),
        "0.0251448"
    );
    // haiku 3.5: 472 × 0.80 + 89 × 4 = 377.6 + 356 = 733.6 µ$
    assert_eq!(
        priced(
            Provider::Anthropic,
            "anthropic/messages_stream_output_only_delta.sse",
            &today
        ),
        "0.0007336"
    );
    // opus 4.1 (partial stream, lower bound): 1200 × 15 + 1 × 75 = 18000 + 75 = 18075 µ$
    assert_eq!(
        priced(
            Provider::Anthropic,
            "anthropic/messages_stream_error.sse",
            &today
        ),
        "0.018075"
    );
}

#[test]
fn anthropic_web_search_fee() {
    // 6412 × 3 + 512 × 15 = 19236 + 7680 = 26916 µ$, plus 2 searches × $10 / 1000
    // = 20000 µ$ → 46916 µ$
    assert_eq!(
        priced(
            Provider::Anthropic,
            "anthropic/messages_web_search.json",
            &ctx(TODAY)
        ),
        "0.046916"
    );
    // The fee is not scaled by the batch discount: 26916 / 2 + 20000 = 33458 µ$
    let batch = PriceContext {
        batch: true,
        ..ctx(TODAY)
    };
    assert_eq!(
        priced(
            Provider::Anthropic,
            "anthropic/messages_web_search.json",
            &batch
        ),
        "0.033458"
    );
}

#[test]
fn anthropic_one_hour_writes_cost_more_than_five_minute_writes() {
    let t = table();
    let five = Usage {
        input_tokens: 1000,
        cache_write_5m_tokens: 1000,
        ..Usage::default()
    };
    let hour = Usage {
        input_tokens: 1000,
        cache_write_1h_tokens: 1000,
        ..Usage::default()
    };
    let price = |u: &Usage| {
        t.cost_usage(Provider::Anthropic, "claude-sonnet-4-5", u, &ctx(TODAY))
            .expect("priced")
            .usd
            .to_string()
    };
    // 1000 × 3.75 = 3750 µ$ vs 1000 × 6.00 = 6000 µ$
    assert_eq!(price(&five), "0.00375");
    assert_eq!(price(&hour), "0.006");
}

#[test]
fn gemini_fixtures() {
    let today = ctx(TODAY);
    // 2.5 flash: 2072 × 0.30 + 2048 × 0.03 + 1282 × 2.50 (thoughts included)
    // = 621.6 + 61.44 + 3205 = 3888.04 µ$
    assert_eq!(
        priced(Provider::Gemini, "gemini/generate_content.json", &today),
        "0.00388804"
    );
    // 2.5 pro: 812 × 1.25 + 574 × 10 = 1015 + 5740 = 6755 µ$ (both framings)
    assert_eq!(
        priced(
            Provider::Gemini,
            "gemini/stream_generate_content.sse",
            &today
        ),
        "0.006755"
    );
    assert_eq!(
        priced(
            Provider::Gemini,
            "gemini/stream_generate_content_crlf.sse",
            &today
        ),
        "0.006755"
    );
    // OpenAI-compatible endpoint: 758 × 0.30 + 967 × 2.50 = 227.4 + 2417.5 = 2644.9 µ$
    assert_eq!(
        priced(
            Provider::Gemini,
            "gemini/openai_compat_chat_completion.json",
            &today
        ),
        "0.0026449"
    );
}

#[test]
fn gemini_long_context_tier() {
    // 245760 prompt tokens > 200000: the whole request at 2.50 in / 15 out:
    // 245760 × 2.50 + 3072 × 15 = 614400 + 46080 = 660480 µ$
    assert_eq!(
        priced(
            Provider::Gemini,
            "gemini/generate_content_long_context.json",
            &ctx(TODAY)
        ),
        "0.66048"
    );
    // At exactly the threshold the standard tier still applies:
    // 200000 × 1.25 + 1000 × 10 = 250000 + 10000 = 260000 µ$
    let at_threshold = Usage {
        input_tokens: 200_000,
        output_tokens: 1000,
        ..Usage::default()
    };
    let cost = table()
        .cost_usage(
            Provider::Gemini,
            "models/gemini-2.5-pro",
            &at_threshold,
            &ctx(TODAY),
        )
        .expect("priced");
    assert_eq!(cost.usd.to_string(), "0.26");
}

#[test]
fn gemini_grounding_fee() {
    // 230 × 0.30 + 240 × 2.50 = 69 + 600 = 669 µ$, plus 1 grounded prompt × $35 / 1000
    // = 35000 µ$ → 35669 µ$
    assert_eq!(
        priced(
            Provider::Gemini,
            "gemini/generate_content_search_grounding.json",
            &ctx(TODAY)
        ),
        "0.035669"
    );
}

#[test]
fn deepseek_fixtures_at_v3_2_prices() {
    // deepseek-chat / deepseek-reasoner were retired in 2026: price them on a date
    // when they served DeepSeek-V3.2 (0.28 miss / 0.028 hit / 0.42 out).
    let jan = ctx("2026-01-15T12:00:00Z");
    // 38 × 0.28 + 1792 × 0.028 + 295 × 0.42 = 10.64 + 50.176 + 123.9 = 184.716 µ$
    assert_eq!(
        priced(Provider::DeepSeek, "deepseek/chat_completion.json", &jan),
        "0.000184716"
    );
    // 64 × 0.28 + 1104 × 0.42 = 17.92 + 463.68 = 481.6 µ$
    assert_eq!(
        priced(
            Provider::DeepSeek,
            "deepseek/chat_completion_reasoner.json",
            &jan
        ),
        "0.0004816"
    );
}

#[test]
fn groq_mistral_fixtures() {
    let today = ctx(TODAY);
    // llama-3.3-70b-versatile: 45 × 0.59 + 28 × 0.79 = 26.55 + 22.12 = 48.67 µ$
    assert_eq!(
        priced(Provider::Groq, "groq/chat_stream_x_groq.sse", &today),
        "0.00004867"
    );
    // mistral-small-latest: 27 × 0.10 + 15 × 0.30 = 2.7 + 4.5 = 7.2 µ$
    assert_eq!(
        priced(Provider::Mistral, "mistral/chat_stream.sse", &today),
        "0.0000072"
    );
}

#[test]
fn provider_reported_cost_wins() {
    let t = table();
    let today = ctx(TODAY);
    // OpenRouter: usage.cost 0.0058704. The table agrees:
    // 202 × 3 + 2048 × 0.30 + 310 × 15 = 606 + 614.4 + 4650 = 5870.4 µ$
    let parsed = ParsedUsage {
        usage: fixture_usage("openrouter/chat_completion.json"),
        complete: true,
        model: Some("anthropic/claude-sonnet-4.5".into()),
        service_tier: None,
        provider_cost_usd: Some("0.0058704".into()),
    };
    let model = fixture_model("openrouter/chat_completion.json");
    let cost = t
        .cost(Provider::OpenRouter, &model, &parsed, &today)
        .expect("cost");
    assert_eq!(
        (cost.usd.to_string().as_str(), cost.priced_by),
        ("0.0058704", PricedBy::Provider)
    );
    assert_eq!(
        priced(
            Provider::OpenRouter,
            "openrouter/chat_completion.json",
            &today
        ),
        "0.0058704"
    );

    // xAI: cost_in_usd_ticks 248250000 / 1e10 = 0.024825. The table agrees (reasoning
    // is already added to output by the parser): 200 × 3 + 640 × 0.75 + 1583 × 15
    // = 600 + 480 + 23745 = 24825 µ$
    let parsed = ParsedUsage {
        usage: fixture_usage("xai/chat_completion.json"),
        provider_cost_usd: Some("0.024825".into()),
        ..ParsedUsage::default()
    };
    let cost = t
        .cost(Provider::Xai, "grok-4-0709", &parsed, &today)
        .expect("cost");
    assert_eq!(
        (cost.usd.to_string().as_str(), cost.priced_by),
        ("0.024825", PricedBy::Provider)
    );
    assert_eq!(
        priced(Provider::Xai, "xai/chat_completion.json", &today),
        "0.024825"
    );

    // A malformed provider cost falls back to the table.
    let parsed = ParsedUsage {
        provider_cost_usd: Some("2.4825e-2".into()),
        ..parsed
    };
    let cost = t
        .cost(Provider::Xai, "grok-4-0709", &parsed, &today)
        .expect("cost");
    assert_eq!(
        (cost.usd.to_string().as_str(), cost.priced_by),
        ("0.024825", PricedBy::Table)
    );
    assert_eq!(&*cost.table_version, t.version());
}

#[test]
fn missing_usage_or_unknown_model_is_unpriced() {
    let t = table();
    assert_eq!(fixture_usage("openai/chat_stream_no_usage.sse"), None);
    let no_usage = ParsedUsage {
        usage: None,
        ..ParsedUsage::default()
    };
    assert_eq!(
        t.cost(Provider::OpenAi, "gpt-4o-mini", &no_usage, &ctx(TODAY)),
        None
    );
    let some = ParsedUsage {
        usage: Some(Usage {
            input_tokens: 10,
            output_tokens: 10,
            ..Usage::default()
        }),
        ..ParsedUsage::default()
    };
    assert_eq!(
        t.cost(Provider::OpenAi, "my-own-model", &some, &ctx(TODAY)),
        None
    );
    assert_eq!(
        t.cost(Provider::Anthropic, "gpt-4o", &some, &ctx(TODAY)),
        None
    );
    // A fine-tune without an ft: price is unpriced, never billed as its base model.
    assert!(
        t.resolve(Provider::OpenAi, "ft:gpt-5-mini-2025-08-07:org::x")
            .is_none()
    );
    assert!(t.resolve(Provider::OpenAi, "").is_none());
}
