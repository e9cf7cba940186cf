//! Model-name normalization for price lookup: pure `&str` → `&str` trims, no allocation.
//!
//! Used by `PriceTable::resolve` after an exact (name or alias) hit failed. The
//! order of attempts is documented on [`candidates`].

/// `gpt-4o-2024-08-06` → `gpt-4o`, `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`,
/// `grok-4-0709` → `grok-4`, `claude-opus-4-1@20250805` (Vertex) → `claude-opus-4-1`.
/// Returns `None` when the name carries no recognizable date suffix.
pub(crate) fn strip_date_suffix(name: &str) -> Option<&str> {
    let (head, tail) = name.rsplit_once(['-', '@'])?;
    if head.is_empty() {
        return None;
    }
    let stripped = if is_digits(tail, 8) {
        // -YYYYMMDD
        tail.starts_with("20") && valid_month_day(&tail[4..6], &tail[6..])
    } else if is_digits(tail, 4) {
        // -MMDD (xAI, DeepSeek, old OpenAI snapshots) or -YYMM (Mistral: -2501, -2411)
        valid_month_day(&tail[..2], &tail[2..]) || valid_year_month(&tail[..2], &tail[2..])
    } else if is_digits(tail, 2) {
        // -YYYY-MM-DD: `tail` is DD; the month and year are the two segments before.
        let (head2, mm) = head.rsplit_once('-')?;
        let (head3, yyyy) = head2.rsplit_once('-')?;
        let ok = is_digits(yyyy, 4)
            && yyyy.starts_with("20")
            && is_digits(mm, 2)
            && valid_month_day(mm, tail)
            && !head3.is_empty();
        return ok.then_some(head3);
    } else {
        false
    };
    stripped.then_some(head)
}

fn is_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

fn valid_month_day(mm: &str, dd: &str) -> bool {
    matches!(
        (mm.parse::<u8>(), dd.parse::<u8>()),
        (Ok(1..=12), Ok(1..=31))
    )
}

fn valid_year_month(yy: &str, mm: &str) -> bool {
    matches!(
        (yy.parse::<u8>(), mm.parse::<u8>()),
        (Ok(23..=39), Ok(1..=12))
    )
}

/// `anthropic/claude-sonnet-4.5` → `claude-sonnet-4.5`; `models/gemini-2.5-pro` →
/// `gemini-2.5-pro`; `publishers/google/models/x` → `x`.
pub(crate) fn strip_vendor_prefix(name: &str) -> Option<&str> {
    name.rsplit_once('/')
        .map(|(_, rest)| rest)
        .filter(|r| !r.is_empty())
}

/// `mistral-small-latest` → `mistral-small`.
pub(crate) fn strip_latest(name: &str) -> Option<&str> {
    name.strip_suffix("-latest").filter(|r| !r.is_empty())
}

/// The base model of an OpenAI fine-tune: `ft:gpt-4o-mini-2024-07-18:org::id` →
/// `gpt-4o-mini-2024-07-18`.
pub(crate) fn fine_tune_base(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("ft:")?;
    let base = rest.split(':').next().unwrap_or(rest);
    (!base.is_empty()).then_some(base)
}

/// The names to try, in order, after the exact name missed: the name without a
/// vendor/`models/` prefix, then each of (name, unprefixed) without a date suffix,
/// then without `-latest`. At most five `&str` slices of `name`.
pub(crate) fn candidates(name: &str) -> impl Iterator<Item = &str> {
    let unprefixed = strip_vendor_prefix(name);
    let bases = [Some(name), unprefixed];
    let prefix_only = unprefixed.into_iter();
    let trimmed = bases.into_iter().flatten().flat_map(|n| {
        [strip_date_suffix(n), strip_latest(n)]
            .into_iter()
            .flatten()
    });
    prefix_only.chain(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_suffixes() {
        assert_eq!(strip_date_suffix("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(
            strip_date_suffix("gpt-4o-mini-2024-07-18"),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            strip_date_suffix("claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            strip_date_suffix("claude-opus-4-1@20250805"),
            Some("claude-opus-4-1")
        );
        assert_eq!(strip_date_suffix("grok-4-0709"), Some("grok-4"));
        assert_eq!(strip_date_suffix("o4-mini-2025-04-16"), Some("o4-mini"));
        assert_eq!(
            strip_date_suffix("mistral-small-2501"),
            Some("mistral-small")
        );
        assert_eq!(strip_date_suffix("gpt-4-0613"), Some("gpt-4"));
        // Not dates: model sizes, versions, invalid month/day.
        assert_eq!(strip_date_suffix("claude-sonnet-4-5"), None);
        assert_eq!(strip_date_suffix("gpt-4o"), None);
        assert_eq!(strip_date_suffix("embedding-2048"), None);
        assert_eq!(strip_date_suffix("model-1399"), None);
        assert_eq!(strip_date_suffix("gemini-2.0-flash-001"), None);
        assert_eq!(strip_date_suffix("x-2024-13-01"), None);
        assert_eq!(strip_date_suffix("0709"), None);
    }

    #[test]
    fn candidate_order() {
        let c: Vec<_> = candidates("models/gemini-2.5-pro").collect();
        assert_eq!(c, ["gemini-2.5-pro"]);
        let c: Vec<_> = candidates("openai/gpt-4o-2024-08-06").collect();
        assert_eq!(c, ["gpt-4o-2024-08-06", "openai/gpt-4o", "gpt-4o"]);
        let c: Vec<_> = candidates("mistral-small-latest").collect();
        assert_eq!(c, ["mistral-small"]);
    }

    #[test]
    fn fine_tunes() {
        assert_eq!(
            fine_tune_base("ft:gpt-4o-mini-2024-07-18:org::abc123"),
            Some("gpt-4o-mini-2024-07-18")
        );
        assert_eq!(fine_tune_base("gpt-4o"), None);
        assert_eq!(fine_tune_base("ft:"), None);
    }
}
