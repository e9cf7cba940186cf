//! The query API against sums worked out here: a known mix of calls (several
//! providers, models, customers and hours, some unpriced, some without usage) is
//! written through the store, then every endpoint's numbers are compared with the
//! test's own arithmetic over the raw list, for aligned, ragged, tiny and empty
//! ranges and every filter. Also: event pages join up, the CSV export, proxied calls
//! end to end, and stats over 1,000,000 events answering fast (rollups, not a scan).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::app::TestApp;
use common::mock_upstream::{MockUpstream, MockUpstreamHandle, Reply, fixture};
use llmobserve::pricing::Money;
use llmobserve::providers::{Endpoint, Provider, Usage};
use llmobserve::store::model::{CostEvent, Outcome, UsageStatus};
use llmobserve::time::{DAY_MS, HOUR_MS, hour_floor, now_ms, rfc3339_ms};
use serde_json::{Value, json};

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// (provider, model, priced?)
const MODELS: &[(Provider, Option<&str>, bool)] = &[
    (Provider::OpenAi, Some("gpt-4o"), true),
    (Provider::OpenAi, Some("gpt-4o-mini"), true),
    (Provider::OpenAi, Some("mystery-model"), false),
    (Provider::Anthropic, Some("claude-sonnet-4-5"), true),
    (Provider::Anthropic, None, false),
    (Provider::Gemini, Some("gemini-2.5-flash"), true),
];
const CUSTOMERS: &[Option<&str>] = &[
    Some("alice"),
    Some("bob"),
    Some("carol"),
    Some("dave,x"),
    None,
];

struct Ctx {
    app: TestApp,
    _upstream: MockUpstreamHandle,
    token: String,
    user_id: String,
    key_id: String,
}

async fn setup() -> Ctx {
    let upstream = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .start()
        .await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let s = app.signup("q@example.com").await;
    Ctx {
        token: s.token,
        user_id: s.user_id,
        key_id: s.key_id,
        app,
        _upstream: upstream,
    }
}

fn event(ctx: &Ctx, seq: u128, ts_ms: i64, rng: &mut Rng) -> CostEvent {
    let (provider, model, priced) = rng.pick(MODELS);
    let customer = rng.pick(CUSTOMERS);
    let missing_usage = rng.below(20) == 0;
    let usage = (!missing_usage).then(|| {
        let input = 10 + rng.below(5000);
        let output = rng.below(2000);
        Usage {
            input_tokens: input,
            cached_input_tokens: rng.below(input),
            output_tokens: output,
            reasoning_tokens: rng.below(output + 1),
            ..Usage::default()
        }
    });
    let cost = match (&usage, priced) {
        (Some(u), true) => Some(Money::from_femto(
            i128::from(u.input_tokens) * 150_000_000 + i128::from(u.output_tokens) * 600_000_003,
        )),
        _ => None,
    };
    CostEvent {
        id: ulid::Ulid::from_parts(ts_ms as u64, seq).to_string(),
        user_id: ctx.user_id.clone(),
        ts_ms,
        provider,
        endpoint: Endpoint::ChatCompletions,
        model: model.map(str::to_owned),
        customer_id: customer.map(str::to_owned),
        api_key_id: ctx.key_id.clone(),
        status: 200,
        outcome: Outcome::Ok,
        streamed: false,
        latency_ms: 100,
        ttft_ms: None,
        usage,
        usage_status: if missing_usage {
            UsageStatus::Missing
        } else {
            UsageStatus::Reported
        },
        cost,
        upstream_request_id: None,
        service_tier: None,
    }
}

async fn write(ctx: &Ctx, events: Vec<CostEvent>) {
    let store = ctx.app.app.state.store.clone();
    tokio::task::spawn_blocking(move || store.write_events(&events))
        .await
        .unwrap()
        .unwrap();
}

async fn get(ctx: &Ctx, path_and_query: &str) -> (u16, Value) {
    ctx.app.api_get(&ctx.token, path_and_query).await
}

// ---- the test's own arithmetic ----

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct Sum {
    cost: Money,
    calls: u64,
    unpriced: u64,
    input: u64,
    output: u64,
    cached: u64,
    reasoning: u64,
    last_seen: i64,
}

impl Sum {
    fn add(&mut self, e: &CostEvent) {
        self.calls += 1;
        match e.cost {
            Some(c) => self.cost += c,
            None => self.unpriced += 1,
        }
        if let Some(u) = &e.usage {
            self.input += u.input_tokens;
            self.output += u.output_tokens;
            self.cached += u.cached_input_tokens;
            self.reasoning += u.reasoning_tokens;
        }
        self.last_seen = self.last_seen.max(e.ts_ms);
    }

    /// A breakdown row's cost: null when all its calls are unpriced.
    fn group_cost(&self) -> Value {
        if self.calls > 0 && self.unpriced == self.calls {
            Value::Null
        } else {
            self.cost.to_string().into()
        }
    }
}

#[derive(Clone, Default)]
struct Query {
    from: Option<i64>,
    to: Option<i64>,
    customer: Option<&'static str>,
    provider: Option<&'static str>,
    model: Option<&'static str>,
}

impl Query {
    fn qs(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = self.from {
            parts.push(format!("from={}", rfc3339_ms(f)));
        }
        if let Some(t) = self.to {
            parts.push(format!("to={}", rfc3339_ms(t)));
        }
        for (k, v) in [
            ("customer_id", self.customer),
            ("provider", self.provider),
            ("model", self.model),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", v.replace(',', "%2C")));
            }
        }
        parts.join("&")
    }

    fn keeps(&self, e: &CostEvent) -> bool {
        self.from.is_none_or(|f| e.ts_ms >= f)
            && self.to.is_none_or(|t| e.ts_ms < t)
            && self
                .customer
                .is_none_or(|c| e.customer_id.as_deref() == Some(c))
            && self.provider.is_none_or(|p| e.provider.as_str() == p)
            && self.model.is_none_or(|m| e.model.as_deref() == Some(m))
    }
}

fn sum_by<K: Ord>(
    events: &[CostEvent],
    q: &Query,
    key: impl Fn(&CostEvent) -> Option<K>,
) -> BTreeMap<K, Sum> {
    let mut m: BTreeMap<K, Sum> = BTreeMap::new();
    for e in events.iter().filter(|e| q.keeps(e)) {
        if let Some(k) = key(e) {
            m.entry(k).or_default().add(e);
        }
    }
    m
}

/// Costliest first, then most calls, then key: the API's order.
fn costliest<K: Ord + Clone>(m: &BTreeMap<K, Sum>) -> Vec<(K, Sum)> {
    let mut v: Vec<(K, Sum)> = m.iter().map(|(k, s)| (k.clone(), *s)).collect();
    v.sort_by(|(ka, a), (kb, b)| {
        b.cost
            .cmp(&a.cost)
            .then(b.calls.cmp(&a.calls))
            .then(ka.cmp(kb))
    });
    v
}

fn expected_series(
    events: &[CostEvent],
    q: &Query,
    width: i64,
    now: i64,
) -> Vec<(String, String, u64)> {
    let mut m = sum_by(events, q, |e| Some(e.ts_ms.div_euclid(width) * width));
    let start = q.from.or_else(|| m.keys().next().copied());
    let end = q.to.unwrap_or(now + 1);
    if let Some(start) = start {
        let first = start.div_euclid(width) * width;
        if end > first && (end - first) / width < 1000 {
            let mut t = first;
            while t < end {
                m.entry(t).or_default();
                t += width;
            }
        }
    }
    m.iter()
        .map(|(t, s)| (rfc3339_ms(*t), s.cost.to_string(), s.calls))
        .collect()
}

fn series_of(v: &Value) -> Vec<(String, String, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["t"].as_str().unwrap().to_owned(),
                p["cost_usd"].as_str().unwrap().to_owned(),
                p["calls"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn check_stats(got: &Value, events: &[CostEvent], q: &Query, what: &str) {
    let all = sum_by(events, q, |_| Some(()))
        .remove(&())
        .unwrap_or_default();
    let unattributed = sum_by(events, q, |e| e.customer_id.is_none().then_some(()))
        .remove(&())
        .unwrap_or_default();
    assert_eq!(got["total_cost_usd"], all.cost.to_string(), "{what}");
    assert_eq!(got["calls"], all.calls, "{what}");
    assert_eq!(got["unpriced_calls"], all.unpriced, "{what}");
    assert_eq!(got["input_tokens"], all.input, "{what}");
    assert_eq!(got["output_tokens"], all.output, "{what}");
    assert_eq!(got["cached_input_tokens"], all.cached, "{what}");
    assert_eq!(got["reasoning_tokens"], all.reasoning, "{what}");
    assert_eq!(
        got["unattributed_cost_usd"],
        unattributed.cost.to_string(),
        "{what}"
    );
    assert_eq!(got["unattributed_calls"], unattributed.calls, "{what}");

    let by_provider: Vec<Value> =
        costliest(&sum_by(events, q, |e| Some(e.provider.as_str().to_owned())))
            .iter()
            .map(|(p, s)| {
                json!({"provider": p, "cost_usd": s.group_cost(), "calls": s.calls,
               "unpriced_calls": s.unpriced, "input_tokens": s.input, "output_tokens": s.output})
            })
            .collect();
    let got_provider: Vec<Value> = got["by_provider"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!({"provider": r["provider"], "cost_usd": r["cost_usd"], "calls": r["calls"],
                   "unpriced_calls": r["unpriced_calls"], "input_tokens": r["input_tokens"],
                   "output_tokens": r["output_tokens"]})
        })
        .collect();
    assert_eq!(got_provider, by_provider, "{what}: by_provider");

    let by_model: Vec<Value> = costliest(&sum_by(events, q, |e| {
        Some((
            e.provider.as_str().to_owned(),
            e.model.clone().unwrap_or_default(),
        ))
    }))
    .iter()
    .map(|((p, m), s)| {
        let model = if m.is_empty() {
            Value::Null
        } else {
            m.as_str().into()
        };
        json!({"provider": p, "model": model, "cost_usd": s.group_cost(), "calls": s.calls,
               "input_tokens": s.input, "output_tokens": s.output})
    })
    .collect();
    let got_model: Vec<Value> = got["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!({"provider": r["provider"], "model": r["model"], "cost_usd": r["cost_usd"],
                   "calls": r["calls"], "input_tokens": r["input_tokens"],
                   "output_tokens": r["output_tokens"]})
        })
        .collect();
    assert_eq!(got_model, by_model, "{what}: by_model");
}

fn check_customers(got: &Value, events: &[CostEvent], q: &Query, what: &str) {
    let expected: Vec<Value> = costliest(&sum_by(events, q, |e| e.customer_id.clone()))
        .iter()
        .map(|(c, s)| {
            json!({"customer_id": c, "cost_usd": s.group_cost(), "calls": s.calls,
                   "input_tokens": s.input, "output_tokens": s.output,
                   "last_seen": rfc3339_ms(s.last_seen)})
        })
        .collect();
    let got: Vec<Value> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!({"customer_id": r["customer_id"], "cost_usd": r["cost_usd"], "calls": r["calls"],
                   "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
                   "last_seen": r["last_seen"]})
        })
        .collect();
    assert_eq!(got, expected, "{what}: customers");
}

/// A mix of ~3000 calls over 60 hours from `base`, some exactly on hour boundaries.
fn known_mix(ctx: &Ctx, base: i64) -> Vec<CostEvent> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut events = Vec::new();
    for seq in 0..3000u128 {
        let ts = if seq % 97 == 0 {
            base + (seq as i64 % 60) * HOUR_MS // on a boundary
        } else {
            base + rng.below(60 * HOUR_MS as u64) as i64
        };
        events.push(event(ctx, seq, ts, &mut rng));
    }
    events
}

#[tokio::test]
async fn every_endpoint_matches_sums_worked_out_by_hand() {
    let ctx = setup().await;
    let now = now_ms();
    let base = hour_floor(now) - 70 * HOUR_MS;
    let events = known_mix(&ctx, base);
    // Written in a few batches, as the writer would.
    for chunk in events.chunks(700) {
        write(&ctx, chunk.to_vec()).await;
    }

    let h = HOUR_MS;
    let ranges: Vec<(&str, Option<i64>, Option<i64>)> = vec![
        ("all time", None, None),
        ("aligned", Some(base + 5 * h), Some(base + 40 * h)),
        (
            "ragged",
            Some(base + 5 * h + 123_457),
            Some(base + 40 * h + 999),
        ),
        (
            "within one hour",
            Some(base + 7 * h + 1000),
            Some(base + 7 * h + 2_000_000),
        ),
        (
            "across one boundary",
            Some(base + 7 * h + 3_000_000),
            Some(base + 8 * h + 500_000),
        ),
        ("on boundaries", Some(base + 3 * h), Some(base + 3 * h + 1)),
        ("from only", Some(base + 50 * h + 17), None),
        ("to only", None, Some(base + 11 * h + 42)),
        ("empty", Some(base + 10 * h), Some(base + 10 * h)),
        ("before any call", Some(base - 20 * h), Some(base - 10 * h)),
    ];
    let filters: Vec<(&str, Query)> = vec![
        ("none", Query::default()),
        (
            "customer",
            Query {
                customer: Some("alice"),
                ..Query::default()
            },
        ),
        (
            "customer with comma",
            Query {
                customer: Some("dave,x"),
                ..Query::default()
            },
        ),
        (
            "provider",
            Query {
                provider: Some("anthropic"),
                ..Query::default()
            },
        ),
        (
            "model",
            Query {
                model: Some("gpt-4o-mini"),
                ..Query::default()
            },
        ),
        (
            "unpriced model",
            Query {
                model: Some("mystery-model"),
                ..Query::default()
            },
        ),
        (
            "provider and customer",
            Query {
                provider: Some("openai"),
                customer: Some("bob"),
                ..Query::default()
            },
        ),
    ];
    let mut checked_calls = 0u64;
    for (rname, from, to) in &ranges {
        for (fname, filter) in &filters {
            let q = Query {
                from: *from,
                to: *to,
                ..filter.clone()
            };
            let what = format!("{rname} / {fname}");
            let qs = q.qs();
            let (status, st) = get(&ctx, &format!("/api/stats?{qs}")).await;
            assert_eq!(status, 200, "{what}: {st}");
            check_stats(&st, &events, &q, &what);
            checked_calls += st["calls"].as_u64().unwrap();

            let (_, cs) = get(&ctx, &format!("/api/customers?{qs}")).await;
            check_customers(&cs, &events, &q, &what);

            for (bucket, width) in [("hour", HOUR_MS), ("day", DAY_MS)] {
                let (_, ts) = get(&ctx, &format!("/api/timeseries?bucket={bucket}&{qs}")).await;
                // "now" moves between request and check only within one bucket in
                // practice; compute with a fresh now.
                let expected = expected_series(&events, &q, width, now_ms());
                assert_eq!(series_of(&ts), expected, "{what}: {bucket} series");
            }
        }
    }
    assert!(checked_calls > 3000, "the mix was exercised");

    // All of it adds up to the whole mix.
    let (_, st) = get(&ctx, "/api/stats").await;
    assert_eq!(st["calls"], 3000);

    // One customer in detail.
    let q = Query {
        from: Some(base + 5 * h + 123_457),
        to: Some(base + 40 * h + 999),
        customer: Some("alice"),
        ..Query::default()
    };
    let (status, c) = get(
        &ctx,
        &format!(
            "/api/customers/alice?from={}&to={}",
            rfc3339_ms(base + 5 * h + 123_457),
            rfc3339_ms(base + 40 * h + 999)
        ),
    )
    .await;
    assert_eq!(status, 200);
    let s = sum_by(&events, &q, |_| Some(())).remove(&()).unwrap();
    assert_eq!(c["customer_id"], "alice");
    assert_eq!(c["cost_usd"], s.cost.to_string());
    assert_eq!(c["calls"], s.calls);
    assert_eq!(c["input_tokens"], s.input);
    assert_eq!(c["output_tokens"], s.output);
    assert_eq!(c["last_seen"], rfc3339_ms(s.last_seen));
    let models: u64 = c["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(models, s.calls);
    assert_eq!(
        series_of(&c["timeseries"]),
        expected_series(&events, &q, DAY_MS, now_ms())
    );
    let (status, c) = get(&ctx, "/api/customers/dave%2Cx?bucket=hour").await;
    assert_eq!(status, 200);
    let q = Query {
        customer: Some("dave,x"),
        ..Query::default()
    };
    assert_eq!(
        series_of(&c["timeseries"]),
        expected_series(&events, &q, HOUR_MS, now_ms())
    );
    // Seen, but not in this range: 200 with zeros. Never seen: 404.
    let (status, c) = get(
        &ctx,
        &format!(
            "/api/customers/alice?from={}&to={}",
            rfc3339_ms(base - 20 * h),
            rfc3339_ms(base - 10 * h)
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(c["calls"], 0);
    assert_eq!(c["last_seen"], Value::Null);
    let (status, body) = get(&ctx, "/api/customers/zed").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    // Bad parameters are clear 400s.
    for bad in [
        "/api/stats?from=yesterday",
        "/api/stats?provider=nosuch",
        "/api/timeseries?bucket=week",
        "/api/events?cursor=zzz",
        "/api/events?limit=many",
    ] {
        let (status, body) = get(&ctx, bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 10);
    }
}

/// Pages through `/api/events` and returns the ids in order.
async fn page_all(ctx: &Ctx, qs: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut path = format!("/api/events?limit={limit}&{qs}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = get(ctx, &path).await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= limit);
        ids.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
    panic!("paging never ended");
}

#[tokio::test]
async fn event_pages_join_up_newest_first_and_csv_matches() {
    let ctx = setup().await;
    let base = hour_floor(now_ms()) - 70 * HOUR_MS;
    let events = known_mix(&ctx, base);
    write(&ctx, events.clone()).await;
    let h = HOUR_MS;

    let cases = [
        Query::default(),
        Query {
            from: Some(base + 5 * h + 123_457),
            to: Some(base + 40 * h + 999),
            ..Query::default()
        },
        Query {
            customer: Some("carol"),
            provider: Some("openai"),
            ..Query::default()
        },
        Query {
            model: Some("nothing-matches"),
            ..Query::default()
        },
    ];
    for (i, q) in cases.iter().enumerate() {
        let mut expected: Vec<&CostEvent> = events.iter().filter(|e| q.keeps(e)).collect();
        expected.sort_by(|a, b| b.id.cmp(&a.id));
        let expected: Vec<String> = expected.iter().map(|e| e.id.clone()).collect();
        for limit in [37, 500] {
            let ids = page_all(&ctx, &q.qs(), limit).await;
            assert_eq!(ids.len(), expected.len(), "case {i} limit {limit}");
            assert_eq!(
                ids, expected,
                "case {i} limit {limit}: gaps, repeats or order"
            );
        }
    }

    // One page: the event JSON as DESIGN shows it, newest first by ts.
    let (_, page) = get(&ctx, "/api/events").await;
    let list = page["events"].as_array().unwrap();
    assert_eq!(list.len(), 50, "default page size");
    let ts: Vec<&str> = list.iter().map(|e| e["ts"].as_str().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]));
    for field in [
        "id",
        "ts",
        "provider",
        "endpoint",
        "model",
        "customer_id",
        "api_key_id",
        "status",
        "outcome",
        "streamed",
        "latency_ms",
        "ttft_ms",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "usage_status",
        "cost_usd",
        "priced",
        "upstream_request_id",
    ] {
        assert!(list[0].get(field).is_some(), "event lacks {field}");
    }
    let (_, page) = get(&ctx, "/api/events?limit=100000").await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        500,
        "limit is capped"
    );

    // CSV: same filters, header row, every matching event, quoted where needed.
    let q = Query {
        from: Some(base + 5 * h + 123_457),
        to: Some(base + 40 * h + 999),
        ..Query::default()
    };
    let r = ctx
        .app
        .http
        .get(format!("{}/api/events.csv?{}", ctx.app.admin, q.qs()))
        .bearer_auth(&ctx.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("id,ts,provider,endpoint,model,customer_id"));
    let expected = events.iter().filter(|e| q.keeps(e)).count();
    assert_eq!(lines.len(), expected + 1);
    assert!(text.contains(",\"dave,x\","), "quoted customer id");
    let newest = events
        .iter()
        .filter(|e| q.keeps(e))
        .max_by(|a, b| a.id.cmp(&b.id))
        .unwrap();
    assert!(lines[1].starts_with(&newest.id));
}

#[tokio::test]
async fn proxied_calls_show_up_in_every_endpoint() {
    let upstream = MockUpstream::tls()
        .json("/v1/chat/completions", "openai/chat_completion.json")
        .start()
        .await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let s = app.signup("e2e@example.com").await;
    let (token, key, user_id) = (s.token, s.key, s.user_id);
    for customer in ["alice", "alice", "bob"] {
        let r = app
            .http
            .post(app.url("/v1/chat/completions"))
            .header("x-llmobserve-key", &key)
            .header("authorization", "Bearer sk-own")
            .header("x-customer-id", customer)
            .header("content-type", "application/json")
            .body(r#"{"model":"gpt-4o","messages":[]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let stored = app.wait_events(&user_id, 3).await;
    let one = stored[0].cost.unwrap();
    let get = async |path: &str| -> Value {
        let (status, v) = app.api_get(&token, path).await;
        assert_eq!(status, 200, "{path}");
        v
    };
    let st = get("/api/stats").await;
    assert_eq!(st["calls"], 3);
    assert_eq!(st["total_cost_usd"], (one * 3).to_string());
    assert_eq!(st["by_provider"][0]["provider"], "openai");
    assert_eq!(
        st["by_model"][0]["model"],
        stored[0].model.as_deref().unwrap()
    );
    assert_eq!(st["unattributed_calls"], 0);
    let cs = get("/api/customers").await;
    assert_eq!(cs[0]["customer_id"], "alice");
    assert_eq!(cs[0]["cost_usd"], (one * 2).to_string());
    assert_eq!(cs[1]["customer_id"], "bob");
    let ev = get("/api/events").await;
    let ids: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, expected);
    assert_eq!(ev["next_cursor"], Value::Null);
    let ts = get("/api/timeseries?bucket=hour").await;
    let calls: u64 = ts
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, 3);
}

/// DESIGN: a model with no price is recorded with `cost_usd: null` and shown as
/// unpriced, never as $0. One unpriced and one priced call, read back through the API.
#[tokio::test]
async fn a_call_to_an_unpriced_model_is_null_not_zero_in_events_and_stats() {
    let mystery = String::from_utf8(fixture("openai/chat_completion.json").to_vec())
        .unwrap()
        .replace("\"gpt-4o-2024-08-06\"", "\"mystery-model-9000\"");
    let upstream = MockUpstream::tls()
        .route(
            "POST",
            "/v1/chat/completions",
            Reply::func(move |req| {
                if req.body_text().contains("mystery-model-9000") {
                    Reply::json(200, mystery.clone()).header("x-request-id", "req_mystery")
                } else {
                    Reply::json(200, fixture("openai/chat_completion.json"))
                }
            }),
        )
        .start()
        .await;
    let app = TestApp::spawn(&upstream.base_url()).await;
    let s = app.signup("unpriced@example.com").await;
    let (token, key, key_id, user_id) = (s.token, s.key, s.key_id, s.user_id);
    for (customer, model) in [("acme", "gpt-4o"), ("acme", "mystery-model-9000")] {
        let r = app
            .http
            .post(app.url("/v1/chat/completions"))
            .header("x-llmobserve-key", &key)
            .header("authorization", "Bearer sk-own")
            .header("x-customer-id", customer)
            .body(format!(r#"{{"model":"{model}","messages":[]}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let stored = app.wait_events(&user_id, 2).await;
    assert_eq!(stored.len(), 2);
    let get = async |path: &str| -> Value {
        let (status, v) = app.api_get(&token, path).await;
        assert_eq!(status, 200, "{path}");
        v
    };

    let ev = get("/api/events").await;
    let events = ev["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let mut unpriced = events[0].as_object().unwrap().clone();
    // The fields that differ from run to run, checked for what they are.
    assert_eq!(unpriced.remove("id").unwrap(), stored[0].id.as_str());
    assert_eq!(
        unpriced.remove("ts").unwrap(),
        llmobserve::time::rfc3339_ms(stored[0].ts_ms).as_str()
    );
    for timing in ["latency_ms", "ttft_ms"] {
        assert!(unpriced.remove(timing).unwrap().is_u64(), "{timing}");
    }
    assert_eq!(
        Value::Object(unpriced),
        json!({
            "provider": "openai", "endpoint": "chat.completions",
            "model": "mystery-model-9000", "customer_id": "acme", "api_key_id": key_id,
            "status": 200, "outcome": "ok", "streamed": false,
            "input_tokens": 1536, "cached_input_tokens": 1280, "cache_write_tokens": 0,
            "output_tokens": 212, "reasoning_tokens": 0, "usage_status": "reported",
            "cost_usd": null, "priced": false, "upstream_request_id": "req_mystery"
        })
    );
    assert_eq!(events[1]["model"], "gpt-4o-2024-08-06");
    assert_eq!(events[1]["cost_usd"], "0.00436");
    assert_eq!(events[1]["priced"], true);

    // Stats: the unpriced call counts as a call and its tokens count, its cost does not;
    // its model's row has a null cost, not "0".
    let range = "from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    let st = get(&format!("/api/stats?{range}")).await;
    let tokens = |calls: u64| {
        json!({"input_tokens": 1536 * calls, "output_tokens": 212 * calls,
               "cached_input_tokens": 1280 * calls, "cache_write_tokens": 0,
               "reasoning_tokens": 0})
    };
    let row = |keys: Value, cost: Value, calls: u64, unpriced: u64| {
        let mut m = keys.as_object().unwrap().clone();
        m.insert("cost_usd".into(), cost);
        m.insert("calls".into(), calls.into());
        m.insert("unpriced_calls".into(), unpriced.into());
        m.extend(tokens(calls).as_object().unwrap().clone());
        Value::Object(m)
    };
    let mut want = row(json!({}), Value::Null, 2, 1);
    let w = want.as_object_mut().unwrap();
    w.remove("cost_usd");
    w.insert("total_cost_usd".into(), "0.00436".into());
    w.insert("unattributed_cost_usd".into(), "0".into());
    w.insert("unattributed_calls".into(), 0.into());
    w.insert(
        "by_provider".into(),
        json!([row(json!({"provider": "openai"}), json!("0.00436"), 2, 1)]),
    );
    w.insert(
        "by_model".into(),
        json!([
            row(
                json!({"provider": "openai", "model": "gpt-4o-2024-08-06"}),
                json!("0.00436"),
                1,
                0
            ),
            row(
                json!({"provider": "openai", "model": "mystery-model-9000"}),
                Value::Null,
                1,
                1
            ),
        ]),
    );
    w.insert("from".into(), "2020-01-01T00:00:00.000Z".into());
    w.insert("to".into(), "2100-01-01T00:00:00.000Z".into());
    assert_eq!(st, want);

    // Filtered to the unpriced model alone: one call, unpriced, its row's cost null.
    let st = get(&format!("/api/stats?{range}&model=mystery-model-9000")).await;
    assert_eq!(
        (&st["calls"], &st["unpriced_calls"], &st["input_tokens"]),
        (&json!(1), &json!(1), &json!(1536))
    );
    assert_eq!(
        st["by_model"],
        json!([row(
            json!({"provider": "openai", "model": "mystery-model-9000"}),
            Value::Null,
            1,
            1
        )])
    );
}

/// Stats over a million stored events must come from the rollups: a scan of raw
/// events (JSON-decoding each) takes seconds here, the rollups a few milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_over_a_million_events_answer_fast() {
    const EVENTS: u64 = 1_000_000;
    const BATCH: u64 = 50_000;
    const DAYS: i64 = 30;
    let ctx = setup().await;
    let end = hour_floor(now_ms()) - HOUR_MS;
    let start = end - DAYS * DAY_MS;
    let span = (end - start) as u64;
    let customers: Vec<String> = (0..20).map(|i| format!("customer-{i}")).collect();

    let built = Instant::now();
    let mut rng = Rng(42);
    let mut expected = Sum::default();
    let mut per_customer: HashMap<String, u64> = HashMap::new();
    for b in 0..EVENTS / BATCH {
        let mut batch = Vec::with_capacity(BATCH as usize);
        for i in 0..BATCH {
            let seq = u128::from(b * BATCH + i);
            // Spread evenly in time, in id order.
            let ts = start + ((seq as u64 * span) / EVENTS) as i64;
            let mut e = event(&ctx, seq, ts, &mut rng);
            e.customer_id = Some(customers[rng.below(customers.len() as u64) as usize].clone());
            expected.add(&e);
            *per_customer
                .entry(e.customer_id.clone().unwrap())
                .or_default() += 1;
            batch.push(e);
        }
        write(&ctx, batch).await;
    }
    let build_time = built.elapsed();
    let store = ctx.app.app.state.store.clone();
    let stored = tokio::task::spawn_blocking(move || store.event_count())
        .await
        .unwrap()
        .unwrap();
    assert!(stored >= EVENTS);

    let ragged = format!(
        "from={}&to={}",
        rfc3339_ms(start + 3 * DAY_MS + 1_234_567),
        rfc3339_ms(end - 2 * DAY_MS - 765_432)
    );
    let cases = [
        ("all time", String::new()),
        (
            "aligned 7 days",
            format!(
                "from={}&to={}",
                rfc3339_ms(end - 7 * DAY_MS),
                rfc3339_ms(end)
            ),
        ),
        ("ragged", ragged),
        (
            "filtered",
            "customer_id=customer-3&provider=openai".to_owned(),
        ),
    ];
    let mut report = Vec::new();
    for (name, qs) in &cases {
        // First call warms the page cache; then the slowest of five counts.
        let (status, st) = get(&ctx, &format!("/api/stats?{qs}")).await;
        assert_eq!(status, 200);
        if name == &"all time" {
            assert_eq!(st["calls"], EVENTS);
            assert_eq!(st["total_cost_usd"], expected.cost.to_string());
            assert_eq!(st["unpriced_calls"], expected.unpriced);
            assert_eq!(st["input_tokens"], expected.input);
            assert_eq!(st["output_tokens"], expected.output);
        }
        // The median of five: robust to a noisy 2-core machine, while a scan of the raw
        // events would take seconds, far past the limit.
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let (status, _) = get(&ctx, &format!("/api/stats?{qs}")).await;
            times.push(t.elapsed());
            assert_eq!(status, 200);
        }
        times.sort();
        let median = times[2];
        report.push(format!("{name}: median {median:?}, worst {:?}", times[4]));
        assert!(
            median < Duration::from_millis(100),
            "/api/stats ({name}) took {median:?} over {EVENTS} events: is it scanning raw events?"
        );
    }
    // The other aggregate endpoints ride on the same rollups.
    for path in ["/api/customers", "/api/timeseries?bucket=day"] {
        let t = Instant::now();
        let (status, v) = get(&ctx, path).await;
        let took = t.elapsed();
        assert_eq!(status, 200);
        report.push(format!("{path}: {took:?}"));
        if path == "/api/customers" {
            let c3 = v
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["customer_id"] == "customer-3")
                .unwrap();
            assert_eq!(c3["calls"], per_customer["customer-3"]);
        }
        assert!(took < Duration::from_millis(250), "{path} took {took:?}");
    }
    eprintln!("1M events built in {build_time:?}; {}", report.join(", "));
}
