//! CSV rows for `/api/events.csv`: the columns of the event JSON, in its order.
//!
//! Fields are quoted per RFC 4180 when needed. Text a client controls (model,
//! customer id, request id) that starts like a spreadsheet formula (`=`, `+`, `-`,
//! `@`, tab, CR) gets a leading `'`, so opening the file cannot run a formula
//! (OWASP "CSV injection").

use std::fmt::Write;

use crate::store::model::{CostEvent, UsageStatus};

const COLUMNS: [&str; 21] = [
    "id",
    "ts",
    "provider",
    "endpoint",
    "model",
    "customer_id",
    "api_key_id",
    "status",
    "outcome",
    "streamed",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "usage_status",
    "cost_usd",
    "priced",
    "upstream_request_id",
];

pub fn header_row() -> String {
    let mut s = COLUMNS.join(",");
    s.push_str("\r\n");
    s
}

/// One event as a CSV line (CRLF-terminated). Unknown values are empty cells.
pub fn event_row(e: &CostEvent) -> String {
    let u = e.usage.as_ref();
    let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let usage_status = match e.usage_status {
        UsageStatus::Reported => "reported",
        UsageStatus::Partial => "partial",
        UsageStatus::Missing => "missing",
    };
    let cells: [String; 21] = [
        e.id.clone(),
        crate::time::rfc3339_ms(e.ts_ms),
        e.provider.as_str().to_owned(),
        e.endpoint.as_str().to_owned(),
        untrusted(e.model.as_deref()),
        untrusted(e.customer_id.as_deref()),
        e.api_key_id.clone(),
        e.status.to_string(),
        e.outcome.as_str().to_owned(),
        e.streamed.to_string(),
        e.latency_ms.to_string(),
        num(e.ttft_ms),
        num(u.map(|u| u.input_tokens)),
        num(u.map(|u| u.cached_input_tokens)),
        num(u.map(|u| u.cache_write_tokens())),
        num(u.map(|u| u.output_tokens)),
        num(u.map(|u| u.reasoning_tokens)),
        usage_status.to_owned(),
        e.cost.map(|c| c.to_string()).unwrap_or_default(),
        e.priced().to_string(),
        untrusted(e.upstream_request_id.as_deref()),
    ];
    let mut line = String::with_capacity(256);
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_field(&mut line, c);
    }
    line.push_str("\r\n");
    line
}

/// Client-controlled text, defused against formula evaluation.
fn untrusted(v: Option<&str>) -> String {
    match v {
        Some(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{s}"),
        Some(s) => s.to_owned(),
        None => String::new(),
    }
}

fn push_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        let _ = write!(out, "\"{}\"", v.replace('"', "\"\""));
    } else {
        out.push_str(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_defuses() {
        let mut s = String::new();
        push_field(&mut s, "a,\"b\"");
        assert_eq!(s, "\"a,\"\"b\"\"\"");
        assert_eq!(untrusted(Some("=cmd()")), "'=cmd()");
        assert_eq!(untrusted(Some("alice")), "alice");
        assert_eq!(untrusted(None), "");
        assert_eq!(header_row().split(',').count(), COLUMNS.len());
    }
}
