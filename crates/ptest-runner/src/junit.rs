//! JUnit XML both ways: [`read_cases`] ingests the file a suite's command writes (any of the
//! common shapes: a `<testsuites>` or a bare `<testsuite>` root, nested suites, `<failure>`,
//! `<error>`, `<skipped>`), and [`to_junit`] writes a run as one `<testsuite>` per suite
//! shard (with quick-junit), its test cases the ingested ones, or one case for the command.

use std::collections::HashMap;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::report::{CASE_TEXT_MAX, CaseStatus, RunReport, SuiteStatus, TestCaseReport};

/// A JUnit file that cannot be read as one.
#[derive(Debug, thiserror::Error)]
#[error("not valid JUnit XML at byte {position}: {message}")]
pub struct JunitError {
    /// Byte offset in the file.
    pub position: u64,
    /// What the XML parser said.
    pub message: String,
}

/// The test cases of a JUnit XML document, in document order.
pub fn read_cases(xml: &str) -> Result<Vec<TestCaseReport>, JunitError> {
    let mut reader = Reader::from_str(xml);
    let mut cases = Vec::new();
    let mut current: Option<TestCaseReport> = None;
    let mut saw_root = false;
    // Inside the `<failure>` or `<error>` whose body becomes the case's `text`.
    let mut in_body = false;
    loop {
        let event = reader.read_event().map_err(|e| JunitError {
            position: reader.error_position(),
            message: e.to_string(),
        })?;
        match event {
            Event::Start(e) | Event::Empty(e)
                if matches!(e.name().as_ref(), b"testsuites" | b"testsuite") =>
            {
                saw_root = true;
            }
            Event::Start(e) if e.name().as_ref() == b"testcase" => {
                current = Some(case_from(&e));
            }
            Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                cases.push(case_from(&e));
            }
            Event::Start(e) => in_body = mark(current.as_mut(), &e),
            Event::Empty(e) => {
                mark(current.as_mut(), &e);
            }
            Event::Text(t) if in_body => {
                if let (Some(case), Ok(text)) = (current.as_mut(), t.decode()) {
                    append_bounded(case, &text);
                }
            }
            // `&lt;` and `&#10;` come apart from the text around them.
            Event::GeneralRef(r) if in_body => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    _ => r.decode().ok().and_then(|name| {
                        quick_xml::escape::resolve_predefined_entity(&name).map(str::to_owned)
                    }),
                };
                if let (Some(case), Some(text)) = (current.as_mut(), resolved) {
                    append_bounded(case, &text);
                }
            }
            Event::CData(t) if in_body => {
                if let Some(case) = current.as_mut() {
                    append_bounded(case, &String::from_utf8_lossy(&t));
                }
            }
            Event::End(e) if matches!(e.name().as_ref(), b"failure" | b"error") => {
                in_body = false;
            }
            Event::End(e) if e.name().as_ref() == b"testcase" => {
                cases.extend(current.take());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(JunitError {
            position: 0,
            message: "no <testsuites> or <testsuite> element".into(),
        });
    }
    Ok(cases)
}

/// Applies a `<failure>`, `<error>` or `<skipped>` element to the open case; whether it is a
/// failure or error, whose body is the case's `text`.
fn mark(case: Option<&mut TestCaseReport>, e: &BytesStart<'_>) -> bool {
    let status = match e.name().as_ref() {
        b"failure" => CaseStatus::Failed,
        b"error" => CaseStatus::Error,
        b"skipped" => CaseStatus::Skipped,
        _ => return false,
    };
    let Some(case) = case else {
        return false;
    };
    // A failure or error outranks a skip if a producer writes both.
    if case.status == CaseStatus::Passed || status != CaseStatus::Skipped {
        case.status = status;
        case.message = attr(e, b"message").or(case.message.take());
    }
    status != CaseStatus::Skipped
}

/// Appends `text` to the case's body, up to [`CASE_TEXT_MAX`] bytes.
fn append_bounded(case: &mut TestCaseReport, text: &str) {
    let body = case.text.get_or_insert_with(String::new);
    let room = CASE_TEXT_MAX.saturating_sub(body.len());
    let mut end = room.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    body.push_str(&text[..end]);
}

fn attr(e: &BytesStart<'_>, key: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == key)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn case_from(e: &BytesStart<'_>) -> TestCaseReport {
    TestCaseReport {
        name: attr(e, b"name").unwrap_or_default(),
        classname: attr(e, b"classname"),
        status: CaseStatus::Passed,
        duration: attr(e, b"time")
            .and_then(|t| t.trim().parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s).ok()),
        message: None,
        text: None,
    }
}

/// The run as JUnit XML: one `<testsuite>` per suite shard.
pub fn to_junit(report: &RunReport) -> String {
    let mut out = Report::new(format!("ptest run {}", report.run_id));
    out.set_time(report.duration);
    for suite in &report.suites {
        let mut ts = TestSuite::new(suite.display_name());
        ts.set_time(suite.duration);
        if suite.test_cases.is_empty() {
            let mut status = match suite.status {
                SuiteStatus::Passed | SuiteStatus::Flaky => TestCaseStatus::success(),
                SuiteStatus::Skipped => TestCaseStatus::skipped(),
                SuiteStatus::Failed | SuiteStatus::TimedOut => {
                    TestCaseStatus::non_success(NonSuccessKind::Failure)
                }
                SuiteStatus::Error | SuiteStatus::Cancelled => {
                    TestCaseStatus::non_success(NonSuccessKind::Error)
                }
            };
            if suite.status == SuiteStatus::TimedOut {
                status.set_type("timeout");
            }
            let message = match (&suite.reason, suite.exit_code) {
                (Some(reason), _) => Some(reason.clone()),
                (None, Some(code)) if !suite.status.is_success() => {
                    Some(format!("exit code {code}"))
                }
                _ => None,
            };
            if let Some(message) = message {
                status.set_message(message);
            }
            // Each retried attempt: `<flakyFailure>` in a suite that passed at last,
            // `<rerunFailure>` in one that did not.
            status.add_reruns(suite.retried.iter().map(|earlier| {
                let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                rerun.set_time(earlier.duration);
                if earlier.status == SuiteStatus::TimedOut {
                    rerun.set_type("timeout");
                }
                if let Some(reason) = &earlier.reason {
                    rerun.set_message(reason.clone());
                }
                if !earlier.stdout_tail.is_empty() {
                    rerun.set_system_out(earlier.stdout_tail.clone());
                }
                if !earlier.stderr_tail.is_empty() {
                    rerun.set_system_err(earlier.stderr_tail.clone());
                }
                rerun
            }));
            let mut case = TestCase::new(suite.name.clone(), status);
            case.set_classname(suite.display_name());
            case.set_time(suite.duration);
            if !suite.stdout_tail.is_empty() {
                case.set_system_out(suite.stdout_tail.clone());
            }
            if !suite.stderr_tail.is_empty() {
                case.set_system_err(suite.stderr_tail.clone());
            }
            ts.add_test_case(case);
        } else {
            // The failures of retried attempts, by test, looked up once per case.
            let mut earlier: HashMap<(&Option<String>, &str), Vec<&TestCaseReport>> =
                HashMap::new();
            for f in suite.retried.iter().flat_map(|a| &a.failed_cases) {
                earlier
                    .entry((&f.classname, f.name.as_str()))
                    .or_default()
                    .push(f);
            }
            for c in &suite.test_cases {
                let mut status = match c.status {
                    CaseStatus::Passed => TestCaseStatus::success(),
                    CaseStatus::Failed => TestCaseStatus::non_success(NonSuccessKind::Failure),
                    CaseStatus::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
                    CaseStatus::Skipped => TestCaseStatus::skipped(),
                };
                if let Some(m) = &c.message {
                    status.set_message(m.clone());
                }
                if let Some(text) = &c.text {
                    status.set_description(text.clone());
                }
                let retried = earlier.get(&(&c.classname, c.name.as_str()));
                status.add_reruns(retried.into_iter().flatten().map(|f| {
                    let mut rerun = TestRerun::new(match f.status {
                        CaseStatus::Error => NonSuccessKind::Error,
                        _ => NonSuccessKind::Failure,
                    });
                    if let Some(m) = &f.message {
                        rerun.set_message(m.clone());
                    }
                    if let Some(text) = &f.text {
                        rerun.set_stack_trace(text.clone());
                    }
                    rerun
                }));
                let mut case = TestCase::new(c.name.clone(), status);
                if let Some(class) = &c.classname {
                    case.set_classname(class.clone());
                }
                if let Some(t) = c.duration {
                    case.set_time(t);
                }
                ts.add_test_case(case);
            }
        }
        out.add_test_suite(ts);
    }
    out.to_string()
        .expect("JUnit reports serialize to a string")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::tests::report;

    #[test]
    fn reads_cases_from_a_bare_testsuite() {
        let xml = r#"<?xml version="1.0"?>
<testsuite name="t" tests="4">
  <testcase classname="m.A" name="ok" time="0.5"/>
  <testcase classname="m.A" name="bad"><failure message="1 != 2">trace</failure></testcase>
  <testcase name="boom"><error message="KeyError"/></testcase>
  <testcase name="later"><skipped message="not now"/></testcase>
</testsuite>"#;
        let cases = read_cases(xml).unwrap();
        let statuses: Vec<_> = cases.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            [
                CaseStatus::Passed,
                CaseStatus::Failed,
                CaseStatus::Error,
                CaseStatus::Skipped
            ]
        );
        assert_eq!(cases[0].duration, Some(Duration::from_millis(500)));
        assert_eq!(cases[1].message.as_deref(), Some("1 != 2"));
        assert_eq!(cases[1].classname.as_deref(), Some("m.A"));
    }

    #[test]
    fn keeps_the_body_of_a_failure_with_its_line_breaks() {
        let xml = "<testsuite><testcase name=\"t\"><failure message=\"m\">line 1\n\
                   a &lt; b&#10;<![CDATA[<raw>]]></failure></testcase></testsuite>";
        let cases = read_cases(xml).unwrap();
        assert_eq!(cases[0].text.as_deref(), Some("line 1\na < b\n<raw>"));
        let long = format!(
            "<testsuite><testcase name=\"t\"><error>{}</error></testcase></testsuite>",
            "é".repeat(CASE_TEXT_MAX)
        );
        let text = read_cases(&long).unwrap()[0].text.clone().unwrap();
        assert!(text.len() <= CASE_TEXT_MAX && text.len() > CASE_TEXT_MAX - 2);
    }

    fn attempt(status: &str, cases: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "attempt": 1, "status": status, "reason": "run exited with code 1",
            "exit_code": 1, "duration": 0.5, "stdout_tail": "first try\n",
            "stderr_tail": "", "failed_cases": cases
        })
    }

    #[test]
    fn retried_failures_are_flaky_or_rerun_failures_and_timeouts_say_so() {
        let flaky_case = serde_json::json!([{"name": "t", "classname": "m", "status": "failed",
            "duration": null, "message": "boom", "text": "trace"}]);
        let xml = to_junit(&report(serde_json::json!({
            "status": "flaky", "attempts": 2,
            "retried": [attempt("failed", flaky_case.clone())],
            "test_cases": [{"name": "t", "classname": "m", "status": "passed",
                "duration": 0.1, "message": null}],
        })));
        assert!(
            xml.contains("<flakyFailure") && xml.contains("boom"),
            "{xml}"
        );
        assert!(xml.contains("trace"), "{xml}");

        let mut still = flaky_case.clone();
        still[0]["message"] = "again".into();
        let xml = to_junit(&report(serde_json::json!({
            "status": "failed", "attempts": 2,
            "retried": [attempt("failed", flaky_case)],
            "test_cases": still,
        })));
        assert!(
            xml.contains("<rerunFailure") && xml.contains("again"),
            "{xml}"
        );

        let xml = to_junit(&report(serde_json::json!({
            "status": "timed_out", "attempts": 2, "reason": "run timed out after 1s",
            "retried": [attempt("timed_out", serde_json::json!([]))],
        })));
        assert!(xml.contains(r#"type="timeout""#), "{xml}");
        assert!(
            xml.contains("<rerunFailure") && xml.contains("first try"),
            "{xml}"
        );
    }

    #[test]
    fn rejects_what_is_not_junit() {
        assert!(read_cases("<html></html>").is_err());
        assert!(read_cases("<testsuite><testcase").is_err());
    }
}
