"""Runs the unittest suite under tests/ and writes JUnit XML (standard library only).

Usage: python tools/junit_unittest.py OUT.xml

With PTEST_SHARD and PTEST_SHARDS set (ptest's `parallel = N`), runs only every N-th test,
starting at the shard's index. Exits 1 if any test failed or errored.
"""

import os
import sys
import time
import unittest
import xml.etree.ElementTree as ET


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


class Recorder(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []
        self._started = 0.0

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def _record(self, test, kind, message=None):
        self.cases.append((test, kind, message, time.monotonic() - self._started))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", str(err[1]))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", repr(err[1]))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)


def main():
    out = sys.argv[1]
    shard = int(os.environ.get("PTEST_SHARD", "0"))
    shards = int(os.environ.get("PTEST_SHARDS", "1"))
    tests = sorted(flatten(unittest.defaultTestLoader.discover("tests", top_level_dir=".")), key=str)
    mine = unittest.TestSuite(t for i, t in enumerate(tests) if i % shards == shard)
    result = unittest.TextTestRunner(resultclass=Recorder, verbosity=2).run(mine)

    root = ET.Element("testsuites", name="unittest")
    suite = ET.SubElement(root, "testsuite", name="tests shard %d/%d" % (shard, shards),
                          tests=str(len(result.cases)))
    for test, kind, message, seconds in result.cases:
        cls = type(test)
        case = ET.SubElement(suite, "testcase", classname=cls.__module__ + "." + cls.__name__,
                             name=test._testMethodName, time="%.6f" % seconds)
        if kind != "passed":
            ET.SubElement(case, kind, message=message or "")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
