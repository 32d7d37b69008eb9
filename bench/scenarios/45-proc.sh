# background processes: `ptest proc start e --ready-port P -- LISTENER` + `ptest proc stop`
# (a supervisor process per service, readiness checked by connecting) in a medium and a low
# environment, against the same listener started with `nohup … &` plus a poll loop until the
# port answers, then `kill` (the limit: no supervisor, no records, no logs), and against
# `docker run -d` of it plus the same poll and `docker rm -f`. LISTENER is busybox's httpd.
# Then the monitoring cost: `ptest proc list --json` with 100 running processes (status, CPU,
# RSS, threads and fds of each tree, found by its marker) against `ps` and a bare read of
# /proc/PID/stat for the same pids.
bench_requires busybox bash || return 0
home=$(bench_home)
export PTEST_HOME=$home
"$PTEST" env create pm >/dev/null
"$PTEST" env create pl --security low >/dev/null
# A port per contender, so no run waits on another's socket.
read -r p1 p2 p3 p4 < <("$PY" -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
# Polls like a script would: a TCP connect every 10 ms until one succeeds.
poll() { echo "until (: >/dev/tcp/127.0.0.1/$1) 2>/dev/null; do sleep 0.01; done"; }
listener() { echo "busybox httpd -f -p 127.0.0.1:$1"; }

contenders=(
    "ptest proc start --ready-port + stop (medium)"
    "sh -c '$PTEST proc start pm --name l --ready-port $p1 -- $(listener "$p1") >/dev/null && $PTEST proc stop pm l >/dev/null'"
    "ptest proc start --ready-port + stop (low)"
    "sh -c '$PTEST proc start pl --name l --ready-port $p2 -- $(listener "$p2") >/dev/null && $PTEST proc stop pl l >/dev/null'"
    "nohup LISTENER & + poll + kill"
    "bash -c 'nohup $(listener "$p3") >/dev/null 2>&1 & $(poll "$p3"); kill \$!; wait'"
)
notes=()
if command -v docker >/dev/null && docker version >/dev/null 2>&1 &&
    docker image inspect ptest-test-busybox:latest >/dev/null 2>&1; then
    contenders+=(
        "docker run -d + poll + docker rm -f"
        "bash -c 'docker run -d --network host --name ptest-bench-l ptest-test-busybox:latest httpd -f -p 127.0.0.1:$p4 >/dev/null; $(poll "$p4"); docker rm -f ptest-bench-l >/dev/null'"
    )
    notes+=(--note "docker: image ptest-test-busybox:latest (busybox-static FROM scratch), host network so the same port answers; dockerd's and containerd's CPU is in no row")
else
    notes+=(--note "docker left out: no engine answered, or no ptest-test-busybox:latest image (crates/ptest-docker/tests/support builds it)")
fi
(
    ROUNDS=$((QUICK ? 1 : 3)) WARMUP=1 RUNS=$((QUICK ? 5 : 20))
    bench_compare proc-start "background process: start until ready, then stop" \
        --limit "nohup LISTENER & + poll + kill" \
        --ptest "ptest proc start --ready-port + stop (medium)" \
        --note "LISTENER: \`busybox httpd -f -p 127.0.0.1:PORT\`; ready = a TCP connect to the port succeeds" \
        --note "ptest: two CLI runs (start, stop); start records the process, launches its supervisor (\`ptest __supervise\`, a session of its own), which spawns the command in the environment with its output piped into logs/, and returns once a connect inside the environment's network succeeds; stop sends SIGTERM, waits for the supervisor to record the end" \
        --note "the poll loops connect every 10 ms through bash's /dev/tcp" \
        "${notes[@]}" -- "${contenders[@]}"
)

# Monitoring: 100 running processes in one environment.
n=100
bench_log "proc-list: starting $n background processes"
for ((i = 0; i < n; i++)); do
    "$PTEST" proc start pl --name "s$i" -- sleep 3600 >/dev/null
done
pids=$("$PTEST" proc list pl --json | "$PY" -c '
import json, sys
l = [s for s in json.load(sys.stdin) if s["status"] == "running" and s["stats"]]
print(" ".join(str(s["pid"]) for s in l))')
running=$(wc -w <<<"$pids")
[[ $running == "$n" ]] || { bench_log "proc-list: expected $n running processes, got $running"; exit 1; }
stats=$(for p in $pids; do printf '/proc/%s/stat ' "$p"; done)
bench_compare proc-list "monitoring $n running background processes" \
    --limit "cat /proc/PID/stat for the $n pids" --ptest "ptest proc list --json" \
    --note "one environment (security low) with $n \`sleep\` processes, each under its own supervisor" \
    --note "ptest: the records from the state store, then per process tree (found by its PTEST_PROC_ID marker) CPU%, RSS, threads and open fds from procfs" \
    --note "ps: \`ps -o pid,stat,pcpu,rss,nlwp,etime -p PIDS\`; the limit reads each pid's /proc/PID/stat in one \`cat\`" \
    -- \
    "ptest proc list --json" "$PTEST proc list --json" \
    "ps -p PIDS" "ps -o pid,stat,pcpu,rss,nlwp,etime -p ${pids// /,}" \
    "cat /proc/PID/stat for the $n pids" "cat $stats"
"$PTEST" env rm pm pl >/dev/null
