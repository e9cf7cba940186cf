//! Read-side queries behind the admin API: totals, groupings, time series and event
//! pages for one account. Called by `admin::api_routes` (through `spawn_blocking`:
//! every method here blocks on redb reads).
//!
//! Totals never scan raw events for whole hours: a range `[from, to)` is split into
//! the whole UTC days inside it (answered from `ROLLUP_DAILY`), the whole hours
//! around them (`ROLLUP_HOURLY`), and at most two partial edge hours, summed from
//! the raw events of those edges only. So a query reads at most two hours of events
//! and a few days' worth of hourly rows whatever the range, and its numbers are exact.

use std::collections::{BTreeMap, HashMap};

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::codec::decode_event;
use super::model::{CostEvent, Totals};
use super::tables::{
    EVENTS, ROLLUP_DAILY, ROLLUP_HOURLY, RollupKeyType, decode_totals, encode_totals,
};
use super::{Result, Store};
use crate::providers::Provider;
use crate::time::{DAY_MS, HOUR_MS, hour_floor};

/// An event's id may carry a later millisecond than its `ts_ms` (ids are made
/// strictly increasing at arrival, so a burst within one millisecond pushes later
/// ids forward). Scans by time widen the id range by this much and then filter on
/// `ts_ms`, so edges and pages stay exact.
const ID_SLACK_MS: i64 = 60_000;

/// Which calls a query covers: `[from_ms, to_ms)` plus optional exact-match filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryFilter {
    pub from_ms: i64,
    pub to_ms: i64,
    pub customer_id: Option<String>,
    pub provider: Option<Provider>,
    pub model: Option<String>,
}

impl QueryFilter {
    /// Every call of all time (up to `to_ms`), unfiltered.
    pub fn all(to_ms: i64) -> QueryFilter {
        QueryFilter {
            from_ms: 0,
            to_ms,
            customer_id: None,
            provider: None,
            model: None,
        }
    }

    /// Matches a rollup row's (provider, model or "", customer or "") columns.
    fn matches(&self, provider: &str, model: &str, customer: &str) -> bool {
        self.provider.is_none_or(|p| p.as_str() == provider)
            && self.model.as_deref().is_none_or(|m| m == model)
            && self.customer_id.as_deref().is_none_or(|c| c == customer)
    }

    fn matches_event(&self, e: &CostEvent) -> bool {
        e.ts_ms >= self.from_ms
            && e.ts_ms < self.to_ms
            && self.matches(
                e.provider.as_str(),
                e.model.as_deref().unwrap_or(""),
                e.customer_id.as_deref().unwrap_or(""),
            )
    }
}

/// Totals of one (hour or day, provider, model, customer): a rollup row, or one edge
/// event. `model` and `customer` are "" when the call had none.
#[derive(Debug, Clone, Copy)]
pub struct Slice<'a> {
    /// Start of the hour the totals fall in, or of the UTC day for daily rows (only
    /// given when the caller allowed day resolution).
    pub start_ms: i64,
    pub provider: &'a str,
    pub model: &'a str,
    pub customer: &'a str,
    pub totals: Totals,
}

/// How a range is read: whole days from daily rollups, whole hours from hourly
/// rollups, the partial edge hours from events. Every part is `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    days: Option<(i64, i64)>,
    hours: [Option<(i64, i64)>; 2],
    edges: [Option<(i64, i64)>; 2],
}

impl Plan {
    /// `use_days`: whether the caller can take day-resolution slices.
    fn of(from: i64, to: i64, use_days: bool) -> Plan {
        let first_hour = hour_floor(from.saturating_add(HOUR_MS - 1));
        let last_hour_end = hour_floor(to);
        if first_hour >= last_hour_end {
            // No whole hour inside: the range lies within two adjacent hours at most.
            return Plan {
                days: None,
                hours: [None, None],
                edges: [(from < to).then_some((from, to)), None],
            };
        }
        let edges = [
            (from < first_hour).then_some((from, first_hour)),
            (last_hour_end < to).then_some((last_hour_end, to)),
        ];
        let first_day = Bucket::Day.start(first_hour.saturating_add(DAY_MS - 1));
        let last_day_end = Bucket::Day.start(last_hour_end);
        if use_days && first_day < last_day_end {
            return Plan {
                days: Some((first_day, last_day_end)),
                hours: [
                    (first_hour < first_day).then_some((first_hour, first_day)),
                    (last_day_end < last_hour_end).then_some((last_day_end, last_hour_end)),
                ],
                edges,
            };
        }
        Plan {
            days: None,
            hours: [Some((first_hour, last_hour_end)), None],
            edges,
        }
    }
}

/// The smallest event key id at or after `ms` (ULIDs start with 48 bits of ms).
fn id_floor(ms: i64) -> u128 {
    const MAX_ULID_MS: i64 = (1 << 48) - 1;
    if ms > MAX_ULID_MS {
        return u128::MAX;
    }
    (ms.max(0) as u128) << 80
}

/// Time buckets of a series, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn width_ms(self) -> i64 {
        match self {
            Bucket::Hour => HOUR_MS,
            Bucket::Day => DAY_MS,
        }
    }

    /// Start of the bucket holding `ms`.
    pub fn start(self, ms: i64) -> i64 {
        ms.div_euclid(self.width_ms()) * self.width_ms()
    }
}

/// (provider, totals) rows.
pub type ByProvider = Vec<(String, Totals)>;
/// (provider, model or "", totals) rows.
pub type ByModel = Vec<(String, String, Totals)>;

/// Totals of a range with its breakdowns, each sorted costliest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub total: Totals,
    /// Calls with no customer id.
    pub unattributed: Totals,
    pub by_provider: ByProvider,
    pub by_model: ByModel,
}

/// One customer's totals, with breakdown by model and a sparse series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerDetail {
    pub total: Totals,
    pub by_model: ByModel,
    pub series: BTreeMap<i64, Totals>,
}

/// A page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsPage {
    pub events: Vec<CostEvent>,
    /// Pass as `before` for the next page; `None` when nothing older matches.
    pub next_cursor: Option<u128>,
}

/// Groups totals by provider and by (provider, model), without a key allocation
/// per row once a group exists.
#[derive(Default)]
struct Grouped {
    by_provider: HashMap<String, Totals>,
    by_model: HashMap<String, HashMap<String, Totals>>,
}

impl Grouped {
    fn add(&mut self, s: &Slice<'_>) {
        add_to(&mut self.by_provider, s.provider, &s.totals);
        let models = match self.by_model.get_mut(s.provider) {
            Some(m) => m,
            None => self.by_model.entry(s.provider.to_owned()).or_default(),
        };
        add_to(models, s.model, &s.totals);
    }

    fn into_sorted(self) -> (ByProvider, ByModel) {
        let by_provider = costliest_first(self.by_provider.into_iter().collect());
        let by_model = self
            .by_model
            .into_iter()
            .flat_map(|(p, ms)| ms.into_iter().map(move |(m, t)| ((p.clone(), m), t)))
            .collect();
        let by_model = costliest_first(by_model)
            .into_iter()
            .map(|((p, m), t)| (p, m, t))
            .collect();
        (by_provider, by_model)
    }
}

fn add_to(map: &mut HashMap<String, Totals>, key: &str, t: &Totals) {
    match map.get_mut(key) {
        Some(acc) => acc.merge(t),
        None => {
            map.insert(key.to_owned(), *t);
        }
    }
}

/// Sorts by cost (highest first), then calls (most first), then key, so ties are stable.
pub fn costliest_first<K: Ord>(mut v: Vec<(K, Totals)>) -> Vec<(K, Totals)> {
    v.sort_by(|(ka, a), (kb, b)| {
        b.cost
            .cmp(&a.cost)
            .then(b.calls.cmp(&a.calls))
            .then(ka.cmp(kb))
    });
    v
}

/// Turns a sparse series into one entry per bucket from `start` to `end` (exclusive),
/// zeros where nothing happened, unless that would take more than `max_buckets`;
/// then the sparse series is returned as is. Entries outside the range are kept.
pub fn fill_buckets(
    series: BTreeMap<i64, Totals>,
    bucket: Bucket,
    start_ms: i64,
    end_ms: i64,
    max_buckets: usize,
) -> BTreeMap<i64, Totals> {
    let first = bucket.start(start_ms);
    if end_ms <= first {
        return series;
    }
    let count = (end_ms - first).div_euclid(bucket.width_ms()) + 1;
    if count > max_buckets as i64 {
        return series;
    }
    let mut filled = series;
    let mut t = first;
    while t < end_ms {
        filled.entry(t).or_default();
        t += bucket.width_ms();
    }
    filled
}

impl Store {
    /// Visits the totals of every call of `user_id` that `f` covers: one rollup row per
    /// (whole day or hour, provider, model, customer), and one slice per edge event.
    /// With `resolution` `Hour`, no daily rows are used, so every slice lies within one
    /// hour. Reads no raw event outside the (at most two) partial hours at the ends.
    pub fn visit_totals(
        &self,
        user_id: &str,
        f: &QueryFilter,
        resolution: Bucket,
        mut visit: impl FnMut(Slice<'_>),
    ) -> Result<()> {
        if f.from_ms >= f.to_ms {
            return Ok(());
        }
        let r = self.db.begin_read()?;
        let plan = Plan::of(f.from_ms, f.to_ms, resolution == Bucket::Day);
        if let Some((lo, hi)) = plan.days {
            visit_rollups(&r, ROLLUP_DAILY, user_id, (lo, hi), f, &mut visit)?;
        }
        for (lo, hi) in plan.hours.into_iter().flatten() {
            visit_rollups(&r, ROLLUP_HOURLY, user_id, (lo, hi), f, &mut visit)?;
        }
        for (lo, hi) in plan.edges.into_iter().flatten() {
            let edge = QueryFilter {
                from_ms: lo,
                to_ms: hi,
                ..f.clone()
            };
            visit_events(&r, user_id, &edge, |e| {
                let mut totals = Totals::default();
                totals.add_event(e);
                visit(Slice {
                    start_ms: hour_floor(e.ts_ms),
                    provider: e.provider.as_str(),
                    model: e.model.as_deref().unwrap_or(""),
                    customer: e.customer_id.as_deref().unwrap_or(""),
                    totals,
                });
            })?;
        }
        Ok(())
    }

    /// Totals, unattributed totals and breakdowns by provider and model.
    pub fn stats(&self, user_id: &str, f: &QueryFilter) -> Result<Stats> {
        let mut total = Totals::default();
        let mut unattributed = Totals::default();
        let mut groups = Grouped::default();
        self.visit_totals(user_id, f, Bucket::Day, |s| {
            total.merge(&s.totals);
            if s.customer.is_empty() {
                unattributed.merge(&s.totals);
            }
            groups.add(&s);
        })?;
        let (by_provider, by_model) = groups.into_sorted();
        Ok(Stats {
            total,
            unattributed,
            by_provider,
            by_model,
        })
    }

    /// Totals per customer id (calls without one are left out), costliest first.
    pub fn customers(&self, user_id: &str, f: &QueryFilter) -> Result<Vec<(String, Totals)>> {
        let mut map: HashMap<String, Totals> = HashMap::new();
        self.visit_totals(user_id, f, Bucket::Day, |s| {
            if !s.customer.is_empty() {
                add_to(&mut map, s.customer, &s.totals);
            }
        })?;
        Ok(costliest_first(map.into_iter().collect()))
    }

    /// One customer's totals in the range, by model, and as a sparse series.
    /// `f.customer_id` is replaced by `customer_id`.
    pub fn customer_detail(
        &self,
        user_id: &str,
        customer_id: &str,
        f: &QueryFilter,
        bucket: Bucket,
    ) -> Result<CustomerDetail> {
        let f = QueryFilter {
            customer_id: Some(customer_id.to_owned()),
            ..f.clone()
        };
        let mut total = Totals::default();
        let mut groups = Grouped::default();
        let mut series: BTreeMap<i64, Totals> = BTreeMap::new();
        self.visit_totals(user_id, &f, bucket, |s| {
            total.merge(&s.totals);
            groups.add(&s);
            series
                .entry(bucket.start(s.start_ms))
                .or_default()
                .merge(&s.totals);
        })?;
        let (_, by_model) = groups.into_sorted();
        Ok(CustomerDetail {
            total,
            by_model,
            series,
        })
    }

    /// True if `user_id` ever made a call for `customer_id` (any time, any provider).
    pub fn customer_seen(&self, user_id: &str, customer_id: &str) -> Result<bool> {
        let r = self.db.begin_read()?;
        let t = r.open_table(ROLLUP_DAILY)?;
        for row in t.range((user_id, i64::MIN, "", "", "")..(user_id, i64::MAX, "", "", ""))? {
            let (k, _) = row?;
            if k.value().4 == customer_id {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sparse series: bucket start → totals, for buckets with at least one call.
    pub fn timeseries(
        &self,
        user_id: &str,
        f: &QueryFilter,
        bucket: Bucket,
    ) -> Result<BTreeMap<i64, Totals>> {
        let mut series: BTreeMap<i64, Totals> = BTreeMap::new();
        self.visit_totals(user_id, f, bucket, |s| {
            series
                .entry(bucket.start(s.start_ms))
                .or_default()
                .merge(&s.totals);
        })?;
        Ok(series)
    }

    /// Up to `limit` events matching `f`, newest first, strictly older than the event
    /// id `before` when given. Reads at most `scan_budget` stored events; when the
    /// budget runs out first, `next_cursor` points past what was read, so paging
    /// continues where this page stopped (with no gap and no repeat).
    pub fn events_page(
        &self,
        user_id: &str,
        f: &QueryFilter,
        before: Option<u128>,
        limit: usize,
        scan_budget: usize,
    ) -> Result<EventsPage> {
        let limit = limit.max(1);
        let r = self.db.begin_read()?;
        let t = r.open_table(EVENTS)?;
        let lo = id_floor(f.from_ms);
        let hi = id_floor(f.to_ms.saturating_add(ID_SLACK_MS));
        let hi = before.map_or(hi, |b| b.min(hi));
        let mut events = Vec::new();
        if lo >= hi || f.from_ms >= f.to_ms {
            return Ok(EventsPage {
                events,
                next_cursor: None,
            });
        }
        let mut scanned = 0usize;
        for row in t.range((user_id, lo)..(user_id, hi))?.rev() {
            let (k, v) = row?;
            let id = k.value().1;
            let e = decode_event(v.value())?;
            if f.matches_event(&e) {
                if events.len() == limit {
                    // A further match exists: the page is full and continues after it.
                    let next_cursor = events.last().map(event_key);
                    return Ok(EventsPage {
                        events,
                        next_cursor,
                    });
                }
                events.push(e);
            }
            scanned += 1;
            if scanned >= scan_budget {
                return Ok(EventsPage {
                    events,
                    next_cursor: Some(id),
                });
            }
        }
        Ok(EventsPage {
            events,
            next_cursor: None,
        })
    }
}

/// The key id of an event as stored (its ULID as a number).
fn event_key(e: &CostEvent) -> u128 {
    ulid::Ulid::from_string(&e.id).map(u128::from).unwrap_or(0)
}

/// Rows of one rollup table with start in `[lo, hi)`.
fn visit_rollups(
    r: &ReadTransaction,
    table: TableDefinition<RollupKeyType, &[u8]>,
    user_id: &str,
    (lo, hi): (i64, i64),
    f: &QueryFilter,
    visit: &mut impl FnMut(Slice<'_>),
) -> Result<()> {
    let t = r.open_table(table)?;
    for row in t.range((user_id, lo, "", "", "")..(user_id, hi, "", "", ""))? {
        let (k, v) = row?;
        let (_, start_ms, provider, model, customer) = k.value();
        if f.matches(provider, model, customer) {
            visit(Slice {
                start_ms,
                provider,
                model,
                customer,
                totals: decode_totals(v.value()),
            });
        }
    }
    Ok(())
}

fn visit_events(
    r: &ReadTransaction,
    user_id: &str,
    f: &QueryFilter,
    mut visit: impl FnMut(&CostEvent),
) -> Result<()> {
    let t = r.open_table(EVENTS)?;
    let lo = id_floor(f.from_ms);
    let hi = id_floor(f.to_ms.saturating_add(ID_SLACK_MS));
    for row in t.range((user_id, lo)..(user_id, hi))? {
        let (_, v) = row?;
        let e = decode_event(v.value())?;
        if f.matches_event(&e) {
            visit(&e);
        }
    }
    Ok(())
}

/// Fills `ROLLUP_DAILY` from `ROLLUP_HOURLY` when the daily table is empty but the
/// hourly one is not (a database from before daily rollups existed). Called once by
/// `Store::open` inside its setup transaction.
pub(super) fn backfill_daily_rollups(w: &WriteTransaction) -> Result<()> {
    let mut daily_table = w.open_table(ROLLUP_DAILY)?;
    let hourly = w.open_table(ROLLUP_HOURLY)?;
    if !daily_table.is_empty()? || hourly.is_empty()? {
        return Ok(());
    }
    type DayKey = (String, i64, String, String, String);
    let mut daily: HashMap<DayKey, Totals> = HashMap::new();
    for row in hourly.iter()? {
        let (k, v) = row?;
        let (user, hour, provider, model, customer) = k.value();
        let key = (
            user.to_owned(),
            Bucket::Day.start(hour),
            provider.to_owned(),
            model.to_owned(),
            customer.to_owned(),
        );
        daily
            .entry(key)
            .or_default()
            .merge(&decode_totals(v.value()));
    }
    for ((user, day, provider, model, customer), t) in &daily {
        daily_table.insert(
            (
                user.as_str(),
                *day,
                provider.as_str(),
                model.as_str(),
                customer.as_str(),
            ),
            encode_totals(t).as_slice(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;

    #[test]
    fn plans_split_days_hours_and_edges() {
        const D: i64 = DAY_MS;
        // Aligned hours, no whole day: hourly rows only.
        assert_eq!(
            Plan::of(10 * H, 20 * H, true),
            Plan {
                days: None,
                hours: [Some((10 * H, 20 * H)), None],
                edges: [None, None]
            }
        );
        // Ragged both ends.
        assert_eq!(
            Plan::of(10 * H + 5, 20 * H + 7, true),
            Plan {
                days: None,
                hours: [Some((11 * H, 20 * H)), None],
                edges: [Some((10 * H + 5, 11 * H)), Some((20 * H, 20 * H + 7))]
            }
        );
        // Several days: whole days, the hours around them, the edges.
        let from = 2 * D + 3 * H + 17;
        let to = 5 * D + 4 * H + 9;
        assert_eq!(
            Plan::of(from, to, true),
            Plan {
                days: Some((3 * D, 5 * D)),
                hours: [Some((2 * D + 4 * H, 3 * D)), Some((5 * D, 5 * D + 4 * H))],
                edges: [Some((from, 2 * D + 4 * H)), Some((5 * D + 4 * H, to))]
            }
        );
        // The same range at hour resolution never uses days.
        assert_eq!(
            Plan::of(from, to, false),
            Plan {
                days: None,
                hours: [Some((2 * D + 4 * H, 5 * D + 4 * H)), None],
                edges: [Some((from, 2 * D + 4 * H)), Some((5 * D + 4 * H, to))]
            }
        );
        // Day-aligned: days only.
        assert_eq!(
            Plan::of(D, 3 * D, true),
            Plan {
                days: Some((D, 3 * D)),
                hours: [None, None],
                edges: [None, None]
            }
        );
        // Within one hour, and across one boundary with no whole hour.
        assert_eq!(
            Plan::of(10 * H + 5, 10 * H + 9, true).edges,
            [Some((10 * H + 5, 10 * H + 9)), None]
        );
        assert_eq!(
            Plan::of(10 * H + 5, 11 * H + 9, true),
            Plan {
                days: None,
                hours: [None, None],
                edges: [Some((10 * H + 5, 11 * H + 9)), None]
            }
        );
        assert_eq!(Plan::of(5, 5, true).edges, [None, None]);
    }

    fn event(seq: u128, ts_ms: i64, customer: Option<&str>) -> CostEvent {
        use crate::pricing::Money;
        use crate::providers::{Endpoint, Usage};
        use crate::store::model::{Outcome, UsageStatus};
        CostEvent {
            id: ulid::Ulid::from_parts(ts_ms as u64, seq).to_string(),
            user_id: "u1".into(),
            ts_ms,
            provider: Provider::OpenAi,
            endpoint: Endpoint::ChatCompletions,
            model: Some("m".into()),
            customer_id: customer.map(str::to_owned),
            api_key_id: "k".into(),
            status: 200,
            outcome: Outcome::Ok,
            streamed: false,
            latency_ms: 1,
            ttft_ms: None,
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 2,
                ..Usage::default()
            }),
            usage_status: UsageStatus::Reported,
            cost: Some(Money::from_femto(7 + seq as i128)),
            upstream_request_id: None,
            service_tier: None,
        }
    }

    #[test]
    fn pacing_is_called_between_slices_and_changes_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<CostEvent> = (0..100u128)
            .map(|i| event(i, 1_000_000 + i as i64, Some("c")))
            .collect();
        let paced = Store::open(&dir.path().join("paced.redb")).unwrap();
        let mut calls = 0;
        paced.write_events_pacing(&events, || calls += 1).unwrap();
        // After every PACE_EVENTS-th event: never before the first or after the last.
        assert_eq!(calls, (events.len() - 1) / crate::store::PACE_EVENTS);
        let plain = Store::open(&dir.path().join("plain.redb")).unwrap();
        plain.write_events(&events).unwrap();
        let all = |s: &Store| s.events_desc("u1", None, usize::MAX, |_| true).unwrap();
        assert_eq!(all(&paced), all(&plain));
        assert_eq!(all(&paced).len(), 100);
        let f = QueryFilter::all(10 * DAY_MS);
        let totals = |s: &Store| {
            let mut t = Totals::default();
            s.visit_totals("u1", &f, Bucket::Day, |r| t.merge(&r.totals))
                .unwrap();
            t
        };
        assert_eq!(totals(&paced), totals(&plain));
        assert_eq!(totals(&paced).calls, 100);
    }

    #[test]
    fn daily_and_hourly_paths_agree_and_old_files_are_backfilled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let store = Store::open(&path).unwrap();
        let base = 20_000 * DAY_MS;
        let events: Vec<CostEvent> = (0..500u128)
            .map(|i| {
                let ts = base + (i as i64) * 37 * 60_000 + 11;
                event(i, ts, (i % 3 != 0).then_some("c"))
            })
            .collect();
        store.write_events(&events).unwrap();
        let f = QueryFilter {
            from_ms: base + 5 * H + 1234,
            to_ms: base + 9 * DAY_MS + 7 * H + 99,
            ..QueryFilter::all(0)
        };
        let by_day = {
            let mut t = Totals::default();
            store
                .visit_totals("u1", &f, Bucket::Day, |s| t.merge(&s.totals))
                .unwrap();
            t
        };
        let by_hour = {
            let mut t = Totals::default();
            store
                .visit_totals("u1", &f, Bucket::Hour, |s| t.merge(&s.totals))
                .unwrap();
            t
        };
        let mut direct = Totals::default();
        for e in events.iter().filter(|e| f.matches_event(e)) {
            direct.add_event(e);
        }
        assert_eq!(by_day, direct);
        assert_eq!(by_hour, direct);

        // A file written before daily rollups existed: drop them, reopen, same answers.
        drop(store);
        {
            let db = redb::Database::open(&path).unwrap();
            let w = db.begin_write().unwrap();
            w.delete_table(ROLLUP_DAILY).unwrap();
            w.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.stats("u1", &f).unwrap().total, direct);
        assert!(store.customer_seen("u1", "c").unwrap());
        assert!(!store.customer_seen("u1", "nobody").unwrap());
    }

    #[test]
    fn id_floor_orders_like_ulids() {
        let u = ulid::Ulid::from_parts(1_795_588_279_123, 42);
        assert!(id_floor(1_795_588_279_123) <= u128::from(u));
        assert!(id_floor(1_795_588_279_124) > u128::from(u));
        assert_eq!(id_floor(-5), 0);
        assert_eq!(id_floor(i64::MAX), u128::MAX);
    }

    #[test]
    fn buckets_fill_with_zeros_up_to_a_cap() {
        let t = Totals {
            calls: 1,
            ..Totals::default()
        };
        let sparse: BTreeMap<i64, Totals> = [(2 * H, t)].into();
        let filled = fill_buckets(sparse.clone(), Bucket::Hour, H + 5, 4 * H + 1, 1000);
        assert_eq!(
            filled.keys().copied().collect::<Vec<_>>(),
            [H, 2 * H, 3 * H, 4 * H]
        );
        assert_eq!(filled[&(2 * H)].calls, 1);
        assert_eq!(filled[&(3 * H)].calls, 0);
        assert_eq!(
            fill_buckets(sparse.clone(), Bucket::Hour, 0, 10_000 * H, 1000),
            sparse
        );
        assert_eq!(Bucket::Day.start(DAY_MS + 5), DAY_MS);
    }
}
