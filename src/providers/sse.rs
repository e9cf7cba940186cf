//! Incremental SSE decoder (to be written).
