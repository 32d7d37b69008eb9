#!/bin/sh
# One suite's work: three test cases that take a moment, written as JUnit XML to junit.xml.
# With FAIL_ON_ATTEMPT=N the last case fails on attempt N (ptest sets PTEST_ATTEMPT).
set -eu
suite="$PTEST_SUITE"
sleep 1
status=""
code=0
if [ "${FAIL_ON_ATTEMPT:-}" = "${PTEST_ATTEMPT:-1}" ]; then
    status='<failure message="connection reset (attempt '"$PTEST_ATTEMPT"')"/>'
    code=1
fi
cat > junit.xml <<XML
<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="$suite" tests="3">
  <testcase classname="$suite" name="test_basic" time="0.3"/>
  <testcase classname="$suite" name="test_edge_cases" time="0.3"/>
  <testcase classname="$suite" name="test_roundtrip" time="0.4">$status</testcase>
</testsuite></testsuites>
XML
echo "$suite: 3 tests, attempt ${PTEST_ATTEMPT:-1}"
exit "$code"
