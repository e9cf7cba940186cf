//! LLMObserve: a transparent metering proxy for LLM APIs.
//!
//! - [`proxy`]: the hot path (route → authenticate → forward → meter), on hyper.
//! - [`providers`]: pure usage parsers per provider family, the SSE decoder.
//! - [`pricing`]: price tables (embedded from `pricing/`) and exact [`pricing::Money`].
//! - [`store`]: redb tables, the event writer (group commit) and queries.
//! - [`admin`]: the axum listener: auth, keys, query API, `/metrics`, the dashboard.
//! - [`app`]: wires it together and owns shutdown; [`config`] is the CLI.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod hash;
pub mod pricing;
pub mod providers;
pub mod proxy;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod time;
