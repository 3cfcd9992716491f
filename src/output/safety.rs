//! `check --safety` output: the verdict as JSON or as lines for people.

use super::qjson;
use crate::ops::safety::Verdict;
use serde_json::json;

/// The verdict as one JSON object: `filename`, `format`, `detected`,
/// `safe` and `findings` (each `check` and `reason`).
pub fn render_json(v: &Verdict) -> String {
    qjson::to_string(&json!({
        "filename": v.filename,
        "format": v.format,
        "detected": v.detected,
        "safe": v.safe(),
        "findings": v.findings,
    }))
}

/// The verdict in one line, then one line per finding.
pub fn render_human(v: &Verdict) -> String {
    let word = if v.safe() { "safe" } else { "not safe" };
    let mut out = format!("{} ({}): {word} to accept\n", v.filename, v.format);
    for f in &v.findings {
        out += &format!("    {}: {}\n", f.check, f.reason);
    }
    out
}
