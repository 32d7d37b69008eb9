//! JUnit XML both ways: [`read_cases`] ingests the file a suite's command writes (any of the
//! common shapes: a `<testsuites>` or a bare `<testsuite>` root, nested suites, `<failure>`,
//! `<error>`, `<skipped>`), and [`to_junit`] writes a run as one `<testsuite>` per suite
//! shard (with quick-junit), its test cases the ingested ones, or one case for the command.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::report::{CaseStatus, RunReport, SuiteStatus, TestCaseReport};

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
            Event::Start(e) | Event::Empty(e) => {
                let status = match e.name().as_ref() {
                    b"failure" => Some(CaseStatus::Failed),
                    b"error" => Some(CaseStatus::Error),
                    b"skipped" => Some(CaseStatus::Skipped),
                    _ => None,
                };
                if let (Some(status), Some(case)) = (status, current.as_mut()) {
                    // A failure or error outranks a skip if a producer writes both.
                    if case.status == CaseStatus::Passed || status != CaseStatus::Skipped {
                        case.status = status;
                        case.message = attr(&e, b"message").or(case.message.take());
                    }
                }
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
                SuiteStatus::Passed => TestCaseStatus::success(),
                SuiteStatus::Flaky => {
                    let mut status = TestCaseStatus::success();
                    if let TestCaseStatus::Success { flaky_runs } = &mut status {
                        for _ in 1..suite.attempts {
                            flaky_runs.push(TestRerun::new(NonSuccessKind::Failure));
                        }
                    }
                    status
                }
                SuiteStatus::Skipped => TestCaseStatus::skipped(),
                SuiteStatus::Failed | SuiteStatus::TimedOut => {
                    TestCaseStatus::non_success(NonSuccessKind::Failure)
                }
                SuiteStatus::Error | SuiteStatus::Cancelled => {
                    TestCaseStatus::non_success(NonSuccessKind::Error)
                }
            };
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
    fn rejects_what_is_not_junit() {
        assert!(read_cases("<html></html>").is_err());
        assert!(read_cases("<testsuite><testcase").is_err());
    }
}
