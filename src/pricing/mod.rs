//! Price tables and cost computation.
//!
//! The helper fills this module: see `PriceTable`.

pub mod money;

pub use money::Money;
