//! How commands print: `--output table` (aligned columns for people, the default) or
//! `--output json` (the node's own JSON body, pretty-printed: its schema is the API's, in
//! `/openapi.json`, so scripts get the same stable field names).

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use serde::Serialize;

/// The format of listings and results (`--output`, env `HUSH_OUTPUT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns with a header (for people).
    #[default]
    Table,
    /// The node's JSON, pretty-printed (for scripts; stable field names).
    Json,
}

impl Output {
    /// Whether JSON was asked for.
    pub fn json(self) -> bool {
        self == Output::Json
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A table in the style of `kubectl get`: upper-case header, columns two spaces apart, no
/// borders, no wrapping (a pipe to `grep`/`awk` sees one record per line).
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
        c.set_cell_alignment(CellAlignment::Left);
    }
    t
}

/// Prints a table (nothing at all when it has no rows but a note on stderr, as kubectl does).
pub fn print_table(t: &Table, empty: &str) {
    if t.row_count() == 0 {
        eprintln!("{empty}");
        return;
    }
    for line in t.to_string().lines() {
        println!("{}", line.trim_end());
    }
}

/// A time in ms since the Unix epoch as RFC 3339 UTC to the second.
pub fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// An optional time, `-` when absent.
pub fn opt_time(ms: Option<u64>) -> String {
    ms.map(time).unwrap_or_else(|| "-".into())
}

/// An optional duration in seconds as `30m`, `12h`, `none` when absent.
pub fn opt_secs(s: Option<u64>) -> String {
    match s {
        Some(s) => secs(s),
        None => "none".into(),
    }
}

/// A duration in seconds as `1h 30m`.
pub fn secs(s: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
}

/// `yes`/`no`.
pub fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tables_align_columns_without_borders() {
        let mut t = table(&["id", "name"]);
        t.add_row(vec!["1", "alpha"]);
        t.add_row(vec!["22", "b"]);
        let s = t.to_string();
        let lines: Vec<&str> = s.lines().map(str::trim_end).collect();
        assert_eq!(lines, ["ID  NAME", "1   alpha", "22  b"]);
    }
}
