"""The pytest plugin, run through pytester: markers, keeping failed environments, a
SIGKILLed session's environments reaped, pytest-xdist workers."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require

import ptest


def names(manager: ptest.Manager, **labels: str) -> set[str]:
    return {e.name for e in manager.list(labels=labels or None)}


def test_marker_configures_the_environment_at_each_level(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.ptest_env(labels={"where": "module"})

        def test_module(ptest_env):
            assert ptest_env.labels["where"] == "module"
            assert ptest_env.labels["ptest.pytest"] == "1"
            assert ptest_env.info()["environment"]["spec"]["cleanup"] == "on_shutdown"

        @pytest.mark.ptest_env(labels={"where": "class"}, memory="64M")
        class TestClass:
            def test_class(self, ptest_env):
                assert ptest_env.labels["where"] == "class"
                assert ptest_env.info()["environment"]["spec"]["limits"]["memory"] == "64M"

            @pytest.mark.ptest_env(labels={"where": "function"}, ports=["http"])
            def test_function(self, ptest_env):
                assert ptest_env.labels["where"] == "function"
                port = ptest_env.ports["http"]
                assert ptest_env.exec("echo $PTEST_PORT_HTTP").stdout == f"{port}\\n"

        def test_factory(ptest_env_factory):
            a, b = ptest_env_factory(), ptest_env_factory(name="second")
            assert a.name != b.name == "second"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    # Nothing is left behind.
    assert names(ptest.Manager(), **{"ptest.pytest": "1"}) == set()


def test_service_marker_starts_a_ready_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, urllib.request

        @pytest.mark.ptest_env(network="host", ports=["http"])
        @pytest.mark.ptest_service(
            "exec python3 -m http.server $PTEST_PORT_HTTP --bind 127.0.0.1",
            name="web", ready_port="http")
        def test_web(ptest_env, ptest_service):
            assert ptest_service.is_alive()
            port = ptest_env.ports["http"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                assert r.status == 200
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_keep_failed_keeps_the_environment_and_says_how_to_enter(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_fails(ptest_env):
            ptest_env.exec("echo kept > evidence", check=True)
            assert False

        def test_passes(ptest_env):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--ptest-keep-failed")
    result.assert_outcomes(passed=1, failed=1)
    lines = [l for l in result.outlines if l.startswith("ptest env exec ")]
    assert len(lines) == 1
    name = lines[0].split()[3]
    manager = ptest.Manager()
    env = manager.get(name)
    try:
        assert env.exec("cat evidence").stdout == "kept\n"
        # Only the failed test's environment is kept.
        assert names(manager, **{"ptest.pytest": "1"}) == {name}
    finally:
        env.remove(force=True)


@pytest.mark.parametrize("reaper", ["next session", "ptest gc"])
def test_a_killed_sessions_environments_are_reaped(pytester: pytest.Pytester, reaper: str) -> None:
    pytester.makepyfile(
        test_killed="""
        import os, signal

        def test_dies(ptest_env):
            ptest_env.start_process(["sleep", "300"], name="orphan")
            print("ENV", ptest_env.name, ptest_env.root, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "test_killed.py")
    assert killed.ret == -9
    found = re.search(r"ENV (\S+) (\S+)", killed.stdout.str())
    assert found, killed.stdout.str()
    name, root = found.groups()
    manager = ptest.Manager()
    orphan = manager.get(name)
    pid = orphan.processes()[0].pid
    assert orphan.status == "active"
    if reaper == "next session":
        pytester.makepyfile(test_next="def test_next(ptest_manager):\n    pass\n")
        pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_next.py").assert_outcomes(
            passed=1
        )
    else:
        gc = subprocess.run(
            [str(Path(sys.executable).parent / "ptest"), "gc"],
            check=False,
            capture_output=True,
            text=True,
        )
        assert gc.returncode == 0, gc.stderr
    with pytest.raises(ptest.NotFoundError):
        manager.get(name)
    assert not os.path.exists(root)
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_xdist_workers_have_their_own_environments(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    require(importlib.util.find_spec("xdist"), "pytest-xdist is not installed")
    pytester.makepyfile(
        """
        import json, os, pytest

        @pytest.mark.parametrize("i", range(6))
        def test_each(ptest_env, i):
            port = ptest_env.allocate_port("p")
            with open(os.environ["RECORD"], "a") as f:
                f.write(json.dumps([os.environ["PYTEST_XDIST_WORKER"], ptest_env.name,
                                    ptest_env.labels["ptest.pytest.worker"], port]) + "\\n")
        """
    )
    record = pytester.path / "record.jsonl"
    monkeypatch.setenv("RECORD", str(record))
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2").assert_outcomes(passed=6)
    rows = [json.loads(l) for l in record.read_text().splitlines()]
    assert {r[0] for r in rows} == {"gw0", "gw1"}
    assert all(r[0] == r[2] for r in rows)
    assert len({r[1] for r in rows}) == 6 and len({r[3] for r in rows}) == 6


def test_keep_failed_under_xdist_names_every_workers_environment(
    pytester: pytest.Pytester,
) -> None:
    require(importlib.util.find_spec("xdist"), "pytest-xdist is not installed")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_fails(ptest_env, i):
            assert i % 2
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--ptest-keep-failed"
    )
    result.assert_outcomes(passed=2, failed=2)
    kept = [l.split()[3] for l in result.outlines if l.startswith("ptest env exec ")]
    manager = ptest.Manager()
    try:
        assert len(kept) == 2
        assert names(manager, **{"ptest.pytest": "1"}) == set(kept)
    finally:
        for name in kept:
            manager.get(name).remove(force=True)


def test_env_scope_ini_shares_one_environment_per_module(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nptest_env_scope = module\n")
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.ptest_env(labels={"shared": "yes"})
        seen = []

        def test_first(ptest_env):
            seen.append(ptest_env.name)
            ptest_env.exec("echo one > mark", check=True)

        def test_second(ptest_env):
            assert [ptest_env.name] == seen
            assert ptest_env.labels["shared"] == "yes"
            assert ptest_env.exec("cat mark").stdout == "one\\n"
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert names(ptest.Manager(), **{"ptest.pytest": "1"}) == set()
