"""The seed's acceptance scenarios, written as a user writes them: through the plugin's
fixtures."""

from __future__ import annotations

import importlib.util
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest

import ptest

Factory = Callable[..., ptest.Environment]


def pid_gone(pid: int) -> bool:
    """No such process, or only its zombie left for its parent to reap."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.usefixtures("pypi")
def test_two_environments_import_their_own_requests(ptest_env_factory: Factory) -> None:
    assert importlib.util.find_spec("requests") is None, "the host must not have requests"
    old = ptest_env_factory(packages=["requests==2.25.0"])
    new = ptest_env_factory(packages=["requests==2.28.0"])
    show = ["python", "-c", "import requests; print(requests.__version__)"]
    assert old.exec(show, check=True).stdout == "2.25.0\n"
    assert new.exec(show, check=True).stdout == "2.28.0\n"
    assert old.installed_packages()["requests"] == "2.25.0"
    assert new.installed_packages()["requests"] == "2.28.0"


def test_process_start_alive_and_stop(ptest_env: ptest.Environment) -> None:
    process = ptest_env.start_process(["sleep", "300"])
    assert process.is_alive()
    assert not pid_gone(process.pid)
    assert process.stop(timeout=5) == -15  # It ended on SIGTERM.
    assert not process.is_alive()
    assert pid_gone(process.pid)


def test_two_environments_get_distinct_usable_ports(ptest_env_factory: Factory) -> None:
    envs = [ptest_env_factory(network="host") for _ in range(2)]
    ports = [env.allocate_port("http") for env in envs]
    assert ports[0] != ports[1]
    for env in envs:
        env.exec(f"echo {env.name} > index.html", check=True)
        env.start_process(
            "exec python3 -m http.server $PTEST_PORT_HTTP --bind 127.0.0.1",
            name="web",
            ready_port="http",
            ready_timeout=30,
        )
    for env, port in zip(envs, ports):
        # Each server answers on its own port, from its own workspace.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert r.read().decode() == f"{env.name}\n"


def test_cleanup_kills_a_busy_loop_and_removes_the_root(
    ptest_env_factory: Factory,
) -> None:
    env = ptest_env_factory()
    loop = env.start_process(["sh", "-c", "while :; do :; done"], name="busy")
    root = Path(env.root)
    assert loop.is_alive() and root.is_dir()
    env.remove(force=True)
    assert pid_gone(loop.pid)
    assert not root.exists()
    assert env.status == "cleanup_complete"


def test_ten_threads_create_install_and_are_active(
    ptest_env_factory: Factory, tiny_wheel: Path
) -> None:
    def one(i: int) -> tuple[str, str, str]:
        env = ptest_env_factory(f"thread-{i}", level="virtualenv")
        env.install_packages([str(tiny_wheel)])
        return env.name, env.status, env.installed_packages()["ptest-tiny"]

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    assert sorted(r[0] for r in results) == sorted(f"thread-{i}" for i in range(10))
    assert {r[1] for r in results} == {"active"}
    assert {r[2] for r in results} == {"1.0"}


def test_same_temp_file_name_different_contents(ptest_env_factory: Factory) -> None:
    a, b = ptest_env_factory(), ptest_env_factory()
    for env in (a, b):
        env.exec(f'echo "from {env.name}" > "$TMPDIR/same.txt"', check=True)
    for env in (a, b):
        assert env.exec('cat "$TMPDIR/same.txt"').stdout == f"from {env.name}\n"
        assert (Path(env.root) / "tmp" / "same.txt").read_text() == f"from {env.name}\n"
