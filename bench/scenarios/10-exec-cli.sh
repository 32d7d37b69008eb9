# exec in an environment, through the CLI: one `ptest env exec E -- true` against the bare
# fork/exec of `true` (the limit) and the sandboxes people reach for instead.
home=$(bench_home)
export PTEST_HOME=$home
"$PTEST" env create e >/dev/null

contenders=(
    "ptest env exec e -- true" "$PTEST env exec e -- true"
    "true (fork/exec)" "true"
)
notes=()
if bench_requires bwrap; then
    contenders+=("bwrap --unshare-all" "bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true")
fi
if unshare -pfmiu --mount-proc true 2>/dev/null; then
    contenders+=("unshare -pfmiu --mount-proc" "unshare -pfmiu --mount-proc true")
else
    notes+=(--note "unshare -pfmiu is not permitted here (needs root), so it is left out")
fi

bench_compare exec-cli "exec in an environment (CLI), basic level" \
    --limit "true (fork/exec)" --ptest "ptest env exec e -- true" \
    --note "each run is a whole process: ptest opens its state, records the exec and its events, spawns, waits" \
    --note "bwrap and unshare build their namespaces on every call; ptest's basic level has none yet" \
    "${notes[@]}" -- "${contenders[@]}"
"$PTEST" env rm e >/dev/null
