"""Checks that the installed demo-lib is the version this suite needs and that its API works
as that version documents. Writes JUnit XML in the shape pytest's --junitxml writes.

Usage: python tests/check_api.py EXPECTED_VERSION OUT.xml
"""

import importlib.metadata
import os
import sys
import time
import xml.etree.ElementTree as ET


def check_version(expected):
    found = importlib.metadata.version("demo-lib")
    assert found == expected, f"demo-lib {found} installed, this suite needs {expected}"


def check_greet(expected):
    import demo_lib

    if expected.startswith("1."):
        assert demo_lib.greet("ptest") == "hello, ptest"
    else:
        assert demo_lib.greet(name="ptest") == {"greeting": "hello, ptest!"}


def main():
    expected, out = sys.argv[1], sys.argv[2]
    suite = ET.Element("testsuite", name="pytest")
    failures = 0
    for test in (check_version, check_greet):
        started = time.monotonic()
        case = ET.SubElement(suite, "testcase", classname="tests.check_api", name=test.__name__)
        try:
            test(expected)
            print(f"{test.__name__}: ok")
        except AssertionError as e:
            failures += 1
            ET.SubElement(case, "failure", message=str(e)).text = repr(e)
            print(f"{test.__name__}: FAILED: {e}", file=sys.stderr)
        case.set("time", "%.3f" % (time.monotonic() - started))
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    root = ET.Element("testsuites")
    root.append(suite)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
