//! Terminal rendering for the operator commands: aligned columns, human ages
//! and sizes. Pure: no I/O, no clock (callers pass durations).
//!
//! What goes into the columns is the commands' business, not this module's.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table with a header row; every column as wide as its widest cell.
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Cells hold Zoom-supplied text (ids, event names, reasons): control
    /// characters are escaped and very long cells cut (`escape::for_display`).
    pub fn row(&mut self, cells: Vec<String>) {
        let max = crate::escape::MAX_DISPLAY_CHARS;
        self.rows.push(
            cells
                .into_iter()
                .map(|cell| crate::escape::for_display(&cell, max).into_owned())
                .collect(),
        );
    }

    /// The header and the rows, each line indented by `indent` spaces, two
    /// spaces between columns, no trailing spaces.
    pub fn render(&self, indent: usize) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = " ".repeat(indent);
            for (i, ((_, align), width)) in self.columns.iter().zip(&widths).enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
                match align {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A duration in its two largest units: `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub fn age(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

/// A byte count in binary units with one decimal: `812 B`, `4.2 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_age(seconds: u64, expected: &str) {
        assert_eq!(age(Duration::from_secs(seconds)), expected, "{seconds} s");
    }

    #[test]
    fn ages_show_their_two_largest_units() {
        check_age(0, "0s");
        check_age(45, "45s");
        check_age(60, "1m 0s");
        check_age(192, "3m 12s");
        check_age(3600, "1h 0m");
        check_age(2 * 3600 + 5 * 60 + 59, "2h 5m");
        check_age(3 * 86_400 + 4 * 3600 + 7, "3d 4h");
    }

    fn check_size(bytes: u64, expected: &str) {
        assert_eq!(size(bytes), expected, "{bytes} bytes");
    }

    #[test]
    fn sizes_use_binary_units() {
        check_size(0, "0 B");
        check_size(1023, "1023 B");
        check_size(1024, "1.0 KiB");
        check_size(73_728, "72.0 KiB");
        check_size(4_404_019, "4.2 MiB");
        check_size(3 << 30, "3.0 GiB");
    }

    #[test]
    fn columns_align_and_lines_have_no_trailing_spaces() {
        let mut table = Table::new(&[
            ("SINK", Align::Left),
            ("PENDING", Align::Right),
            ("OLDEST", Align::Left),
        ]);
        table.row(vec!["crm".into(), "1234".into(), "3m 12s".into()]);
        table.row(vec!["archive".into(), "0".into(), "-".into()]);
        assert_eq!(
            table.render(2),
            "  SINK     PENDING  OLDEST\n  crm         1234  3m 12s\n  archive        0  -\n"
        );
    }
}
