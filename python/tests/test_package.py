"""The installed package: `import ptest`, the `ptest` command from the wheel, the same store
as the CLI, the API's behaviour and its errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import make_wheel

import ptest


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The `ptest` command the wheel installed beside this interpreter."""
    exe = Path(sys.executable).parent / "ptest"
    return subprocess.run([str(exe), *args], check=False, capture_output=True, text=True)


def test_import_and_version_match_the_bundled_cli(tmp_path: Path) -> None:
    out = cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ptest", ptest.__version__]
    module = subprocess.run(
        [sys.executable, "-m", "ptest", "--version"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # The installed package, not the source tree beside the tests.
    )
    assert module.stdout == out.stdout
    # The manager supervises with that very binary, not with the interpreter.
    assert Path(ptest.Manager().exe) == Path(sys.executable).parent / "ptest"


def test_python_and_the_cli_see_the_same_environments(
    ptest_manager: ptest.Manager,
) -> None:
    env = ptest_manager.create_environment("from-python")
    try:
        listed = json.loads(cli("env", "list", "--json").stdout)
        assert "from-python" in [e["name"] for e in listed]
        assert cli("env", "create", "from-cli").returncode == 0
        # Its idle holder runs the small program the wheel installed beside `ptest`.
        shown = json.loads(cli("env", "show", "from-cli", "--json").stdout)
        sandbox = shown["environment"]["details"].get("sandbox")
        if sandbox:
            holder = Path(f"/proc/{sandbox['holder_pid']}/exe").resolve()
            assert holder == (Path(sys.executable).parent / "ptest-pod-holder").resolve()
        other = ptest_manager.get("from-cli")
        assert other.status == "active"
        assert other.exec(["sh", "-c", "echo $PTEST_ENV_NAME"]).stdout == "from-cli\n"
        other.remove()
        assert cli("env", "show", "from-cli").returncode == 3
    finally:
        env.remove(force=True)


def test_exec_result_output_exit_and_variables(ptest_env: ptest.Environment) -> None:
    r = ptest_env.exec(
        ["sh", "-c", 'echo "$A $PTEST_ENV_NAME"; echo e >&2; exit 3'], env={"A": "x"}
    )
    assert (r.returncode, r.stdout, r.stderr) == (3, f"x {ptest_env.name}\n", "e\n")
    assert not r.timed_out and r.duration > 0
    assert ptest_env.exec("pwd").stdout.strip() == str(ptest_env.workspace)


def test_exec_check_raises_with_the_output_tail(ptest_env: ptest.Environment) -> None:
    with pytest.raises(ptest.ProcessError) as caught:
        ptest_env.exec("echo boom; exit 4", check=True)
    assert caught.value.result.returncode == 4
    assert "boom" in str(caught.value)


def test_exec_timeout_kills_the_whole_tree(ptest_env: ptest.Environment) -> None:
    r = ptest_env.exec("sleep 300 & echo $! > child; wait", timeout=0.5)
    assert r.timed_out
    # The background child is gone too; its pid is looked up where it ran (the pod's PID
    # namespace at medium and above).
    gone = ptest_env.exec('kill -0 "$(cat child)" 2>/dev/null && echo alive || echo gone')
    assert gone.stdout == "gone\n"


def test_cwd_is_relative_to_the_workspace_and_stays_in_the_root(
    ptest_env: ptest.Environment,
) -> None:
    ptest_env.exec("mkdir -p sub/dir", check=True)
    assert ptest_env.exec("pwd", cwd="sub/dir").stdout.strip() == str(
        Path(ptest_env.workspace) / "sub/dir"
    )
    assert ptest_env.exec("pwd", cwd=Path(ptest_env.root) / "tmp").stdout.strip() == str(
        Path(ptest_env.root) / "tmp"
    )
    for outside in ["../..", "/etc", "sub/../../../x"]:
        with pytest.raises(ptest.ConfigError):
            ptest_env.exec("pwd", cwd=outside)


def test_errors_are_classes_of_ptest_error(ptest_manager: ptest.Manager) -> None:
    with pytest.raises(ptest.NotFoundError):
        ptest_manager.get("no-such-environment")
    with pytest.raises(ptest.ConfigError):
        ptest_manager.create_environment("Bad Name")
    with pytest.raises(ptest.ConfigError):
        ptest_manager.create_environment(memory="1K")
    with ptest_manager.environment("taken"), pytest.raises(ptest.WrongStateError):
        ptest_manager.create_environment("taken")
    assert issubclass(ptest.LimitReachedError, ptest.Error)
    assert issubclass(ptest.EngineError, ptest.Error)


def test_limit_reached(home: str) -> None:
    os.environ["PTEST_MAX_ENVIRONMENTS"] = str(len(ptest.Manager().list()))
    try:
        with pytest.raises(ptest.LimitReachedError):
            ptest.Manager().create_environment()
    finally:
        del os.environ["PTEST_MAX_ENVIRONMENTS"]


def test_context_manager_removes_the_environment(ptest_manager: ptest.Manager) -> None:
    with ptest_manager.environment() as env:
        env.start_process(["sleep", "300"])
        root = Path(env.root)
        assert root.is_dir()
    assert not root.exists()
    assert env.status == "cleanup_complete"
    with pytest.raises(ptest.NotFoundError):
        ptest_manager.get(env.name)


def test_process_logs_wait_and_readiness(ptest_env: ptest.Environment) -> None:
    p = ptest_env.start_process(
        ["sh", "-c", "echo ready; sleep 0.3; echo bye >&2; exit 7"],
        name="job",
        ready_log="ready",
    )
    assert p.wait(timeout=10) == 7
    assert p.logs() == ("ready\n", "bye\n")
    assert not p.is_alive()
    slow = ptest_env.start_process(["sleep", "300"], name="slow")
    with pytest.raises(ptest.TimeoutError):
        slow.wait(timeout=0.2)
    with pytest.raises(ptest.NotReadyError):
        ptest_env.start_process(["sh", "-c", "echo nope; exit 1"], name="bad", ready_log="never")


def test_ports_packages_stats_validate_events(
    ptest_manager: ptest.Manager, tiny_wheel: Path, tmp_path: Path
) -> None:
    with ptest_manager.environment(level="virtualenv") as env:
        port = env.allocate_port("db")
        assert env.ports == {"db": port}
        assert env.exec("echo $PTEST_PORT_DB").stdout.strip() == str(port)
        assert env.release_port("db") == port and env.ports == {}
        # A second package: pip removes site-packages itself when it uninstalls the only one
        # there (seen through the CLI too; ptest-local then fails to list it).
        other = make_wheel(tmp_path, "ptest_other", "2.0")
        env.install_packages([str(tiny_wheel), str(other)])
        assert env.installed_packages()["ptest-tiny"] == "1.0"
        assert (
            env.exec(["python", "-c", "import ptest_tiny; print(ptest_tiny.VERSION)"]).stdout
            == "1.0\n"
        )
        assert env.check_packages() == []
        env.uninstall_packages(["ptest_tiny"])
        assert env.installed_packages() == {"ptest-other": "2.0"}
        assert env.stats()["disk_bytes"] > 0
        assert all(f["ok"] for f in env.validate())
        kinds = [e["event"] for e in ptest_manager.events(env)]
        assert "package_installed" in kinds and "environment_activated" in kinds


def test_events_follow_sees_new_events(ptest_manager: ptest.Manager) -> None:
    stream = ptest_manager.events(follow=True)
    seen: list[dict] = []

    def read() -> None:
        for event in stream:
            seen.append(event)
            if event["event"] == "environment_cleanup_complete" and event["env_name"] == "followed":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with ptest_manager.environment("followed"):
        pass
    reader.join(timeout=20)
    names = [e["event"] for e in seen if e.get("env_name") == "followed"]
    assert "environment_created" in names
    assert not reader.is_alive()


def test_blocking_calls_release_the_gil(ptest_env: ptest.Environment) -> None:
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    ptest_env.exec(["sleep", "0.5"])
    done.set()
    counter.join()
    assert ticks > 50  # The counter ran while exec waited.


def test_a_docker_environment_from_python(ptest_manager: ptest.Manager, busybox_image: str) -> None:
    with ptest_manager.environment(image=busybox_image) as env:
        assert env.level == "docker"
        container = env.info()["environment"]["details"]["container"]
        assert env.exec(["sh", "-c", "echo hi from $PTEST_ENV_NAME"]).stdout == (
            f"hi from {env.name}\n"
        )
    ps = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", f"id={container}"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert ps.stdout.strip() == ""


def test_ctrl_c_interrupts_a_blocking_call_and_ends_its_command(tmp_path: Path) -> None:
    script = tmp_path / "interrupted.py"
    # Python keeps an inherited SIG_IGN for SIGINT (a run started in the background by a
    # shell without job control has it), so the script takes Ctrl-C as a terminal gives it.
    script.write_text(
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import ptest\n"
        "env = ptest.Manager().create_environment()\n"
        "print(env.name, flush=True)\n"
        "try:\n"
        "    env.exec(['sh', '-c', 'echo $$ > pid; exec sleep 60'])\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    print(env.exec('kill -0 $(cat pid) 2>/dev/null && echo alive || echo gone').stdout)\n"
        "env.remove(force=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert child.stdout is not None
    name = child.stdout.readline().strip()
    env = ptest.Manager().get(name)
    pid_file = Path(env.workspace) / "pid"
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    assert out.split() == ["interrupted", "gone"]
