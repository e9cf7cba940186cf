//! The store: one redb file holding accounts, keys, cost events and their rollups.
//!
//! Every method here blocks on disk I/O: async callers go through
//! `tokio::task::spawn_blocking`, and events are written only by the `writer` thread.

use std::path::Path;
use std::sync::Arc;

use redb::ReadableTable;

pub mod codec;
mod handle;
pub mod model;
pub mod query;
pub mod sessions;
pub mod tables;
pub mod writer;

use crate::hash::FastMap;
use model::{ApiKeyRecord, CostEvent, ProviderKeyRecord, Totals, User};
use tables::*;

/// Events inserted between two calls of the pacing hook of
/// [`Store::write_events_pacing`]: about 15–25 µs of work, so a proxy worker woken on
/// the writer's core waits at most that long. Against 32, the streaming first-byte p99
/// at one connection fell ~30 µs, for up to 0.7 µs more writer CPU a call where the
/// writer keeps yielding under load (bench/README.md, the day's twelfth session).
pub const PACE_EVENTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("corrupt record: {0}")]
    Corrupt(#[from] codec::CodecError),
    #[error("email already registered")]
    EmailTaken,
    #[error("not found")]
    NotFound,
    #[error("the database is being reopened after an I/O error")]
    Reopening,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.into()) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.into())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub use handle::{DEFAULT_CACHE_BYTES, FaultSwitch};

/// Cheap-to-clone handle on the database.
#[derive(Clone)]
pub struct Store {
    db: Arc<handle::DbHandle>,
    /// Event commits save redb's allocator state (see [`Store::with_quick_repair`]).
    quick_repair: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the database file and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, handle::DEFAULT_CACHE_BYTES, None)
    }

    /// Like [`Store::open`], with the page cache size in bytes and, for tests, a switch
    /// that can make the file fail writes.
    pub fn open_with(
        path: &Path,
        cache_bytes: usize,
        faults: Option<Arc<FaultSwitch>>,
    ) -> Result<Store> {
        let db = handle::DbHandle::open(path, cache_bytes, faults)?;
        let w = db.begin_write()?;
        {
            w.open_table(USERS)?;
            w.open_table(USERS_BY_EMAIL)?;
            w.open_table(API_KEYS)?;
            w.open_table(PROVIDER_KEYS)?;
            w.open_table(EVENTS)?;
            w.open_table(ROLLUP_HOURLY)?;
            query::backfill_daily_rollups(&w)?;
        }
        w.commit()?;
        Ok(Store {
            db: Arc::new(db),
            quick_repair: true,
        })
    }

    /// Whether event commits save redb's allocator state for quick repair (on by
    /// default). With it a file reopens at once after a crash (12 ms at 10 M events);
    /// without it a commit is one fsync instead of two and skips saving that state, and
    /// the first open after a crash repairs the whole file (10 s at 10 M events).
    pub fn with_quick_repair(mut self, on: bool) -> Store {
        self.quick_repair = on;
        self
    }

    /// Closes and reopens the database file after an I/O error. Blocking.
    pub fn reopen(&self) -> Result<()> {
        self.db.reopen()
    }

    // ---- accounts ----

    /// Creates an account; the email must already be normalized.
    pub fn create_user(&self, user: &User) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut by_email = w.open_table(USERS_BY_EMAIL)?;
            if by_email.get(user.email.as_str())?.is_some() {
                return Err(StoreError::EmailTaken);
            }
            by_email.insert(user.email.as_str(), user.id.as_str())?;
            let mut users = w.open_table(USERS)?;
            users.insert(user.id.as_str(), serde_json::to_vec(user)?.as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    /// Creates an account together with its first API key, atomically.
    pub fn create_user_with_key(&self, user: &User, key: &ApiKeyRecord) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut by_email = w.open_table(USERS_BY_EMAIL)?;
            if by_email.get(user.email.as_str())?.is_some() {
                return Err(StoreError::EmailTaken);
            }
            by_email.insert(user.email.as_str(), user.id.as_str())?;
            let mut users = w.open_table(USERS)?;
            users.insert(user.id.as_str(), serde_json::to_vec(user)?.as_slice())?;
            let mut keys = w.open_table(API_KEYS)?;
            keys.insert(key.id.as_str(), serde_json::to_vec(key)?.as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    pub fn update_user(&self, user: &User) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut users = w.open_table(USERS)?;
            if users.get(user.id.as_str())?.is_none() {
                return Err(StoreError::NotFound);
            }
            users.insert(user.id.as_str(), serde_json::to_vec(user)?.as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    pub fn user(&self, id: &str) -> Result<Option<User>> {
        let r = self.db.begin_read()?;
        let users = r.open_table(USERS)?;
        match users.get(id)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let r = self.db.begin_read()?;
        let by_email = r.open_table(USERS_BY_EMAIL)?;
        let Some(id) = by_email.get(email)? else {
            return Ok(None);
        };
        let users = r.open_table(USERS)?;
        match users.get(id.value())? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    /// Deletes an account with everything it owns: keys, provider keys, events and
    /// rollups, in one transaction. Returns the deleted account; `NotFound` if none.
    /// Callers also drop the account from the in-memory key caches.
    pub fn delete_user(&self, user_id: &str) -> Result<User> {
        let w = self.db.begin_write()?;
        let user = {
            let mut users = w.open_table(USERS)?;
            let user: User = match users.remove(user_id)? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            w.open_table(USERS_BY_EMAIL)?.remove(user.email.as_str())?;
            w.open_table(API_KEYS)?
                .retain(|_, v| !key_belongs_to(v, user_id))?;
            // The smallest id after `user_id`: bounds this account's rows exactly.
            let next_user = format!("{user_id}\0");
            w.open_table(PROVIDER_KEYS)?
                .retain_in((user_id, "")..(next_user.as_str(), ""), |_, _| false)?;
            w.open_table(EVENTS)?
                .retain_in((user_id, 0u128)..=(user_id, u128::MAX), |_, _| false)?;
            for table in [ROLLUP_HOURLY, ROLLUP_DAILY] {
                w.open_table(table)?.retain_in(
                    (user_id, i64::MIN, "", "", "")..(next_user.as_str(), i64::MIN, "", "", ""),
                    |_, _| false,
                )?;
            }
            user
        };
        w.commit()?;
        Ok(user)
    }

    // ---- API keys ----

    pub fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut keys = w.open_table(API_KEYS)?;
            keys.insert(key.id.as_str(), serde_json::to_vec(key)?.as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    /// Every key of every account (to fill the in-memory key cache at start).
    pub fn all_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let r = self.db.begin_read()?;
        let keys = r.open_table(API_KEYS)?;
        let mut out = Vec::new();
        for row in keys.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// One account's keys, oldest first.
    pub fn api_keys_for(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>> {
        let mut keys: Vec<ApiKeyRecord> = self
            .all_api_keys()?
            .into_iter()
            .filter(|k| k.user_id == user_id)
            .collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(keys)
    }

    /// Marks a key revoked. `NotFound` unless the key exists and belongs to `user_id`.
    pub fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<ApiKeyRecord> {
        let w = self.db.begin_write()?;
        let rec = {
            let mut keys = w.open_table(API_KEYS)?;
            let mut rec: ApiKeyRecord = match keys.get(key_id)? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            if rec.user_id != user_id {
                return Err(StoreError::NotFound);
            }
            rec.revoked = true;
            keys.insert(key_id, serde_json::to_vec(&rec)?.as_slice())?;
            rec
        };
        w.commit()?;
        Ok(rec)
    }

    // ---- provider keys ----

    pub fn put_provider_key(&self, user_id: &str, rec: &ProviderKeyRecord) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(PROVIDER_KEYS)?;
            t.insert(
                (user_id, rec.provider.as_str()),
                serde_json::to_vec(rec)?.as_slice(),
            )?;
        }
        w.commit()?;
        Ok(())
    }

    /// Removes a provider key; `NotFound` if none was set.
    pub fn delete_provider_key(&self, user_id: &str, provider: &str) -> Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(PROVIDER_KEYS)?;
            if t.remove((user_id, provider))?.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        w.commit()?;
        Ok(())
    }

    pub fn provider_keys_for(&self, user_id: &str) -> Result<Vec<ProviderKeyRecord>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PROVIDER_KEYS)?;
        let mut out = Vec::new();
        for row in t.range((user_id, "")..)? {
            let (k, v) = row?;
            if k.value().0 != user_id {
                break;
            }
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// Every stored provider key, with its account id (to fill the managed-mode cache).
    pub fn all_provider_keys(&self) -> Result<Vec<(String, ProviderKeyRecord)>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PROVIDER_KEYS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().0.to_owned(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    // ---- events ----

    /// Writes events, their rollups and the keys' last-used times in one transaction.
    /// Only the writer thread (and tests that build data) call this.
    pub fn write_events(&self, events: &[CostEvent]) -> Result<()> {
        self.write_events_pacing(events, || {})
    }

    /// [`Store::write_events`], calling `between` after every [`PACE_EVENTS`] events
    /// inserted, so a background caller can give up its core between slices.
    pub fn write_events_pacing(
        &self,
        events: &[CostEvent],
        mut between: impl FnMut(),
    ) -> Result<()> {
        let mut w = self.db.begin_write()?;
        w.set_durability(redb::Durability::Immediate)?;
        w.set_quick_repair(self.quick_repair);
        {
            let mut ev = w.open_table(EVENTS)?;
            let mut rollups: FastMap<RollupKey<'_>, Totals> = FastMap::default();
            let mut last_used: FastMap<&str, i64> = FastMap::default();
            let mut buf = Vec::with_capacity(256);
            for (n, e) in events.iter().enumerate() {
                if n > 0 && n % PACE_EVENTS == 0 {
                    between();
                }
                let canonical = codec::canonical_ulid(&e.id);
                let id = canonical
                    .or_else(|| ulid::Ulid::from_string(&e.id).ok().map(u128::from))
                    .unwrap_or(0);
                buf.clear();
                codec::encode_event_with_id(e, canonical, &mut buf);
                ev.insert((e.user_id.as_str(), id), buf.as_slice())?;
                rollups.entry(RollupKey::of(e)).or_default().add_event(e);
                let lu = last_used.entry(e.api_key_id.as_str()).or_default();
                *lu = (*lu).max(e.ts_ms);
            }
            drop(ev);
            let mut daily: FastMap<RollupKey<'_>, Totals> = FastMap::default();
            for (k, t) in &rollups {
                let day = query::Bucket::Day.start(k.start);
                let key = RollupKey { start: day, ..*k };
                daily.entry(key).or_default().merge(t);
            }
            merge_rollups(&mut w.open_table(ROLLUP_HOURLY)?, rollups)?;
            merge_rollups(&mut w.open_table(ROLLUP_DAILY)?, daily)?;
            let mut keys = w.open_table(API_KEYS)?;
            for (key_id, ts) in last_used {
                let rec: Option<ApiKeyRecord> = match keys.get(key_id)? {
                    Some(v) => serde_json::from_slice(v.value()).ok(),
                    None => None,
                };
                if let Some(mut rec) = rec
                    && rec.last_used_at_ms.is_none_or(|t| t < ts)
                {
                    rec.last_used_at_ms = Some(ts);
                    keys.insert(key_id, serde_json::to_vec(&rec)?.as_slice())?;
                }
            }
        }
        w.commit()?;
        Ok(())
    }

    /// One event by id, if it belongs to `user_id`.
    pub fn event(&self, user_id: &str, id: &str) -> Result<Option<CostEvent>> {
        let Ok(ulid) = ulid::Ulid::from_string(id) else {
            return Ok(None);
        };
        let r = self.db.begin_read()?;
        let t = r.open_table(EVENTS)?;
        match t.get((user_id, u128::from(ulid)))? {
            Some(v) => Ok(Some(codec::decode_event(v.value())?)),
            None => Ok(None),
        }
    }

    /// One account's events, newest first, strictly older than `before` (a ULID) when
    /// given. Filtering callers pass a predicate; at most `limit` matches are returned.
    pub fn events_desc(
        &self,
        user_id: &str,
        before: Option<u128>,
        limit: usize,
        mut keep: impl FnMut(&CostEvent) -> bool,
    ) -> Result<Vec<CostEvent>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(EVENTS)?;
        let end = before.unwrap_or(u128::MAX);
        let mut out = Vec::new();
        for row in t.range((user_id, 0u128)..(user_id, end))?.rev() {
            let (_, v) = row?;
            let e = codec::decode_event(v.value())?;
            if keep(&e) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Number of stored events of every account (tests and metrics).
    pub fn event_count(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let r = self.db.begin_read()?;
        Ok(r.open_table(EVENTS)?.len()?)
    }
}

/// True if a stored `ApiKeyRecord` belongs to `user_id` (corrupt records do not).
fn key_belongs_to(record: &[u8], user_id: &str) -> bool {
    serde_json::from_slice::<ApiKeyRecord>(record).is_ok_and(|k| k.user_id == user_id)
}

/// Adds `adds` into a rollup table's rows.
fn merge_rollups(
    table: &mut redb::Table<'_, RollupKeyType, &'static [u8]>,
    adds: FastMap<RollupKey<'_>, Totals>,
) -> Result<()> {
    for (k, add) in adds {
        let key = (k.user, k.start, k.provider, k.model, k.customer);
        let mut t = match table.get(key)? {
            Some(v) => decode_totals(v.value()),
            None => Totals::default(),
        };
        t.merge(&add);
        table.insert(key, encode_totals(&t).as_slice())?;
    }
    Ok(())
}

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
struct RollupKey<'a> {
    user: &'a str,
    /// Start of the hour (or day, for daily rows), Unix ms.
    start: i64,
    provider: &'a str,
    model: &'a str,
    customer: &'a str,
}

impl<'a> RollupKey<'a> {
    fn of(e: &'a CostEvent) -> Self {
        RollupKey {
            user: &e.user_id,
            start: crate::time::hour_floor(e.ts_ms),
            provider: e.provider.as_str(),
            model: e.model.as_deref().unwrap_or(""),
            customer: e.customer_id.as_deref().unwrap_or(""),
        }
    }
}
