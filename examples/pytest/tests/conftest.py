"""Wheels of a small library, `demo_lib`, one per version, made on the spot: the
environments install them with no network."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_lib_wheel(tmp_path_factory: pytest.TempPathFactory):
    """`demo_lib_wheel(version)` is the path of a wheel of demo_lib at that version."""
    directory = tmp_path_factory.mktemp("wheels")

    def make(version: str) -> Path:
        dist = f"demo_lib-{version}"
        path = directory / f"{dist}-py3-none-any.whl"
        if path.exists():
            return path
        files = {
            "demo_lib.py": f'__version__ = "{version}"\n',
            f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: demo_lib\nVersion: {version}\n",
            f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        }
        record = "".join(f"{name},,\n" for name in [*files, f"{dist}.dist-info/RECORD"])
        with zipfile.ZipFile(path, "w") as wheel:
            for name, text in files.items():
                wheel.writestr(name, text)
            wheel.writestr(f"{dist}.dist-info/RECORD", record)
        return path

    return make
