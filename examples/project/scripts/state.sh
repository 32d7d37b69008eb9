#!/bin/sh
# Claims state/ for suite $1, then checks for a few rounds that nobody else wrote to it:
# what two suites sharing one directory would get wrong.
set -eu
me="$1"
rounds="${STATE_ROUNDS:-4}"
mkdir -p state
echo "$me" > state/owner
i=0
while [ "$i" -lt "$rounds" ]; do
    echo "$me $i" >> state/log
    sleep 0.1
    owner="$(cat state/owner)"
    if [ "$owner" != "$me" ]; then
        echo "state/owner says $owner, expected $me: another suite wrote here" >&2
        exit 1
    fi
    i=$((i + 1))
done
if grep -qv "^$me " state/log; then
    echo "state/log has lines from another suite:" >&2
    cat state/log >&2
    exit 1
fi
echo "state-$me: $rounds rounds, no interference"
