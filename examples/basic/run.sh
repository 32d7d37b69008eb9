#!/usr/bin/env bash
# A tour of ptest on a throw-away home: two environments side by side, a command in each, a
# timeout that kills a whole process tree, the event log, and cleanup that leaves nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --release -p ptest
ptest() { target/release/ptest "$@"; }

export PTEST_HOME="$(mktemp -d)"
trap 'rm -rf "$PTEST_HOME"' EXIT

ptest env create alpha --label suite=unit
ptest env create beta --label suite=unit
ptest env list

# Each environment has its own workspace; the same file name never clashes.
ptest env exec alpha -- sh -c 'echo "I am $PTEST_ENV_NAME" > who; cat who'
ptest env exec beta -- sh -c 'echo "I am $PTEST_ENV_NAME" > who; cat who'

# Exit codes pass through.
if ptest env exec alpha -- sh -c 'exit 3'; then echo "unexpected"; exit 1; else echo "exit code: $?"; fi

# A timeout kills the command and everything it started (exit 124).
ptest env exec beta --timeout 300ms -- sh -c 'sleep 60 & sleep 60' || echo "timed out with exit code $?"

ptest env stats alpha
ptest events --limit 5
ptest env rm --all
test -z "$(ls "$PTEST_HOME/envs")" && echo "nothing left behind"
