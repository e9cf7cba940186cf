//! LLMObserve: a transparent metering proxy for LLM APIs.

pub mod auth;
pub mod config;
pub mod pricing;
pub mod providers;
pub mod store;
pub mod time;
