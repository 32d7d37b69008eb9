# exec in an environment, through the library: N Manager::execute_command(["true"]) calls
# against N std::process::Command::new("true").status() calls in one process, interleaved call
# by call (bench/lib-bench). tokio's Command shows what the async runtime's spawn path costs.
iters=$((QUICK ? 300 : 2000))
home=$(bench_home)
bench_log "exec-lib: execute_command vs Command::status, $iters calls each"
bench_meta exec-lib compare "exec in an environment (library), basic level" \
    --limit 'std Command::new("true").status()' --ptest 'Manager::execute_command(["true"])' \
    --note "one process, one Manager; times are per call, contenders interleaved call by call" \
    --note "execute_command captures output (ExecRequest's default); the limits discard it"
"$LIBBENCH" exec --home "$home" --iters "$iters" --warmup 50 --out "$OUT/exec-lib.json"
