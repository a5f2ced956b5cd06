//! JSON rendering: the whole [`Report`], non-finite numbers as `"nan"`/`"inf"`/`"-inf"`.

use crate::report::Report;

/// Render as pretty JSON.
pub fn render(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
