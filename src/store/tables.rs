//! redb table definitions and the byte encodings of their values.
//!
//! Events are keyed `(user_id, ulid)`: a ULID starts with its millisecond timestamp,
//! so one account's events scan in time order. Rollups are keyed
//! `(user_id, hour_ms, provider, model, customer)` and updated in the same write
//! transaction as the events they sum, so totals never scan raw events; daily rollups
//! (same key with the day's start) are kept alongside for long ranges.

use redb::TableDefinition;

use super::model::Totals;
use crate::pricing::Money;

/// user id → JSON `User`.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// normalized email → user id.
pub const USERS_BY_EMAIL: TableDefinition<&str, &str> = TableDefinition::new("users_by_email");
/// key id → JSON `ApiKeyRecord`.
pub const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// (user id, provider) → JSON `ProviderKeyRecord`.
pub const PROVIDER_KEYS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("provider_keys");
/// (user id, event ULID as u128) → `CostEvent` in the `codec` format (JSON in files
/// written before it).
pub const EVENTS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("events");
/// (user id, hour start ms, provider, model or "", customer or "") → encoded `Totals`.
pub const ROLLUP_HOURLY: TableDefinition<RollupKeyType, &[u8]> =
    TableDefinition::new("rollup_hourly");
/// The same sums per UTC day: (user id, day start ms, provider, model or "", customer
/// or "") → encoded `Totals`. Written with the hourly rows, so long ranges read 24×
/// fewer rows.
pub const ROLLUP_DAILY: TableDefinition<RollupKeyType, &[u8]> =
    TableDefinition::new("rollup_daily");
/// Key of both rollup tables.
pub type RollupKeyType = (&'static str, i64, &'static str, &'static str, &'static str);

/// Fixed-width little-endian encoding of `Totals` (88 bytes): cheap to read in bulk.
pub fn encode_totals(t: &Totals) -> [u8; TOTALS_LEN] {
    let mut b = [0u8; TOTALS_LEN];
    let words: [u64; 8] = [
        t.calls,
        t.unpriced_calls,
        t.input_tokens,
        t.cached_input_tokens,
        t.cache_write_tokens,
        t.output_tokens,
        t.reasoning_tokens,
        t.last_seen_ms as u64,
    ];
    for (i, w) in words.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    b[64..80].copy_from_slice(&t.cost.femto().to_le_bytes());
    b
}

pub const TOTALS_LEN: usize = 80;

/// Inverse of [`encode_totals`]; a short or corrupt value decodes as zeros.
pub fn decode_totals(b: &[u8]) -> Totals {
    if b.len() < TOTALS_LEN {
        return Totals::default();
    }
    let word = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(a)
    };
    let mut c = [0u8; 16];
    c.copy_from_slice(&b[64..80]);
    Totals {
        calls: word(0),
        unpriced_calls: word(1),
        input_tokens: word(2),
        cached_input_tokens: word(3),
        cache_write_tokens: word(4),
        output_tokens: word(5),
        reasoning_tokens: word(6),
        last_seen_ms: word(7) as i64,
        cost: Money::from_femto(i128::from_le_bytes(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_round_trip() {
        let t = Totals {
            calls: 3,
            unpriced_calls: 1,
            cost: Money::from_femto(-123_456_789_012_345_678),
            input_tokens: 10,
            cached_input_tokens: 4,
            cache_write_tokens: 2,
            output_tokens: 7,
            reasoning_tokens: 1,
            last_seen_ms: 1_795_588_279_123,
        };
        assert_eq!(decode_totals(&encode_totals(&t)), t);
    }
}
