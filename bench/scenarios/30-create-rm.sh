# environment create + remove, sandboxed (medium: cgroup + pod holder), low (cgroup only) and
# the directory level (PTEST_SANDBOX_DISABLE=namespaces,cgroups, what hosts without them get):
# `ptest env create x && ptest env rm x` as one pair per iteration against `mkdir d && rmdir d`
# (the limit), both through the same `sh -c`, and bwrap's setup of the same namespaces.
home=$(bench_home)
export PTEST_HOME=$home
contenders=(
    "create + rm (medium: pod)" "sh -c '$PTEST env create x && $PTEST env rm x'"
    "create + rm (low: cgroup only)" "sh -c '$PTEST env create x --security low && $PTEST env rm x'"
    "create + rm (directory: no sandbox)" "sh -c 'PTEST_SANDBOX_DISABLE=namespaces,cgroups $PTEST env create x && $PTEST env rm x'"
    "mkdir d && rmdir d" "sh -c 'mkdir d && rmdir d'"
)
if bench_requires bwrap; then
    contenders+=("bwrap --unshare-all setup (sh -c)" "sh -c 'bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true'")
fi
bench_compare create-rm-cli "environment create + remove (CLI), sandboxed level" \
    --limit "mkdir d && rmdir d" --ptest "create + rm (medium: pod)" \
    --note "all pay one sh; ptest two more processes, each opening the state; create writes the root's five directories, its marker and events, makes the cgroup and (medium) starts the holder; rm kills the cgroup and removes tree and cgroup" \
    --note "bwrap builds PID/mount/IPC/UTS/net/user namespaces and tears them down when \`true\` exits: the setup a pod pays once" \
    --below "create + rm (medium: pod)|bwrap --unshare-all setup (sh -c)" \
    -- "${contenders[@]}"

iters=$((QUICK ? 100 : 400))
home=$(bench_home)
bench_log "create-rm-lib: create_environment + cleanup (medium, low) vs create_dir + remove_dir, $iters each"
bench_meta create-rm-lib compare "environment create + remove (library), sandboxed level" \
    --limit "create_dir + remove_dir" --ptest "create_environment + cleanup, security medium" \
    --note "one process, one Manager; contenders interleaved call by call; bwrap and unshare spawned per call"
"$LIBBENCH" create-rm --home "$home" --iters "$iters" --warmup 20 --security medium,low \
    --out "$OUT/create-rm-lib.json"
