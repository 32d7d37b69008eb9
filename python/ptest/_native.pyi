"""Stubs of the Rust extension module (crates/ptest-py)."""

import builtins
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from typing_extensions import Self, TypeAlias, disjoint_base, final

_Duration: TypeAlias = float | str
_Size: TypeAlias = int | str
_Path: TypeAlias = str | os.PathLike[str]

__all__ = [
    "ConfigError",
    "EngineError",
    "Environment",
    "Error",
    "EventStream",
    "LimitReachedError",
    "Manager",
    "NotFoundError",
    "NotReadyError",
    "Process",
    "ProcessError",
    "ProcessResult",
    "TimeoutError",
    "WrongStateError",
    "__version__",
    "owner_alive",
    "owner_id",
]

__version__: str

class Error(Exception):
    """Base class of every ptest error."""

class NotFoundError(Error):
    """No environment, process or package with that name."""

class ConfigError(Error):
    """Bad input: a name, limit, level or configuration ptest cannot use."""

class LimitReachedError(Error):
    """max_environments reached, or no port or address left to lease."""

class WrongStateError(Error):
    """The environment is busy, taken or in a state that does not allow this."""

class EngineError(Error):
    """ptest or the host failed: the state store, the filesystem, an engine (Docker)."""

class ProcessError(Error):
    """A command run with check=True failed; `.result` holds its ProcessResult."""

    result: ProcessResult

class NotReadyError(Error):
    """A background process ended or was not ready in time; it was stopped."""

class TimeoutError(Error):
    """A wait ran out of time (the process still runs)."""

def owner_id() -> str:
    """This process as `PID:START_TICKS` (the `ptest.run.owner` label)."""

def owner_alive(label: str) -> bool:
    """Whether the process an owner label names still runs."""

@disjoint_base
class Manager:
    """Opens `$PTEST_HOME` (or `home`) and creates, finds and lists environments there."""

    def __new__(cls, home: _Path | None = None, exe: _Path | None = None) -> Self: ...
    @property
    def home(self) -> Path:
        """The home directory (`$PTEST_HOME`)."""
    @property
    def exe(self) -> Path | None:
        """The `ptest` binary background processes are supervised by, if known."""
    @property
    def levels(self) -> builtins.list[str]:
        """The isolation levels this build has engines for."""
    def create_environment(
        self,
        name: str | None = None,
        *,
        level: str | None = None,
        packages: Sequence[str] | None = None,
        requirements: Sequence[_Path] | None = None,
        constraints: Sequence[_Path] | None = None,
        find_links: Sequence[str] | None = None,
        no_index: bool = False,
        index_url: str | None = None,
        python: str | None = None,
        image: str | None = None,
        build: _Path | None = None,
        security: str | None = None,
        network: str | None = None,
        allow: Sequence[str] | None = None,
        ports: Sequence[str] | None = None,
        memory: _Size | None = None,
        cpus: float | None = None,
        pids: int | None = None,
        nofile: int | None = None,
        disk: _Size | None = None,
        files: int | None = None,
        cleanup: str | None = None,
        ttl: _Duration | None = None,
        exec_timeout: _Duration | None = None,
        labels: Mapping[str, str] | None = None,
        path: _Path | None = None,
        allow_degraded: bool = False,
    ) -> Environment:
        """Creates an environment, makes it active and returns it (`ptest env create`)."""
    def get(self, name: str) -> Environment:
        """The environment with this name or id."""
    def list(
        self,
        *,
        level: str | None = None,
        status: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[Environment]:
        """Environments, optionally only of one level, status or carrying every label."""
    def events(
        self,
        env: Environment | str | None = None,
        *,
        follow: bool = False,
        limit: int | None = None,
    ) -> Any:
        """The event log: a list of dicts, or with `follow=True` an EventStream."""
    def gc(self, *, shutdown: bool = False) -> builtins.list[dict[str, Any]]:
        """Removes what the cleanup policies say is due (`ptest gc`)."""
    def shutdown(self) -> builtins.list[dict[str, Any]]:
        """Removes the `on_shutdown` environments this manager created."""

@final
class EventStream:
    """New events as they are recorded (`ptest events --follow`)."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def __next__(self) -> dict[str, Any]: ...

@final
class Environment:
    """An environment: a root with its own processes, ports, packages and limits."""

    @property
    def name(self) -> str:
        """Its unique name."""
    @property
    def id(self) -> str:
        """Its short unique id."""
    @property
    def root(self) -> Path:
        """Host path of its root."""
    @property
    def workspace(self) -> Path:
        """Its `workspace/`: the working directory of its commands."""
    @property
    def level(self) -> str:
        """`basic`, `virtualenv` or `docker`."""
    @property
    def status(self) -> str:
        """Where it is in its lifecycle, read now (`cleanup_complete` once removed)."""
    @property
    def labels(self) -> dict[str, str]:
        """Its labels."""
    @property
    def ports(self) -> dict[str, int]:
        """The host ports it holds, by name."""
    def info(self) -> dict[str, Any]:
        """Everything ptest records about it (`ptest env show --json`)."""
    def exec(
        self,
        cmd: str | Sequence[str],
        *,
        timeout: _Duration | None = None,
        env: Mapping[str, str] | None = None,
        cwd: _Path | None = None,
        check: bool = False,
    ) -> ProcessResult:
        """Runs a command inside and waits for it (`ptest env exec`)."""
    def start_process(
        self,
        argv: str | Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        ready_port: int | str | None = None,
        ready_log: str | None = None,
        ready_http: str | None = None,
        ready_cmd: str | None = None,
        ready_timeout: _Duration | None = None,
        restart: str = "no",
    ) -> Process:
        """Starts a background process under a supervisor; returns once it is ready."""
    def processes(self) -> builtins.list[Process]:
        """The background processes started in it."""
    def allocate_port(self, name: str) -> int:
        """Leases a free host port under `name`."""
    def release_port(self, name: str) -> int:
        """Gives the port leased under `name` back; returns its number."""
    def install_packages(
        self,
        requirements: Sequence[str],
        *,
        requirement_files: Sequence[_Path] | None = None,
        constraints: Sequence[_Path] | None = None,
        upgrade: bool = False,
    ) -> dict[str, Any]:
        """Installs requirements into its venv (`ptest pkg install`); returns what changed."""
    def uninstall_packages(self, names: Sequence[str]) -> dict[str, Any]:
        """Uninstalls packages by name (`ptest pkg uninstall`)."""
    def installed_packages(self) -> dict[str, str]:
        """`{name: version}` of every distribution in its venv."""
    def check_packages(self) -> builtins.list[dict[str, Any]]:
        """Unmet requirements, as `pip check` finds them; empty when consistent."""
    def stats(self) -> dict[str, Any]:
        """What it uses now (`ptest env stats`)."""
    def validate(self) -> builtins.list[dict[str, Any]]:
        """Checks that it is intact (`ptest env validate`): `{check, ok, detail}` each."""
    def remove(self, *, force: bool = False) -> None:
        """Stops everything in it and deletes it (`ptest env rm`)."""
    def __enter__(self) -> Environment: ...
    def __exit__(self, *_exc: object) -> bool: ...

@final
class ProcessResult:
    """How a command ended, with its captured output."""

    @property
    def args(self) -> builtins.list[str]: ...
    @property
    def returncode(self) -> int: ...
    @property
    def signal(self) -> int | None: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...
    @property
    def stdout_file(self) -> Path | None: ...
    @property
    def stderr_file(self) -> Path | None: ...
    @property
    def duration(self) -> float: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def oom_killed(self) -> bool: ...
    @property
    def pid(self) -> int | None: ...
    def check_returncode(self) -> None:
        """Raises `ProcessError` if it did not exit 0."""

@final
class Process:
    """A background process under its `ptest __supervise` supervisor."""

    @property
    def name(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def returncode(self) -> int | None: ...
    def is_alive(self) -> bool:
        """Whether it runs now."""
    def stop(self, timeout: _Duration | None = None) -> int | None:
        """SIGTERM, wait up to `timeout` seconds (10 by default), then kill its tree."""
    def wait(self, timeout: _Duration | None = None) -> int | None:
        """Waits until it ends; raises `ptest.TimeoutError` after `timeout`."""
    def logs(self, lines: int | None = None) -> tuple[str, str]:
        """`(stdout, stderr)`: the last `lines` lines of its logs."""
