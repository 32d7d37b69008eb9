"""Shared set-up of ptest-env's tests: a fresh `PTEST_HOME` for the session, `require` (skip
with the reason, or fail under `PTEST_REQUIRE_ALL=1`), and the inputs some tests need: a
local wheel, PyPI, a Docker engine with a busybox image."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import ptest

pytest_plugins = ["pytester"]

# Before any manager opens it: every test of this session, and the pytest runs they start,
# use this home and leave the user's alone.
_HOME = tempfile.mkdtemp(prefix="ptest-py-tests-")
os.environ["PTEST_HOME"] = _HOME


def require(ok: object, reason: str) -> None:
    """Skips the test when `ok` is false, saying why; fails instead under PTEST_REQUIRE_ALL=1,
    so CI cannot pass by skipping."""
    if ok:
        return
    if os.environ.get("PTEST_REQUIRE_ALL") == "1":
        pytest.fail(f"PTEST_REQUIRE_ALL=1 and this host lacks what the test needs: {reason}")
    pytest.skip(reason)


def pytest_sessionfinish(session: pytest.Session) -> None:
    try:
        manager = ptest.Manager(_HOME)
        for env in manager.list():
            env.remove(force=True)
    except ptest.Error:
        return  # Left for a look; the directory is under the temp dir.
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def home() -> str:
    """The session's `PTEST_HOME`."""
    return _HOME


def make_wheel(directory: Path, name: str, version: str) -> Path:
    """A pure-Python wheel of module `name` whose `VERSION` is `version`."""
    dist = f"{name}-{version}"
    path = directory / f"{dist}-py3-none-any.whl"
    files = {
        f"{name}.py": f'VERSION = "{version}"\n',
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{dist}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: ptest-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{f},,\n" for f in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for f, text in files.items():
            z.writestr(f, text)
        z.writestr(f"{dist}.dist-info/RECORD", record)
    return path


@pytest.fixture(scope="session")
def tiny_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ptest_tiny` 1.0 as a local wheel: installs need no network."""
    return make_wheel(tmp_path_factory.mktemp("wheels"), "ptest_tiny", "1.0")


@pytest.fixture(scope="session")
def pypi() -> None:
    """PyPI answers (the seed's scenario installs `requests` from it)."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        reachable = True
    except OSError:
        reachable = False
    require(reachable, "PyPI (pypi.org:443) does not answer")


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A busybox image built FROM scratch with Debian's busybox-static (no registry)."""
    docker = shutil.which("docker")
    ok = (
        docker is not None
        and subprocess.run([docker, "version"], check=False, capture_output=True).returncode == 0
    )
    require(ok, "no Docker engine answers (scripts/start-dockerd starts one)")
    require(os.path.exists("/bin/busybox"), "/bin/busybox missing (busybox-static)")
    context = tmp_path_factory.mktemp("busybox")
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/bin\nCMD ["sh"]\n'
    )
    tag = "ptest-py-tests-busybox:latest"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(context)],
        check=True,
        capture_output=True,
    )
    yield tag
