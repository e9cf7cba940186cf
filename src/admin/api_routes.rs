//! `/api/*`: provider keys for managed mode and the query API (DESIGN.md, "Admin
//! API"). Every handler takes an [`AuthUser`] and reads only that account's rows.
//!
//! Query parameters shared by the query routes: `from`, `to` (RFC 3339; the range is
//! `[from, to)`, default all time up to now), `customer_id`, `provider`, `model`
//! (exact matches). Totals come from the daily and hourly rollups plus at most two
//! partial edge hours of events (`store::query`). Money is an exact decimal string.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tracing::Instrument;

use super::AdminState;
use super::csv;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthUser};
use crate::accounts;
use crate::providers::Provider;
use crate::store::model::{CostEvent, Totals};
use crate::store::query::{Bucket, QueryFilter, fill_buckets};
use crate::time::{HOUR_MS, now_ms, parse_rfc3339_ms, rfc3339_ms};

/// `/api/events` page size when `limit` is absent, and its maximum.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;
/// Most stored events one `/api/events` page reads before answering (with a cursor
/// to continue), so a filter that matches little cannot turn one request into a scan
/// of the whole history.
const PAGE_SCAN_BUDGET: usize = 20_000;
/// Most rows `/api/events.csv` writes; narrow `from`/`to` to export more.
pub const CSV_MAX_ROWS: usize = 100_000;
/// Series are filled with zero buckets when the range spans at most this many.
const MAX_FILLED_BUCKETS: usize = 1000;
/// `/api/customers` returns at most this many customers (costliest first) unless
/// `limit` says otherwise.
const DEFAULT_CUSTOMERS: usize = 1000;
const MAX_CUSTOMERS: usize = 100_000;
const MAX_PROVIDER_KEY_LEN: usize = 512;
const MIN_PROVIDER_KEY_LEN: usize = 8;

/// Every query parameter the query routes understand; unknown ones are ignored and
/// empty ones count as absent.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    from: Option<String>,
    to: Option<String>,
    customer_id: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    bucket: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A validated range and filters, plus what the caller left at its default.
struct Range {
    filter: QueryFilter,
    from_given: bool,
    to_given: bool,
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Params {
    fn range(&self, now: i64) -> Result<Range, ApiError> {
        let time = |name: &str, v: Option<&str>| -> Result<Option<i64>, ApiError> {
            v.map(|s| {
                parse_rfc3339_ms(s).ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "{name} must be an RFC 3339 time such as 2026-11-25T06:00:00Z, got {s:?}"
                    ))
                })
            })
            .transpose()
        };
        let from = time("from", present(&self.from))?;
        let to = time("to", present(&self.to))?;
        let filter = QueryFilter {
            from_ms: from.unwrap_or(0).max(0),
            // Default end: a little past now, so a call that just arrived is included.
            to_ms: to.unwrap_or(now + HOUR_MS),
            customer_id: present(&self.customer_id).map(str::to_owned),
            provider: present(&self.provider).map(parse_provider).transpose()?,
            model: present(&self.model).map(str::to_owned),
        };
        if filter.from_ms > filter.to_ms {
            return Err(ApiError::InvalidQuery("from must not be after to".into()));
        }
        Ok(Range {
            filter,
            from_given: from.is_some(),
            to_given: to.is_some(),
        })
    }

    fn bucket(&self, default: Bucket) -> Result<Bucket, ApiError> {
        match present(&self.bucket) {
            None => Ok(default),
            Some("hour") => Ok(Bucket::Hour),
            Some("day") => Ok(Bucket::Day),
            Some(other) => Err(ApiError::InvalidQuery(format!(
                "bucket must be hour or day, got {other:?}"
            ))),
        }
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match present(&self.limit) {
            None => Ok(default),
            Some(s) => s.parse::<usize>().map(|n| n.clamp(1, max)).map_err(|_| {
                ApiError::InvalidQuery(format!("limit must be a whole number, got {s:?}"))
            }),
        }
    }

    fn cursor(&self) -> Result<Option<u128>, ApiError> {
        present(&self.cursor)
            .map(|c| {
                ulid::Ulid::from_string(c)
                    .map(u128::from)
                    .map_err(|_| ApiError::InvalidQuery("cursor is not one this API gave".into()))
            })
            .transpose()
    }
}

fn parse_provider(name: &str) -> Result<Provider, ApiError> {
    Provider::from_name(&name.to_ascii_lowercase())
        .ok_or_else(|| ApiError::UnknownProvider(name.to_owned()))
}

/// Runs a blocking store read for the caller's account.
async fn read<T: Send + 'static>(
    s: &AdminState,
    f: impl FnOnce(&crate::store::Store) -> crate::store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let store = s.app.store.clone();
    Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
}

// ---- provider keys ----

#[derive(Deserialize)]
pub struct ProviderKeyBody {
    key: String,
}

/// `GET /api/provider-keys` → `[{provider, last4, updated_at}]`, never the keys.
pub async fn list_provider_keys(
    State(s): State<AdminState>,
    auth: AuthUser,
) -> Result<Json<Value>, ApiError> {
    let user_id = auth.user.id;
    let recs = read(&s, move |st| st.provider_keys_for(&user_id)).await?;
    let list: Vec<Value> = recs
        .iter()
        .map(|r| {
            json!({
                "provider": r.provider,
                "last4": r.last4,
                "updated_at": rfc3339_ms(r.updated_at_ms),
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

/// `PUT /api/provider-keys/{provider}` `{key}` → `204`. Stored encrypted; managed-mode
/// calls of this account use it from now on.
pub async fn put_provider_key(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiPath(provider): ApiPath<String>,
    ApiJson(body): ApiJson<ProviderKeyBody>,
) -> Result<StatusCode, ApiError> {
    let provider = parse_provider(&provider)?;
    let key = check_provider_key(&body.key)?.to_owned();
    let app = s.app.clone();
    tokio::task::spawn_blocking(move || {
        accounts::set_provider_key(&app, &auth.user.id, provider, &key)
    })
    .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/provider-keys/{provider}` → `204`, `404` if none was set.
pub async fn delete_provider_key(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiPath(provider): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let provider = parse_provider(&provider)?;
    let app = s.app.clone();
    tokio::task::spawn_blocking(move || {
        accounts::delete_provider_key(&app, &auth.user.id, provider)
    })
    .await?
    .map_err(|e| match e {
        accounts::AccountError::NotFound => ApiError::NotFound("provider key"),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// A provider key goes into a request header as is: printable ASCII without spaces.
fn check_provider_key(raw: &str) -> Result<&str, ApiError> {
    let key = raw.trim();
    if key.len() < MIN_PROVIDER_KEY_LEN {
        return Err(ApiError::InvalidProviderKey("too short"));
    }
    if key.len() > MAX_PROVIDER_KEY_LEN {
        return Err(ApiError::InvalidProviderKey("longer than 512 characters"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::InvalidProviderKey(
            "only printable ASCII characters without spaces are allowed",
        ));
    }
    if crate::auth::api_key::looks_like_key(key) {
        return Err(ApiError::InvalidProviderKey(
            "this is an LLMObserve key; store the provider's own key here",
        ));
    }
    Ok(key)
}

// ---- queries ----

/// `GET /api/stats`.
pub async fn stats(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiQuery(p): ApiQuery<Params>,
) -> Result<Json<Value>, ApiError> {
    let range = p.range(now_ms())?;
    let f = range.filter.clone();
    let st = read(&s, move |st| st.stats(&auth.user.id, &f)).await?;
    let mut out = Map::new();
    out.insert("total_cost_usd".into(), st.total.cost.to_string().into());
    out.insert("calls".into(), st.total.calls.into());
    out.insert("unpriced_calls".into(), st.total.unpriced_calls.into());
    token_fields(&mut out, &st.total);
    out.insert(
        "unattributed_cost_usd".into(),
        st.unattributed.cost.to_string().into(),
    );
    out.insert("unattributed_calls".into(), st.unattributed.calls.into());
    out.insert(
        "by_provider".into(),
        st.by_provider
            .iter()
            .map(|(p, t)| group_json([("provider", Value::from(p.as_str()))], t))
            .collect(),
    );
    out.insert("by_model".into(), by_model_json(&st.by_model));
    range_fields(&mut out, &range);
    Ok(Json(Value::Object(out)))
}

/// `GET /api/customers` → customers costliest first (calls without a customer id are
/// left out; see `unattributed_*` in `/api/stats`).
pub async fn customers(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiQuery(p): ApiQuery<Params>,
) -> Result<Json<Value>, ApiError> {
    let range = p.range(now_ms())?;
    let limit = p.limit(DEFAULT_CUSTOMERS, MAX_CUSTOMERS)?;
    let f = range.filter;
    let list = read(&s, move |st| st.customers(&auth.user.id, &f)).await?;
    Ok(Json(
        list.iter()
            .take(limit)
            .map(|(c, t)| customer_json(c, t))
            .collect(),
    ))
}

/// `GET /api/customers/{id}` → totals, `by_model` and a `timeseries` (`bucket`, default
/// day); `404` if the account never made a call for this customer.
pub async fn customer(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiPath(customer_id): ApiPath<String>,
    ApiQuery(p): ApiQuery<Params>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let range = p.range(now)?;
    let bucket = p.bucket(Bucket::Day)?;
    let f = range.filter.clone();
    let id = customer_id.clone();
    let detail = read(&s, move |st| {
        let d = st.customer_detail(&auth.user.id, &id, &f, bucket)?;
        let seen = d.total.calls > 0 || st.customer_seen(&auth.user.id, &id)?;
        Ok(seen.then_some(d))
    })
    .await?
    .ok_or(ApiError::NotFound("customer"))?;
    let mut out = customer_json(&customer_id, &detail.total);
    if let Value::Object(m) = &mut out {
        m.insert("by_model".into(), by_model_json(&detail.by_model));
        let series = filled(detail.series, bucket, &range, now);
        m.insert("timeseries".into(), series_json(&series));
        m.insert("bucket".into(), bucket_name(bucket).into());
        range_fields(m, &range);
    }
    Ok(Json(out))
}

/// `GET /api/timeseries` → `[{t, cost_usd, calls, unpriced_calls}]`, oldest first.
pub async fn timeseries(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiQuery(p): ApiQuery<Params>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let range = p.range(now)?;
    let bucket = p.bucket(Bucket::Hour)?;
    let f = range.filter.clone();
    let series = read(&s, move |st| st.timeseries(&auth.user.id, &f, bucket)).await?;
    Ok(Json(series_json(&filled(series, bucket, &range, now))))
}

/// `GET /api/events` → `{events, next_cursor}`, newest first.
pub async fn events(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiQuery(p): ApiQuery<Params>,
) -> Result<Json<Value>, ApiError> {
    let range = p.range(now_ms())?;
    let limit = p.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let before = p.cursor()?;
    let f = range.filter;
    let page = read(&s, move |st| {
        st.events_page(&auth.user.id, &f, before, limit, PAGE_SCAN_BUDGET)
    })
    .await?;
    Ok(Json(json!({
        "events": page.events.iter().map(CostEvent::to_api_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor.map(|c| ulid::Ulid(c).to_string()),
    })))
}

/// `GET /api/events.csv`: the same events as `/api/events` (same filters), newest
/// first, as a streamed CSV download of at most [`CSV_MAX_ROWS`] rows.
pub async fn events_csv(
    State(s): State<AdminState>,
    auth: AuthUser,
    ApiQuery(p): ApiQuery<Params>,
) -> Result<Response, ApiError> {
    let f = p.range(now_ms())?.filter;
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    let store = s.app.store.clone();
    let user_id = auth.user.id;
    let task = async move {
        if tx.send_data(Bytes::from(csv::header_row())).await.is_err() {
            return;
        }
        let mut before = None;
        let mut rows = 0usize;
        while rows < CSV_MAX_ROWS {
            let (store, user_id, f) = (store.clone(), user_id.clone(), f.clone());
            let limit = (CSV_MAX_ROWS - rows).min(1000);
            let page = tokio::task::spawn_blocking(move || {
                store.events_page(&user_id, &f, before, limit, PAGE_SCAN_BUDGET)
            })
            .await;
            let page = match page {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return abort(tx, e.to_string()),
                Err(e) => return abort(tx, e.to_string()),
            };
            rows += page.events.len();
            let chunk: String = page.events.iter().map(csv::event_row).collect();
            if !chunk.is_empty() && tx.send_data(Bytes::from(chunk)).await.is_err() {
                return; // The client went away.
            }
            match page.next_cursor {
                Some(c) => before = Some(c),
                None => return,
            }
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
    let mut resp = Response::new(Body::new(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"llmobserve-events.csv\""),
    );
    h.insert(
        header::HeaderName::from_static("x-llmobserve-row-limit"),
        HeaderValue::from(CSV_MAX_ROWS),
    );
    Ok(resp)
}

/// Ends a CSV download with an error (the client sees a cut transfer), logged once.
fn abort(tx: http_body_util::channel::Sender<Bytes, std::io::Error>, detail: String) {
    tracing::error!(error = %detail, "events.csv export failed");
    tx.abort(std::io::Error::other("export failed"));
}

// ---- JSON shapes ----

/// The token counts of a total, as integers.
fn token_fields(m: &mut Map<String, Value>, t: &Totals) {
    m.insert("input_tokens".into(), t.input_tokens.into());
    m.insert("output_tokens".into(), t.output_tokens.into());
    m.insert("cached_input_tokens".into(), t.cached_input_tokens.into());
    m.insert("cache_write_tokens".into(), t.cache_write_tokens.into());
    m.insert("reasoning_tokens".into(), t.reasoning_tokens.into());
}

/// A breakdown row: its key fields, then `cost_usd` (null when every call in it is
/// unpriced, never a misleading "0"), calls, unpriced calls and tokens.
fn group_json<const N: usize>(keys: [(&str, Value); N], t: &Totals) -> Value {
    let mut m = Map::new();
    for (k, v) in keys {
        m.insert(k.into(), v);
    }
    let all_unpriced = t.calls > 0 && t.unpriced_calls == t.calls;
    m.insert(
        "cost_usd".into(),
        if all_unpriced {
            Value::Null
        } else {
            t.cost.to_string().into()
        },
    );
    m.insert("calls".into(), t.calls.into());
    m.insert("unpriced_calls".into(), t.unpriced_calls.into());
    token_fields(&mut m, t);
    Value::Object(m)
}

fn by_model_json(rows: &[(String, String, Totals)]) -> Value {
    rows.iter()
        .map(|(p, m, t)| {
            let model = if m.is_empty() {
                Value::Null
            } else {
                Value::from(m.as_str())
            };
            group_json([("provider", Value::from(p.as_str())), ("model", model)], t)
        })
        .collect()
}

fn customer_json(id: &str, t: &Totals) -> Value {
    let mut v = group_json([("customer_id", Value::from(id))], t);
    if let Value::Object(m) = &mut v {
        let last_seen = (t.calls > 0).then(|| rfc3339_ms(t.last_seen_ms));
        m.insert("last_seen".into(), last_seen.into());
    }
    v
}

/// Echoes the effective range, so a caller sees what "all time" meant.
fn range_fields(m: &mut Map<String, Value>, r: &Range) {
    m.insert("from".into(), rfc3339_ms(r.filter.from_ms).into());
    m.insert("to".into(), rfc3339_ms(r.filter.to_ms).into());
}

fn bucket_name(b: Bucket) -> &'static str {
    match b {
        Bucket::Hour => "hour",
        Bucket::Day => "day",
    }
}

/// Zero-filled between the range's ends when that is at most [`MAX_FILLED_BUCKETS`]
/// buckets. An absent `from` starts at the first bucket with calls; an absent `to`
/// ends at the bucket holding now.
fn filled(
    series: BTreeMap<i64, Totals>,
    bucket: Bucket,
    range: &Range,
    now: i64,
) -> BTreeMap<i64, Totals> {
    let start = if range.from_given {
        Some(range.filter.from_ms)
    } else {
        series.keys().next().copied()
    };
    let end = if range.to_given {
        range.filter.to_ms
    } else {
        now + 1
    };
    match start {
        Some(start) => fill_buckets(series, bucket, start, end, MAX_FILLED_BUCKETS),
        None => series,
    }
}

fn series_json(series: &BTreeMap<i64, Totals>) -> Value {
    series
        .iter()
        .map(|(t, tot)| {
            json!({
                "t": rfc3339_ms(*t),
                "cost_usd": tot.cost.to_string(),
                "calls": tot.calls,
                "unpriced_calls": tot.unpriced_calls,
                "input_tokens": tot.input_tokens,
                "output_tokens": tot.output_tokens,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let q = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
        axum::extract::Query::<Params>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    #[test]
    fn ranges_default_and_validate() {
        let now = 1_795_588_279_123;
        let r = params(&[]).range(now).unwrap();
        assert_eq!(r.filter.from_ms, 0);
        assert_eq!(r.filter.to_ms, now + HOUR_MS);
        assert!(!r.from_given && !r.to_given);
        let r = params(&[("from", "2026-11-25T06:00:00Z"), ("provider", "OpenAI")])
            .range(now)
            .unwrap();
        assert_eq!(r.filter.from_ms, 1_795_586_400_000);
        assert_eq!(r.filter.provider, Some(Provider::OpenAi));
        assert!(params(&[("from", "yesterday")]).range(now).is_err());
        assert!(params(&[("provider", "nope")]).range(now).is_err());
        assert!(
            params(&[
                ("from", "2026-11-25T07:00:00Z"),
                ("to", "2026-11-25T06:00:00Z")
            ])
            .range(now)
            .is_err()
        );
        assert_eq!(params(&[("limit", "9999")]).limit(50, 500).unwrap(), 500);
        assert!(params(&[("limit", "x")]).limit(50, 500).is_err());
        assert!(params(&[("cursor", "nope")]).cursor().is_err());
        assert!(params(&[("bucket", "week")]).bucket(Bucket::Hour).is_err());
    }

    #[test]
    fn provider_keys_are_checked() {
        assert_eq!(
            check_provider_key("  sk-abcdefgh  ").unwrap(),
            "sk-abcdefgh"
        );
        assert!(check_provider_key("short").is_err());
        assert!(check_provider_key("sk-abc defgh").is_err());
        assert!(check_provider_key(&format!("llmo_sk_{}", "a".repeat(40))).is_err());
    }

    #[test]
    fn unpriced_groups_have_null_cost() {
        let t = Totals {
            calls: 2,
            unpriced_calls: 2,
            ..Totals::default()
        };
        assert_eq!(
            group_json([("provider", "x".into())], &t)["cost_usd"],
            Value::Null
        );
        let t = Totals {
            calls: 2,
            unpriced_calls: 1,
            ..Totals::default()
        };
        assert_eq!(group_json([("provider", "x".into())], &t)["cost_usd"], "0");
    }
}
