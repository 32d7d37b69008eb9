//! The run as one self-contained HTML page (nothing fetched: inline SVG, style and script):
//! totals, a timeline of suite shards per worker slot, a chart of each environment's peak
//! memory and CPU time, a table of suites, the failures and output tails of those that did not
//! pass (retried attempts included), and a table of every test case (status filter, search,
//! sortable columns), drawn by a small script from the cases embedded as JSON and shown a page
//! at a time, so that 27,000 tests stay quick to filter.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::report::{CaseStatus, RunReport, SuiteReport, SuiteStatus, TestCaseReport};

/// Width of the charts' drawing area right of their labels, in SVG units.
const PLOT_WIDTH: f64 = 720.0;
const ROW_HEIGHT: f64 = 22.0;
/// A generous width of one character of the charts' 12px text, in SVG units.
const CHAR_WIDTH: f64 = 7.5;

/// Room on the left of a chart for the longest of `labels`, so none is clipped.
fn label_width<'a>(labels: impl Iterator<Item = &'a str>) -> f64 {
    let longest = labels.map(|l| l.chars().count()).max().unwrap_or(0);
    (longest as f64 * CHAR_WIDTH + 12.0).max(80.0)
}

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
    cases(&mut out, report);
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
    let label = label_width(std::iter::once(format!("worker {rows}").as_str()));
    let width = label + PLOT_WIDTH;
    let scale = PLOT_WIDTH / end;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height}\" \
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
        let x = label + secs(a) * scale;
        let w = ((secs(b) - secs(a)) * scale).max(1.0);
        let y = slot as f64 * ROW_HEIGHT + 2.0;
        let name = s.display_name();
        // A name that does not fit its bar is left to the bar's tooltip, never cut.
        let inside = if name.chars().count() as f64 * CHAR_WIDTH + 6.0 <= w {
            format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#fff\">{}</text>",
                x + 3.0,
                y + 13.0,
                esc(&name)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<g><title>{} {} {:.3}s → {:.3}s</title><rect x=\"{x:.1}\" y=\"{y:.1}\" \
             width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\" rx=\"2\"/>{inside}</g>",
            esc(&name),
            s.status,
            secs(a),
            secs(b),
            ROW_HEIGHT - 4.0,
            color(s.status),
        );
    }
    let axis = rows as f64 * ROW_HEIGHT + 18.0;
    let _ = writeln!(
        out,
        "<text x=\"{label:.1}\" y=\"{axis:.1}\">0s</text><text x=\"{:.1}\" y=\"{axis:.1}\" \
         text-anchor=\"end\">{end:.2}s</text></svg>",
        width - 2.0
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
    let names: Vec<String> = measured.iter().map(|m| m.0.display_name()).collect();
    let label = label_width(names.iter().map(String::as_str));
    // Each half leaves room after its longest bar for the value printed there.
    let value_room = 8.0 * CHAR_WIDTH;
    let half = PLOT_WIDTH / 2.0;
    let bar = half - value_room;
    let height = measured.len() as f64 * ROW_HEIGHT + 24.0;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{height}\" \
         role=\"img\" aria-label=\"peak memory and CPU time per suite\">\
         <text x=\"{label:.1}\" y=\"14\">peak memory (MiB)</text>\
         <text x=\"{:.1}\" y=\"14\">CPU time (s)</text>",
        label + PLOT_WIDTH,
        label + half
    );
    for (i, ((_, mem, cpu), name)) in measured.iter().zip(&names).enumerate() {
        let y = i as f64 * ROW_HEIGHT + 20.0;
        let _ = write!(
            out,
            "<text x=\"4\" y=\"{:.1}\">{}</text>",
            y + 14.0,
            esc(name)
        );
        if let Some(mem) = mem {
            let w = (*mem as f64 / max_mem as f64 * bar).max(1.0);
            let _ = write!(
                out,
                "<rect x=\"{label:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" \
                 fill=\"#4a7bd0\"><title>{:.1} MiB</title></rect><text x=\"{:.1}\" \
                 y=\"{:.1}\">{:.1}</text>",
                y + 2.0,
                ROW_HEIGHT - 6.0,
                mib(*mem),
                label + w + 3.0,
                y + 14.0,
                mib(*mem)
            );
        }
        if let Some(cpu) = cpu {
            let x = label + half;
            let w = (cpu / max_cpu * bar).max(1.0);
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
        let failed = s.test_cases.iter().filter(|c| c.is_failure()).count();
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
        for earlier in &s.retried {
            let _ = writeln!(
                out,
                "<h4>attempt {} {}: {}</h4>",
                earlier.attempt,
                earlier.status.label(),
                esc(earlier.reason.as_deref().unwrap_or(""))
            );
            failures(
                out,
                &earlier.failed_cases,
                &earlier.stdout_tail,
                &earlier.stderr_tail,
            );
        }
        if !s.retried.is_empty() {
            let _ = writeln!(
                out,
                "<h4>attempt {} {}: {}</h4>",
                s.attempts,
                s.status.label(),
                esc(s.reason.as_deref().unwrap_or(""))
            );
        }
        failures(out, &s.test_cases, &s.stdout_tail, &s.stderr_tail);
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

/// One attempt's failed cases (message and body) and output tails.
fn failures(out: &mut String, cases: &[TestCaseReport], stdout: &str, stderr: &str) {
    for c in cases.iter().filter(|c| c.is_failure()) {
        let _ = writeln!(
            out,
            "<p>{}: {}</p>",
            esc(&c.full_name()),
            esc(c.message.as_deref().unwrap_or("")),
        );
        if let Some(text) = &c.text {
            let _ = writeln!(out, "<pre>{}</pre>", esc(text));
        }
    }
    for (label, tail) in [("stdout", stdout), ("stderr", stderr)] {
        if !tail.trim().is_empty() {
            let _ = writeln!(out, "<p>{label}:</p><pre>{}</pre>", esc(tail));
        }
    }
}

/// Every test case of the run, one JSON row each (`[suite, test, status, seconds, message]`,
/// `flaky` for a case that failed in a retried attempt and passed), and the script that draws
/// them as a table a page at a time.
fn cases(out: &mut String, report: &RunReport) {
    let total: usize = report.suites.iter().map(|s| s.test_cases.len()).sum();
    if total == 0 {
        return;
    }
    let mut rows = Vec::with_capacity(total);
    for s in &report.suites {
        let suite = s.display_name();
        let retried: HashSet<(&Option<String>, &str)> = s
            .retried
            .iter()
            .flat_map(|a| &a.failed_cases)
            .map(|c| (&c.classname, c.name.as_str()))
            .collect();
        for c in &s.test_cases {
            let status = match c.status {
                CaseStatus::Passed if retried.contains(&(&c.classname, c.name.as_str())) => "flaky",
                CaseStatus::Passed => "passed",
                CaseStatus::Failed => "failed",
                CaseStatus::Error => "error",
                CaseStatus::Skipped => "skipped",
            };
            let message = match (&c.message, &c.text) {
                (Some(m), Some(t)) => format!("{m}\n{t}"),
                (Some(m), None) => m.clone(),
                (None, Some(t)) => t.clone(),
                (None, None) => String::new(),
            };
            rows.push(serde_json::json!([
                suite,
                c.full_name(),
                status,
                c.duration.map(|d| (d.as_secs_f64() * 1e4).round() / 1e4),
                message
            ]));
        }
    }
    // Inside <script>, only `</` could end the element early.
    let data = serde_json::to_string(&rows)
        .expect("rows serialize")
        .replace("</", "<\\/");
    let _ = writeln!(
        out,
        "<h2>Tests</h2>\n<p id=\"t-controls\"></p><table id=\"t-table\"><thead><tr>\
         <th data-k=\"0\">suite</th><th data-k=\"1\">test</th><th data-k=\"2\">status</th>\
         <th data-k=\"3\" class=\"num\">duration</th><th data-k=\"4\">message</th></tr></thead>\
         <tbody></tbody></table><p><button id=\"t-more\" hidden>show more</button></p>\
         <noscript><p>The table of {total} tests needs JavaScript; report.json has them \
         all.</p></noscript>\n<script type=\"application/json\" id=\"t-data\">{data}</script>\n\
         <script>{CASES_SCRIPT}</script>"
    );
}

/// Draws the tests table: status checkboxes with counts, a search over suite, test and
/// message, sorting by any column (click again to reverse), 500 rows at a time.
const CASES_SCRIPT: &str = r#"
(function () {
  var rows = JSON.parse(document.getElementById('t-data').textContent);
  var colors = {passed: '#2e9d4f', flaky: '#d9a400', failed: '#d0392b', error: '#d0392b',
                skipped: '#9aa0a6'};
  var order = {failed: 0, error: 1, flaky: 2, skipped: 3, passed: 4};
  var counts = {}, on = {}, key = 2, dir = 1, shown = 500, query = '';
  rows.forEach(function (r) { counts[r[2]] = (counts[r[2]] || 0) + 1; });
  var controls = document.getElementById('t-controls');
  Object.keys(order).forEach(function (st) {
    if (!counts[st]) return;
    on[st] = true;
    var label = document.createElement('label');
    label.style.marginRight = '1em';
    var box = document.createElement('input');
    box.type = 'checkbox'; box.checked = true;
    box.onchange = function () { on[st] = box.checked; shown = 500; draw(); };
    label.appendChild(box);
    label.appendChild(document.createTextNode(' ' + st + ' (' + counts[st] + ')'));
    controls.appendChild(label);
  });
  var search = document.createElement('input');
  search.type = 'search'; search.placeholder = 'search tests, suites, messages';
  search.size = 40;
  search.oninput = function () { query = search.value.toLowerCase(); shown = 500; draw(); };
  controls.appendChild(search);
  var info = document.createElement('span');
  info.style.marginLeft = '1em';
  controls.appendChild(info);
  var body = document.querySelector('#t-table tbody');
  var more = document.getElementById('t-more');
  more.onclick = function () { shown += 500; draw(); };
  document.querySelectorAll('#t-table th').forEach(function (th) {
    th.style.cursor = 'pointer';
    th.onclick = function () {
      var k = +th.dataset.k;
      dir = k === key ? -dir : 1; key = k; draw();
    };
  });
  function esc(s) {
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  }
  function value(r) {
    if (key === 2) return order[r[2]];
    if (key === 3) return r[3] === null ? -1 : r[3];
    return r[key];
  }
  function draw() {
    var list = rows.filter(function (r) {
      return on[r[2]] && (!query || (r[0] + ' ' + r[1] + ' ' + r[4]).toLowerCase()
        .indexOf(query) >= 0);
    });
    list.sort(function (a, b) {
      var x = value(a), y = value(b);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    var html = [];
    list.slice(0, shown).forEach(function (r) {
      var msg = r[4] ? '<pre style="white-space:pre-wrap;margin:0;max-height:12em;overflow:auto">' +
        esc(r[4]) + '</pre>' : '';
      html.push('<tr><td>' + esc(r[0]) + '</td><td>' + esc(r[1]) +
        '</td><td><span class="st" style="background:' + colors[r[2]] + '">' + r[2] +
        '</span></td><td class="num">' + (r[3] === null ? '' : r[3].toFixed(3) + 's') +
        '</td><td>' + msg + '</td></tr>');
    });
    body.innerHTML = html.join('');
    info.textContent = 'showing ' + Math.min(shown, list.length) + ' of ' + list.length +
      ' matching (' + rows.length + ' tests)';
    more.hidden = list.length <= shown;
  }
  draw();
})();
"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::tests::report;

    /// A flaky suite of `n` cases: case 0 failed then passed, case 1 fails with a message
    /// that tries to end the script element.
    fn big(n: usize) -> RunReport {
        let cases: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let (status, message) = match i {
                    1 => ("failed", Some("</script><b>x</b>\nline 2")),
                    _ => ("passed", None),
                };
                serde_json::json!({"name": format!("test_{i}"), "classname": "tests.mod",
                    "status": status, "duration": 0.001, "message": message})
            })
            .collect();
        report(serde_json::json!({
            "name": "a-suite-with-a-rather-long-name", "shard": 3, "shards": 4,
            "status": "failed", "attempts": 2, "test_cases": cases,
            "retried": [{"attempt": 1, "status": "failed", "reason": "run exited with code 1",
                "exit_code": 1, "duration": 0.5, "stdout_tail": "first try\n",
                "stderr_tail": "", "failed_cases": [{"name": "test_0", "classname": "tests.mod",
                "status": "failed", "duration": null, "message": "retried boom"}]}],
            "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:01Z",
            "slot": 0,
            "resources": {"memory_peak_bytes": 1048576, "cpu_seconds": 0.5}
        }))
    }

    /// The JSON rows embedded in `page`.
    fn embedded(page: &str) -> &str {
        let from = page
            .split(r#"<script type="application/json" id="t-data">"#)
            .nth(1)
            .unwrap();
        from.split("</script>").next().unwrap()
    }

    #[test]
    fn every_case_is_in_the_tests_table_and_retried_failures_are_shown() {
        let page = to_html(&big(27_000));
        // The retried attempt's failure, and the case it made flaky.
        assert!(page.contains("attempt 1 FAIL") && page.contains("retried boom"));
        assert!(
            page.contains(r#"["a-suite-with-a-rather-long-name[3]","tests.mod.test_0","flaky""#)
        );
        let data = embedded(&page);
        let rows: Vec<serde_json::Value> = serde_json::from_str(data).unwrap();
        assert_eq!(rows.len(), 27_000);
        assert_eq!(rows[1][4], "</script><b>x</b>\nline 2");
        // Bounded: well under 200 bytes a test.
        assert!(page.len() < 27_000 * 200, "{} bytes", page.len());
    }

    #[test]
    fn chart_labels_get_the_room_they_need() {
        let page = to_html(&big(3));
        let name = "a-suite-with-a-rather-long-name[3]";
        let room = label_width(std::iter::once(name));
        assert!(room >= name.len() as f64 * 7.0, "{room}");
        // The memory bar starts right of the label column.
        assert!(page.contains(&format!("<rect x=\"{room:.1}\"")), "{page}");
    }

    /// The table's script runs against a minimal DOM in node, when node is here: it draws
    /// the first page of rows, filters by status and search, and sorts.
    #[test]
    fn the_tests_table_script_filters_searches_and_pages() {
        if std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: no node to run the table's script");
            return;
        }
        let page = to_html(&big(1200));
        let data = embedded(&page);
        let harness = format!("{NODE_DOM}\nvar DATA = {data:?};\n{CASES_SCRIPT}\n{NODE_CHECKS}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.js");
        std::fs::write(&file, harness).unwrap();
        let out = std::process::Command::new("node")
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout,
            "showing 500 of 1200 matching (1200 tests)\nfirst failed\n\
             showing 1 of 1 matching (1200 tests)\nshowing 0 of 0 matching (1200 tests)\n\
             showing 1000 of 1200 matching (1200 tests)\n"
        );
    }

    /// Just enough of a DOM for the table's script.
    const NODE_DOM: &str = r#"
function el(tag) {
  return {tag: tag, style: {}, children: [], dataset: {}, hidden: false, innerHTML: '',
    appendChild: function (c) { this.children.push(c); return c; }};
}
var nodes = {'t-controls': el('p'), 't-more': el('button'), 'tbody': el('tbody')};
var ths = [0, 1, 2, 3, 4].map(function (k) { var t = el('th'); t.dataset.k = String(k); return t; });
var document = {
  getElementById: function (id) { return id === 't-data' ? {textContent: DATA} : nodes[id]; },
  querySelector: function () { return nodes['tbody']; },
  querySelectorAll: function () { return ths; },
  createElement: el,
  createTextNode: function (t) { return {text: t}; },
};
"#;

    /// Prints what a user would see after each action.
    const NODE_CHECKS: &str = r#"
var info = nodes['t-controls'].children[nodes['t-controls'].children.length - 1];
var search = nodes['t-controls'].children[nodes['t-controls'].children.length - 2];
console.log(info.textContent);
console.log(nodes['tbody'].innerHTML.indexOf('failed') < nodes['tbody'].innerHTML.indexOf('passed') ? 'first failed' : 'first passed');
search.value = 'TESTS.MOD.TEST_1199'; search.oninput();
console.log(info.textContent);
var boxes = nodes['t-controls'].children.slice(0, -2).map(function (l) { return l.children[0]; });
search.value = ''; search.oninput();
boxes.forEach(function (b) { b.checked = false; b.onchange(); });
console.log(info.textContent);
boxes.forEach(function (b) { b.checked = true; b.onchange(); });
nodes['t-more'].onclick();
console.log(info.textContent);
"#;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
