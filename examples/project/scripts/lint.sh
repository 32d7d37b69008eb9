#!/bin/sh
# Checks that every shell script parses and every Python file compiles.
set -eu
for f in scripts/*.sh; do
    sh -n "$f"
done
python3 - <<'PY'
import pathlib, sys
bad = 0
for path in sorted(pathlib.Path(".").rglob("*.py")):
    try:
        compile(path.read_text(), str(path), "exec")
    except SyntaxError as e:
        print(f"{path}: {e}", file=sys.stderr)
        bad += 1
sys.exit(1 if bad else 0)
PY
echo "lint: ok"
