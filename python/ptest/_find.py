"""Where the `ptest` binary installed with this package is.

Background processes run under a `ptest __supervise` supervisor; inside Python the running
executable is the interpreter, so the manager is told which binary to start (as uv's
`find_uv_bin` finds uv's).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig


def find_ptest_bin() -> str | None:
    """The `ptest` binary: `$PTEST_EXE`, else the one in this interpreter's scripts
    directory (where the wheel put it), else the user scheme's, else `ptest` on `PATH`."""
    given = os.environ.get("PTEST_EXE")
    if given:
        return given
    candidates = [sysconfig.get_path("scripts")]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        candidates.append(sysconfig.get_path("scripts", scheme=user_scheme))
    # A venv's interpreter may be a link elsewhere: its own bin/ first.
    candidates.insert(0, os.path.dirname(sys.executable))
    for directory in candidates:
        path = os.path.join(directory, "ptest")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which("ptest")
