"""`python -m ptest ARGS`: the `ptest` command this package installed (as `python -m uv`)."""

from __future__ import annotations

import os
import sys

from ptest._find import find_ptest_bin


def main() -> None:
    exe = find_ptest_bin()
    if exe is None:
        sys.exit("ptest: the ptest binary is not installed beside this package (set PTEST_EXE)")
    os.execv(exe, [exe, *sys.argv[1:]])


if __name__ == "__main__":
    main()
