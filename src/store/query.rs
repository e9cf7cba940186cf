//! Read-side queries behind the admin API: totals, groupings, time series and event
//! pages for one account. Called by `admin::api_routes` (through `spawn_blocking`:
//! every method here blocks on redb reads).
//!
//! Totals never scan raw events for whole hours: a range `[from, to)` is split into
//! the whole UTC hours inside it, answered from `ROLLUP_HOURLY`, and at most two
//! partial edge hours, summed from the raw events of those edges only. So a query
//! reads at most two hours of events whatever the range, and its numbers are exact.

use std::collections::{BTreeMap, HashMap};

use redb::ReadTransaction;

use super::model::{CostEvent, Totals};
use super::tables::{EVENTS, ROLLUP_HOURLY, decode_totals};
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

/// Totals of one (hour, provider, model, customer): a rollup row, or one edge event.
/// `model` and `customer` are "" when the call had none.
#[derive(Debug, Clone, Copy)]
pub struct Slice<'a> {
    pub hour_ms: i64,
    pub provider: &'a str,
    pub model: &'a str,
    pub customer: &'a str,
    pub totals: Totals,
}

/// How a range is read: whole hours from rollups, the partial edges from events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    whole_hours: Option<(i64, i64)>,
    edges: [Option<(i64, i64)>; 2],
}

impl Plan {
    fn of(from: i64, to: i64) -> Plan {
        let first_whole = hour_floor(from.saturating_add(HOUR_MS - 1));
        let last_whole_end = hour_floor(to);
        if first_whole >= last_whole_end {
            // No whole hour inside: the range lies within two adjacent hours at most.
            return Plan {
                whole_hours: None,
                edges: [(from < to).then_some((from, to)), None],
            };
        }
        Plan {
            whole_hours: Some((first_whole, last_whole_end)),
            edges: [
                (from < first_whole).then_some((from, first_whole)),
                (last_whole_end < to).then_some((last_whole_end, to)),
            ],
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
    /// (whole hour, provider, model, customer), and one slice per edge event. Reads no
    /// raw event outside the (at most two) partial hours at the range's ends.
    pub fn visit_totals(
        &self,
        user_id: &str,
        f: &QueryFilter,
        mut visit: impl FnMut(Slice<'_>),
    ) -> Result<()> {
        if f.from_ms >= f.to_ms {
            return Ok(());
        }
        let r = self.db.begin_read()?;
        let plan = Plan::of(f.from_ms, f.to_ms);
        if let Some((lo, hi)) = plan.whole_hours {
            visit_rollups(&r, user_id, lo, hi, f, &mut visit)?;
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
                    hour_ms: hour_floor(e.ts_ms),
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
        self.visit_totals(user_id, f, |s| {
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
        self.visit_totals(user_id, f, |s| {
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
        self.visit_totals(user_id, &f, |s| {
            total.merge(&s.totals);
            groups.add(&s);
            series
                .entry(bucket.start(s.hour_ms))
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
        let t = r.open_table(ROLLUP_HOURLY)?;
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
        self.visit_totals(user_id, f, |s| {
            series
                .entry(bucket.start(s.hour_ms))
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
            let e: CostEvent = serde_json::from_slice(v.value())?;
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

fn visit_rollups(
    r: &ReadTransaction,
    user_id: &str,
    lo_hour: i64,
    hi_hour: i64,
    f: &QueryFilter,
    visit: &mut impl FnMut(Slice<'_>),
) -> Result<()> {
    let t = r.open_table(ROLLUP_HOURLY)?;
    for row in t.range((user_id, lo_hour, "", "", "")..(user_id, hi_hour, "", "", ""))? {
        let (k, v) = row?;
        let (_, hour_ms, provider, model, customer) = k.value();
        if f.matches(provider, model, customer) {
            visit(Slice {
                hour_ms,
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
        let e: CostEvent = serde_json::from_slice(v.value())?;
        if f.matches_event(&e) {
            visit(&e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;

    #[test]
    fn plans_split_whole_hours_from_edges() {
        // Aligned: no edges.
        assert_eq!(
            Plan::of(10 * H, 20 * H),
            Plan {
                whole_hours: Some((10 * H, 20 * H)),
                edges: [None, None]
            }
        );
        // Ragged both ends.
        assert_eq!(
            Plan::of(10 * H + 5, 20 * H + 7),
            Plan {
                whole_hours: Some((11 * H, 20 * H)),
                edges: [Some((10 * H + 5, 11 * H)), Some((20 * H, 20 * H + 7))]
            }
        );
        // Within one hour, and across one boundary with no whole hour.
        assert_eq!(
            Plan::of(10 * H + 5, 10 * H + 9),
            Plan {
                whole_hours: None,
                edges: [Some((10 * H + 5, 10 * H + 9)), None]
            }
        );
        assert_eq!(
            Plan::of(10 * H + 5, 11 * H + 9),
            Plan {
                whole_hours: None,
                edges: [Some((10 * H + 5, 11 * H + 9)), None]
            }
        );
        assert_eq!(Plan::of(5, 5).edges, [None, None]);
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
