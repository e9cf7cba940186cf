//! The hash map of the request path and the event writer.
//!
//! std's default hasher (SipHash-1-3) cost ~150-400 instructions per lookup of a model
//! name, key hash or rollup key, several times per call (callgrind). foldhash is several
//! times cheaper and still seeded at random per process, which is what keeps
//! client-chosen strings (model names, customer ids) from being aimed at one bucket.

pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
