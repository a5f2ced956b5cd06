//! Where in a sweep file a key is: byte offsets to lines, columns and key
//! names, for errors that name file, line and key.

use super::error::SweepError;

/// Maps byte offsets of the source to lines, columns and keys.
pub(super) struct SpanLocator<'a> {
    source: &'a str,
    file: &'a str,
}

impl<'a> SpanLocator<'a> {
    pub(super) fn new(source: &'a str, file: &'a str) -> Self {
        Self { source, file }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let before = &self.source[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, column)
    }

    /// The dotted key at `offset`: the enclosing `[table]` and the `key =` of
    /// the line.
    fn key_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.source.len());
        let line_start = self.source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.source[offset..]
            .find('\n')
            .map_or(self.source.len(), |i| offset + i);
        let line = &self.source[line_start..line_end];
        let table = self.source[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('[') && !l.starts_with("[["))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            return Some(
                trimmed
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_string(),
            );
        }
        let key = line.split('=').next().map(str::trim).filter(|k| {
            line.contains('=')
                && !k.is_empty()
                && k.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.' || c == '"')
        });
        match (table, key) {
            (Some(t), Some(k)) => Some(format!("{t}.{}", k.trim_matches('"'))),
            (None, Some(k)) => Some(k.trim_matches('"').to_string()),
            (t, None) => t,
        }
    }

    pub(super) fn at(
        &self,
        offset: usize,
        key: Option<String>,
        message: impl Into<String>,
    ) -> SweepError {
        let (line, column) = self.line_col(offset);
        SweepError {
            file: self.file.to_string(),
            line,
            column,
            key,
            message: message.into(),
        }
    }

    pub(super) fn toml_error(&self, e: &toml::de::Error) -> SweepError {
        let offset = e.span().map_or(0, |s| s.start);
        let mut message = e.message().trim().to_string();
        let mut key = e.span().and_then(|s| self.key_at(s.start));
        // serde names a missing field and spans the table that lacks it:
        // the whole document as an empty span at 0, a `[table]` by its
        // header, an inline table by its braces. The key is the field in
        // that table (not the key that happens to sit where the span starts).
        if let Some(field) = missing_field(&message) {
            key = match e.span() {
                Some(s) if !s.is_empty() => match self.key_at(s.start) {
                    Some(table) => Some(format!("{table}.{field}")),
                    None => Some(field.to_string()),
                },
                _ => Some(field.to_string()),
            };
        }
        if let Some(number) = integer_out_of_range(&message) {
            message = format!(
                "integer {number} is out of range: TOML integers are 64-bit (from {} to {})",
                i64::MIN,
                i64::MAX
            );
        }
        if e.span().is_none() {
            message = e.to_string().trim().to_string();
        }
        self.at(offset, key, message)
    }

    /// Where the header line of `[table]` starts and where the line after it
    /// starts (`[ table ]` and a trailing comment allowed; a `[table]` in a
    /// comment or a string is not a header).
    fn table_header(&self, table: &str) -> Option<(usize, usize)> {
        lines_at(self.source).find_map(|(start, line)| {
            let (name, rest) = line.trim().strip_prefix('[')?.split_once(']')?;
            let rest = rest.trim_start();
            (name.trim() == table && (rest.is_empty() || rest.starts_with('#'))).then(|| {
                (
                    start + line.len() - line.trim_start().len(),
                    start + line.len(),
                )
            })
        })
    }

    /// An error about `key` in `[table]`: points at the line where the key is
    /// written (or the table header if the key cannot be found).
    pub(super) fn key_error(&self, table: &str, key: &str, message: String) -> SweepError {
        let (header, body) = self.table_header(table).unwrap_or((0, 0));
        let mut offset = header;
        for (start, line) in lines_at(&self.source[body..]) {
            let t = line.trim_start();
            if t.starts_with('[') {
                break;
            }
            if t.split('=').next().map(str::trim) == Some(key) && t.contains('=') {
                offset = body + start + (line.len() - t.len());
                break;
            }
        }
        self.at(offset, Some(format!("{table}.{key}")), message)
    }
}

/// Lines of `source` with the offset each starts at.
fn lines_at(source: &str) -> impl Iterator<Item = (usize, &str)> {
    source.split_inclusive('\n').scan(0, |pos, line| {
        let start = *pos;
        *pos += line.len();
        Some((start, line))
    })
}

/// `N` of the parser's "invalid type: integer `N` as i128, …": a literal
/// past what a TOML integer holds.
fn integer_out_of_range(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("invalid type: integer `")?;
    let (number, tail) = rest.split_once('`')?;
    tail.starts_with(" as i128").then_some(number)
}

/// `X` of serde's "missing field `X`".
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split('`')
        .next()
        .filter(|f| !f.is_empty())
}
