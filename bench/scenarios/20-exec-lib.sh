# exec in an environment, through the library: N Manager::execute_command(["true"]) calls in a
# sandboxed environment (medium: pod) and a `--security low` one (cgroup only), against N
# std::process::Command::new("true").status() calls (the limit) in one process, interleaved
# call by call (bench/lib-bench), with bwrap and unshare spawned the same way. tokio's Command
# shows what the async runtime's spawn path costs. The issue-3 target: library exec into a
# sandboxed environment at most 2x the plain fork/exec and below `bwrap --unshare-all`.
iters=$((QUICK ? 300 : 2000))
home=$(bench_home)
bench_log "exec-lib: execute_command (medium, low) vs Command::status, bwrap, unshare; $iters calls each"
bench_meta exec-lib compare "exec in an environment (library), sandboxed level" \
    --limit 'std Command::new("true").status()' \
    --ptest 'Manager::execute_command(["true"]), security medium' \
    --note "one process, one Manager; times are per call, contenders interleaved call by call" \
    --note "execute_command captures output (ExecRequest's default); the limits discard it" \
    --note "medium: the pod's holder forks the command (a request on its Unix socket; no setns, no cgroup migration); low: a relay process joins the cgroup, then fork/exec" \
    --at-most 'Manager::execute_command(["true"]), security medium|2' \
    --below 'Manager::execute_command(["true"]), security medium|bwrap --unshare-all (spawned)' \
    --note "the issue-3 targets below: library exec into a sandboxed environment at most 2× a plain fork/exec, and below \`bwrap --unshare-all\`"
"$LIBBENCH" exec --home "$home" --iters "$iters" --warmup 50 --security medium,low \
    --out "$OUT/exec-lib.json"
