"""pytest plugin: environments for tests (on when `ptest-env` is installed).

Fixtures: `ptest_manager` (session), `ptest_env` (one environment per test, set up by the
closest `@pytest.mark.ptest_env(...)`), `ptest_env_factory` (several), `ptest_service` (the
process of the closest `@pytest.mark.ptest_service(...)`, started in `ptest_env`, ready).

Every environment carries `ptest.pytest.session` and `ptest.run.owner` (this process) labels
under the `on_shutdown` policy: a session that was SIGKILLed has its environments removed by
the next session's `ptest_manager` or by `ptest gc`. Under pytest-xdist each worker is its
own owner with its own environments.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import ptest
from ptest import _native

#: Marks environments made through this plugin.
PLUGIN_LABEL = "ptest.pytest"
_SESSION_KEY = pytest.StashKey[str]()
_KEPT_KEY = pytest.StashKey[list[str]]()
_REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
_KEPT_PROPERTY = "ptest_kept_environment"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ptest")
    group.addoption(
        "--ptest-keep-failed",
        action="store_true",
        default=False,
        help="keep the environments of failed tests and print how to enter them",
    )
    parser.addini(
        "ptest_env_scope",
        "scope of the ptest_env fixture (function, class, module, package, session)",
        default="function",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ptest_env(**settings): the ptest_env fixture's environment "
        "(ptest.Manager.create_environment's arguments)",
    )
    config.addinivalue_line(
        "markers",
        "ptest_service(argv, **options): a background process for the ptest_service "
        "fixture (ptest.Environment.start_process's arguments)",
    )
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # A pytest-xdist worker: the run's id and the worker's.
        session = f"{workerinput.get('testrunuid', 'xdist')}-{workerinput.get('workerid', '')}"
    else:
        session = uuid.uuid4().hex[:12]
    config.stash[_SESSION_KEY] = session
    config.stash[_KEPT_KEY] = []
    config.pluginmanager.register(_KeptReporter(config), "ptest-kept-reporter")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    item.stash.setdefault(_REPORTS_KEY, {})[report.when] = report


def _failed(request: pytest.FixtureRequest, failed_before: int) -> bool:
    """Whether the test failed, or for a wider scope any test of it."""
    if isinstance(request.node, pytest.Item):
        reports = request.node.stash.get(_REPORTS_KEY, {})
        return any(r.failed for r in reports.values())
    return request.session.testsfailed > failed_before


def _reap_dead_sessions(manager: ptest.Manager) -> None:
    """Removes environments of earlier sessions whose pytest process is gone."""
    for env in manager.list(labels={PLUGIN_LABEL: "1"}):
        owner = env.labels.get("ptest.run.owner")
        if owner is not None and not _native.owner_alive(owner):
            # Another session may take it first.
            with contextlib.suppress(ptest.NotFoundError):
                env.remove(force=True)


@pytest.fixture(scope="session")
def ptest_manager() -> Iterator[ptest.Manager]:
    """The `ptest.Manager` of the session (on `$PTEST_HOME`); at the end it removes what the
    session's fixtures left (an interrupted teardown), but never a kept environment."""
    manager = ptest.Manager()
    _reap_dead_sessions(manager)
    yield manager
    manager.shutdown()


class _Factory:
    """Creates environments for one fixture and removes them when it ends."""

    def __init__(self, manager: ptest.Manager, config: pytest.Config, keep_failed: bool):
        self.manager = manager
        self.config = config
        self.keep_failed = keep_failed
        self.made: list[ptest.Environment] = []

    def __call__(self, name: str | None = None, **settings: Any) -> ptest.Environment:
        labels = dict(settings.pop("labels", None) or {})
        labels[PLUGIN_LABEL] = "1"
        labels["ptest.pytest.session"] = self.config.stash[_SESSION_KEY]
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:
            labels["ptest.pytest.worker"] = worker
        if self.keep_failed:
            # A kept environment must outlive this process: it is not owned by it.
            settings.setdefault("cleanup", "on_request")
        else:
            labels["ptest.run.owner"] = _native.owner_id()
            settings.setdefault("cleanup", "on_shutdown")
        env = self.manager.create_environment(name, labels=labels, **settings)
        self.made.append(env)
        return env

    def finish(self, node: Any, failed: bool) -> None:
        errors = []
        for env in self.made:
            if failed and self.keep_failed:
                if isinstance(node, pytest.Item):
                    # Carried by the test's report, to the controller under pytest-xdist.
                    node.user_properties.append((_KEPT_PROPERTY, env.name))
                else:
                    self.config.stash[_KEPT_KEY].append(env.name)
                continue
            try:
                env.remove(force=True)
            except ptest.NotFoundError:
                pass
            except ptest.Error as e:
                errors.append(e)
        if errors:
            raise errors[0]


def _settings(node: Any, marker: str) -> dict[str, Any]:
    mark = node.get_closest_marker(marker)
    if mark is None:
        return {}
    if mark.args:
        raise pytest.UsageError(f"@pytest.mark.{marker} takes keyword arguments only")
    return dict(mark.kwargs)


def _env_scope(fixture_name: str, config: pytest.Config) -> Any:
    return config.getini("ptest_env_scope")


@pytest.fixture(scope=_env_scope)
def ptest_env(
    request: pytest.FixtureRequest, ptest_manager: ptest.Manager
) -> Iterator[ptest.Environment]:
    """An environment for the test, configured by the closest `@pytest.mark.ptest_env`;
    removed afterwards (kept if the test failed under `--ptest-keep-failed`)."""
    factory = _Factory(ptest_manager, request.config, request.config.getoption("ptest_keep_failed"))
    failed_before = request.session.testsfailed
    env = factory(**_settings(request.node, "ptest_env"))
    yield env
    factory.finish(request.node, _failed(request, failed_before))


@pytest.fixture
def ptest_env_factory(
    request: pytest.FixtureRequest, ptest_manager: ptest.Manager
) -> Iterator[Callable[..., ptest.Environment]]:
    """`ptest_env_factory(**settings)` makes an environment; all are removed after the test."""
    factory = _Factory(ptest_manager, request.config, request.config.getoption("ptest_keep_failed"))
    yield factory
    factory.finish(request.node, _failed(request, 0))


@pytest.fixture
def ptest_service(
    request: pytest.FixtureRequest, ptest_env: ptest.Environment
) -> Iterator[ptest.Process]:
    """The process of the closest `@pytest.mark.ptest_service(argv, ready_port=..., ...)`,
    started in `ptest_env` and ready; stopped after the test."""
    mark = request.node.get_closest_marker("ptest_service")
    if mark is None or len(mark.args) != 1:
        raise pytest.UsageError(
            "the ptest_service fixture needs @pytest.mark.ptest_service(argv, **options)"
        )
    process = ptest_env.start_process(mark.args[0], **mark.kwargs)
    yield process
    if process.is_alive():
        process.stop(timeout=5)


class _KeptReporter:
    """Names the kept environments in the summary: those of this process's wider-scoped
    fixtures, and those the test reports carry (every worker's, under pytest-xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.names: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            self.names += [str(v) for k, v in report.user_properties if k == _KEPT_PROPERTY]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        kept = [*self.names, *self.config.stash.get(_KEPT_KEY, [])]
        if kept:
            terminalreporter.section("ptest: environments kept")
            for name in kept:
                terminalreporter.write_line(f"ptest env exec {name} -- sh")
