//! Printing: aligned tables, key/value blocks, JSON and YAML.

use std::io::Write;

use serde::Serialize;

use crate::cli::Format;
use crate::error::CliError;

/// Writes `value` as pretty JSON or YAML and returns true; returns false for the table format (the caller
/// prints a table).
pub fn structured<W: Write, T: Serialize>(out: &mut W, format: Format, value: &T) -> Result<bool, CliError> {
    match format {
        Format::Table => Ok(false),
        Format::Json => {
            let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))?;
            writeln!(out, "{text}")?;
            Ok(true)
        }
        Format::Yaml => {
            let text = serde_saphyr::to_string(value).map_err(|e| CliError::Output(e.to_string()))?;
            write!(out, "{text}")?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
            Ok(true)
        }
    }
}

/// Writes rows as columns separated by two spaces, the first row being the header.
pub fn table<W: Write>(out: &mut W, rows: &[Vec<String>]) -> Result<(), CliError> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Writes `key: value` lines with the values aligned.
pub fn key_values<W: Write>(out: &mut W, pairs: &[(&str, String)]) -> Result<(), CliError> {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    for (key, value) in pairs {
        writeln!(out, "{key:<width$}  {value}")?;
    }
    Ok(())
}

/// A size in GiB with two decimals.
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", kaito_core::bytes_to_gib(bytes as f64))
}
