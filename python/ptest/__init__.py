"""ptest from Python: isolated environments for tests, managed in-process.

>>> import ptest
>>> manager = ptest.Manager()
>>> with manager.environment() as env:
...     env.exec(["echo", "hi"]).stdout
'hi\\n'

The same store as the `ptest` command (`$PTEST_HOME`): what Python creates, `ptest env list`
shows. Blocking calls release the GIL. Errors are subclasses of `ptest.Error`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ptest import _native
from ptest._find import find_ptest_bin
from ptest._native import (
    ConfigError,
    EngineError,
    Environment,
    Error,
    EventStream,
    LimitReachedError,
    NotFoundError,
    NotReadyError,
    Process,
    ProcessError,
    ProcessResult,
    TimeoutError,
    WrongStateError,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__version__: str = _native.__version__

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
    "find_ptest_bin",
]


class Manager(_native.Manager):
    """Opens `$PTEST_HOME` (or `home`) with every engine of this build.

    `exe` is the `ptest` binary background processes are supervised by: by default the one
    this package installed (see `find_ptest_bin`).
    """

    def __new__(cls, home: Any = None, exe: Any = None) -> Self:
        return super().__new__(cls, home, exe if exe is not None else find_ptest_bin())

    def environment(self, name: str | None = None, **settings: Any) -> Environment:
        """Creates an environment to use as a context manager: removed on exit (with
        whatever still runs in it). Takes `create_environment`'s arguments."""
        return self.create_environment(name, **settings)
