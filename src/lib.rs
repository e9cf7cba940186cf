//! LLMObserve: a transparent metering proxy for LLM APIs.

pub mod pricing;
pub mod providers;
