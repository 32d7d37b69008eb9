"""examples/pytest: its tests pass through the plugin, directly and as a `ptest run` suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pytest"


def test_example_tests_pass_under_pytest(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout


def test_example_passes_as_a_ptest_run_suite(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        [str(bin_dir / "ptest"), "run", "--project", str(EXAMPLE), "--json=-"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    (suite,) = report["suites"]
    assert suite["status"] == "passed"
    assert sorted(c["status"] for c in suite["test_cases"]) == ["passed"] * 3
