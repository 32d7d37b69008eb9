# environment create + remove, directory level: `ptest env create x && ptest env rm x` as one
# pair per iteration against `mkdir d && rmdir d` (the limit), both through the same `sh -c`.
home=$(bench_home)
export PTEST_HOME=$home
bench_compare create-rm-cli "environment create + remove (CLI), basic level" \
    --limit "mkdir d && rmdir d" --ptest "ptest env create x && ptest env rm x" \
    --note "both sides pay one sh plus two fork/execs; ptest also writes the root's five directories, its marker and the lifecycle events" \
    -- \
    "ptest env create x && ptest env rm x" "sh -c '$PTEST env create x && $PTEST env rm x'" \
    "mkdir d && rmdir d" "sh -c 'mkdir d && rmdir d'"

iters=$((QUICK ? 100 : 500))
home=$(bench_home)
bench_log "create-rm-lib: create_environment + cleanup vs create_dir + remove_dir, $iters each"
bench_meta create-rm-lib compare "environment create + remove (library), basic level" \
    --limit "create_dir + remove_dir" --ptest "create_environment + cleanup" \
    --note "one process, one Manager; contenders interleaved call by call"
"$LIBBENCH" create-rm --home "$home" --iters "$iters" --warmup 20 --out "$OUT/create-rm-lib.json"
