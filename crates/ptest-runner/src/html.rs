//! The run as one self-contained HTML page (no scripts, fonts or images fetched): totals, a
//! timeline of suite shards per worker slot, a chart of each environment's peak memory and
//! CPU time (inline SVG), a table of suites and the output tails of those that did not pass.

use std::fmt::Write as _;

use crate::report::{CaseStatus, RunReport, SuiteReport, SuiteStatus};

/// Width of the charts' drawing area, in SVG units.
const CHART_WIDTH: f64 = 900.0;
/// Room on the left of a chart for labels.
const LABEL_WIDTH: f64 = 180.0;
const ROW_HEIGHT: f64 = 22.0;

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn color(status: SuiteStatus) -> &'static str {
    match status {
        SuiteStatus::Passed => "#2e9d4f",
        SuiteStatus::Flaky => "#d9a400",
        SuiteStatus::Skipped => "#9aa0a6",
        SuiteStatus::Cancelled => "#7b61c4",
        _ => "#d0392b",
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The run as a self-contained HTML document.
pub fn to_html(report: &RunReport) -> String {
    let mut out = String::new();
    let title = format!("ptest run {}", report.run_id);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse}}td,th{{padding:.25em .6em;border-bottom:1px solid #ddd;\
         text-align:left;vertical-align:top}}.num{{text-align:right}}\
         .st{{color:#fff;border-radius:3px;padding:0 .4em;font-size:.85em}}\
         pre{{background:#f5f5f5;padding:.5em;overflow-x:auto;max-height:30em}}\
         svg text{{font-size:12px;font-family:system-ui,sans-serif}}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", esc(&title));
    let passed = report.count(SuiteStatus::Passed);
    let flaky = report.count(SuiteStatus::Flaky);
    let _ = writeln!(
        out,
        "<p>Project <code>{}</code>, started {}, took {:.3}s, {} at a time: <b>{}</b> suite \
         shard(s), {} passed, {} flaky, {} failed, {} timed out, {} errors, {} skipped, {} \
         cancelled{}{}.</p>",
        esc(&report.project),
        esc(&report.started_at.to_string()),
        report.duration.as_secs_f64(),
        report.jobs,
        report.suites.len(),
        passed,
        flaky,
        report.count(SuiteStatus::Failed),
        report.count(SuiteStatus::TimedOut),
        report.count(SuiteStatus::Error),
        report.count(SuiteStatus::Skipped),
        report.count(SuiteStatus::Cancelled),
        if report.cancelled { " (cancelled)" } else { "" },
        if report.timed_out {
            " (run timeout)"
        } else {
            ""
        },
    );
    timeline(&mut out, report);
    resources(&mut out, report);
    table(&mut out, report);
    details(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

/// One row per worker slot, one bar per suite shard from its start to its end.
fn timeline(out: &mut String, report: &RunReport) {
    let ran: Vec<&SuiteReport> = report
        .suites
        .iter()
        .filter(|s| s.started_at.is_some() && s.ended_at.is_some() && s.slot.is_some())
        .collect();
    out.push_str("<h2>Timeline</h2>\n");
    if ran.is_empty() {
        out.push_str("<p>No suite ran.</p>\n");
        return;
    }
    let start = report.started_at;
    let secs = |t: jiff::Timestamp| (t.as_millisecond() - start.as_millisecond()) as f64 / 1e3;
    let end = ran
        .iter()
        .filter_map(|s| s.ended_at.map(secs))
        .fold(report.duration.as_secs_f64(), f64::max)
        .max(0.001);
    let rows = ran.iter().filter_map(|s| s.slot).max().unwrap_or(0) + 1;
    let height = rows as f64 * ROW_HEIGHT + 30.0;
    let scale = (CHART_WIDTH - LABEL_WIDTH) / end;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" \
         role=\"img\" aria-label=\"suites per worker over time\">"
    );
    for row in 0..rows {
        let y = row as f64 * ROW_HEIGHT;
        let _ = writeln!(
            out,
            "<text x=\"4\" y=\"{:.1}\">worker {row}</text>",
            y + 15.0
        );
    }
    for s in &ran {
        let (Some(a), Some(b), Some(slot)) = (s.started_at, s.ended_at, s.slot) else {
            continue;
        };
        let x = LABEL_WIDTH + secs(a) * scale;
        let w = ((secs(b) - secs(a)) * scale).max(1.0);
        let y = slot as f64 * ROW_HEIGHT + 2.0;
        let _ = writeln!(
            out,
            "<g><title>{} {} {:.3}s → {:.3}s</title><rect x=\"{x:.1}\" y=\"{y:.1}\" \
             width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\" rx=\"2\"/><text x=\"{:.1}\" \
             y=\"{:.1}\" fill=\"#fff\">{}</text></g>",
            esc(&s.display_name()),
            s.status,
            secs(a),
            secs(b),
            ROW_HEIGHT - 4.0,
            color(s.status),
            x + 3.0,
            y + 13.0,
            esc(&s.display_name()),
        );
    }
    let axis = rows as f64 * ROW_HEIGHT + 18.0;
    let _ = writeln!(
        out,
        "<text x=\"{LABEL_WIDTH}\" y=\"{axis:.1}\">0s</text><text x=\"{:.1}\" y=\"{axis:.1}\" \
         text-anchor=\"end\">{end:.2}s</text></svg>",
        CHART_WIDTH - 2.0
    );
}

/// Bars of each environment's peak memory and CPU seconds.
fn resources(out: &mut String, report: &RunReport) {
    out.push_str("<h2>Resources</h2>\n");
    let measured: Vec<(&SuiteReport, Option<u64>, Option<f64>)> = report
        .suites
        .iter()
        .filter_map(|s| {
            let r = s.resources.as_ref()?;
            Some((s, r.memory_peak_bytes.or(r.memory_bytes), r.cpu_seconds))
        })
        .collect();
    if measured.is_empty() {
        out.push_str("<p>No environment was measured.</p>\n");
        return;
    }
    let max_mem = measured
        .iter()
        .filter_map(|m| m.1)
        .max()
        .unwrap_or(0)
        .max(1);
    let max_cpu = measured
        .iter()
        .filter_map(|m| m.2)
        .fold(0.0, f64::max)
        .max(1e-3);
    let half = (CHART_WIDTH - LABEL_WIDTH) / 2.0 - 10.0;
    let height = measured.len() as f64 * ROW_HEIGHT + 24.0;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" \
         role=\"img\" aria-label=\"peak memory and CPU time per suite\">\
         <text x=\"{LABEL_WIDTH}\" y=\"14\">peak memory (MiB)</text>\
         <text x=\"{:.1}\" y=\"14\">CPU time (s)</text>",
        LABEL_WIDTH + half + 20.0
    );
    for (i, (s, mem, cpu)) in measured.iter().enumerate() {
        let y = i as f64 * ROW_HEIGHT + 20.0;
        let _ = write!(
            out,
            "<text x=\"4\" y=\"{:.1}\">{}</text>",
            y + 14.0,
            esc(&s.display_name())
        );
        if let Some(mem) = mem {
            let w = (*mem as f64 / max_mem as f64 * half).max(1.0);
            let _ = write!(
                out,
                "<rect x=\"{LABEL_WIDTH}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" \
                 fill=\"#4a7bd0\"><title>{:.1} MiB</title></rect><text x=\"{:.1}\" \
                 y=\"{:.1}\">{:.1}</text>",
                y + 2.0,
                ROW_HEIGHT - 6.0,
                mib(*mem),
                LABEL_WIDTH + w + 3.0,
                y + 14.0,
                mib(*mem)
            );
        }
        if let Some(cpu) = cpu {
            let x = LABEL_WIDTH + half + 20.0;
            let w = (cpu / max_cpu * (half - 40.0)).max(1.0);
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" \
                 fill=\"#e07b39\"><title>{cpu:.3} s</title></rect><text x=\"{:.1}\" \
                 y=\"{:.1}\">{cpu:.2}</text>",
                y + 2.0,
                ROW_HEIGHT - 6.0,
                x + w + 3.0,
                y + 14.0,
            );
        }
        out.push('\n');
    }
    out.push_str("</svg>\n");
}

fn table(out: &mut String, report: &RunReport) {
    out.push_str(
        "<h2>Suites</h2>\n<table><tr><th>suite</th><th>status</th><th>attempts</th>\
         <th class=\"num\">duration</th><th>worker</th><th>environment</th><th>tests</th>\
         <th class=\"num\">peak memory</th><th class=\"num\">CPU</th><th>notes</th></tr>\n",
    );
    for s in &report.suites {
        let failed = s
            .test_cases
            .iter()
            .filter(|c| matches!(c.status, CaseStatus::Failed | CaseStatus::Error))
            .count();
        let tests = if s.test_cases.is_empty() {
            String::new()
        } else {
            format!("{} ({failed} failed)", s.test_cases.len())
        };
        let usage = s.resources.as_ref();
        let mem = usage
            .and_then(|r| r.memory_peak_bytes.or(r.memory_bytes))
            .map(|b| format!("{:.1} MiB", mib(b)))
            .unwrap_or_default();
        let cpu = usage
            .and_then(|r| r.cpu_seconds)
            .map(|c| format!("{c:.2}s"))
            .unwrap_or_default();
        let mut notes: Vec<String> = s.reason.iter().cloned().collect();
        notes.extend(s.warnings.iter().map(|w| format!("warning: {w}")));
        if s.env_kept {
            notes.push("environment kept".into());
        }
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><span class=\"st\" style=\"background:{}\">{}</span></td>\
             <td class=\"num\">{}</td><td class=\"num\">{:.3}s</td><td class=\"num\">{}</td>\
             <td>{}</td><td>{}</td><td class=\"num\">{mem}</td><td class=\"num\">{cpu}</td>\
             <td>{}</td></tr>",
            esc(&s.display_name()),
            color(s.status),
            s.status,
            s.attempts,
            s.duration.as_secs_f64(),
            s.slot.map(|n| n.to_string()).unwrap_or_default(),
            esc(s.env_name.as_deref().unwrap_or("")),
            tests,
            esc(&notes.join("; ")),
        );
    }
    out.push_str("</table>\n");
}

/// Failed cases and output tails of every suite that did not pass.
fn details(out: &mut String, report: &RunReport) {
    for s in report.suites.iter().filter(|s| {
        !s.status.is_success() && s.status != SuiteStatus::Skipped || s.status == SuiteStatus::Flaky
    }) {
        let _ = writeln!(
            out,
            "<details open><summary><b>{} {}</b></summary>",
            s.status.label(),
            esc(&s.display_name())
        );
        for c in s
            .test_cases
            .iter()
            .filter(|c| matches!(c.status, CaseStatus::Failed | CaseStatus::Error))
        {
            let _ = writeln!(
                out,
                "<p>{}{}: {}</p>",
                c.classname
                    .as_deref()
                    .map(|c| format!("{}.", esc(c)))
                    .unwrap_or_default(),
                esc(&c.name),
                esc(c.message.as_deref().unwrap_or("")),
            );
        }
        for (label, tail) in [("stdout", &s.stdout_tail), ("stderr", &s.stderr_tail)] {
            if !tail.trim().is_empty() {
                let _ = writeln!(out, "<p>{label}:</p><pre>{}</pre>", esc(tail));
            }
        }
        if !s.output_files.is_empty() {
            out.push_str("<p>whole output:");
            for file in &s.output_files {
                let path = esc(&file.display().to_string());
                let name = esc(&file.file_name().unwrap_or_default().to_string_lossy());
                let _ = write!(out, " <a href=\"file://{path}\">{name}</a>");
            }
            out.push_str("</p>\n");
        }
        out.push_str("</details>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
