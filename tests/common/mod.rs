#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
pub mod app;
pub mod mock_upstream;
pub mod process;
