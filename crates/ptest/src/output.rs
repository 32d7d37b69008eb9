//! Printing: aligned tables for people, JSON for programs, errors on stderr. Colors follow
//! NO_COLOR and whether the stream is a terminal (anstream strips them otherwise).

use std::fmt::Write as _;
use std::io::Write;

use anstyle::{AnsiColor, Style};
use ptest_core::EnvironmentStatus;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("output types serialize to JSON");
    let _ = writeln!(anstream::stdout(), "{text}");
}

/// Prints an error and its causes on stderr.
pub fn error(e: &dyn std::error::Error) {
    let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    let mut text = format!("{red}error{red:#}: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        // Most messages name their cause already ("reading X: No such file"): only what
        // they do not say is added.
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(&format!("\n  caused by: {said}"));
        }
        source = cause.source();
    }
    let _ = writeln!(anstream::stderr(), "{text}");
}

/// The style of a status word.
pub fn status_style(status: EnvironmentStatus) -> Style {
    let color = match status {
        EnvironmentStatus::Active => AnsiColor::Green,
        EnvironmentStatus::Error => AnsiColor::Red,
        _ => AnsiColor::Yellow,
    };
    Style::new().fg_color(Some(color.into()))
}

/// A table printed with columns aligned; cells may carry a style.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<(String, Style)>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: Vec<&'static str>) -> Self {
        Self {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| (c, Style::new())).collect());
    }

    /// Adds a row of styled cells.
    pub fn styled_row(&mut self, cells: Vec<(String, Style)>) {
        self.rows.push(cells);
    }

    /// Prints it on stdout, in one write: a line-buffered stdout would make a system call
    /// per row, the largest per-environment cost of `env list`.
    pub fn print(&self) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, (cell, _)) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let bold = Style::new().bold();
        let last = widths.len().saturating_sub(1);
        let mut text = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = (&str, &Style)>| {
            let start = text.len();
            for (i, (cell, style)) in cells.enumerate() {
                let pad = if i == last {
                    0
                } else {
                    widths[i] + 2 - cell.chars().count()
                };
                let _ = write!(text, "{style}{cell}{style:#}{:pad$}", "");
            }
            let end = text[start..].trim_end().len();
            text.truncate(start + end);
            text.push('\n');
        };
        line(&mut self.header.iter().map(|h| (*h, &bold)));
        for row in &self.rows {
            line(&mut row.iter().map(|(cell, style)| (cell.as_str(), style)));
        }
        let _ = anstream::stdout().lock().write_all(text.as_bytes());
    }
}

/// A byte count as `1.5M`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// How long ago `t` was, like `5m` or `2h`.
pub fn age(t: jiff::Timestamp) -> String {
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}
