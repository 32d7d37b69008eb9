"""The stubs match the runtime module, and the package type-checks strictly with them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from conftest import require


def test_stubs_match_the_extension_module(tmp_path: Path) -> None:
    require(importlib.util.find_spec("mypy"), "mypy is not installed")
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "ptest._native"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # The installed package, not the source tree beside the tests.
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_passes_mypy_strict(tmp_path: Path) -> None:
    require(importlib.util.find_spec("mypy"), "mypy is not installed")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "-p", "ptest"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # The installed package, not the source tree beside the tests.
    )
    assert out.returncode == 0, out.stdout + out.stderr
