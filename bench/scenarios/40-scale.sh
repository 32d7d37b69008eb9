# scale: fill one home with sandboxed environments (the default, security medium: a cgroup and a
# pod holder each) one by one (CLI, then library), and at each checkpoint measure exec, create +
# rm of one more, and list at that population against their limits; then exec in each and
# remove all. The slope between checkpoints is the cost of one more environment existing. Peak
# RSS of `ptest env list` / `env exec` per checkpoint, the holders' memory per environment
# (against a process that only calls pause(), what a Kubernetes pod's pause container runs), and
# the whole library run's. The full run goes to 2,000 environments and repeats the library run
# at `--security low` (cgroup only).
if ((QUICK)); then checkpoints=(50 500); else checkpoints=(50 500 1000 2000); fi
max=${checkpoints[-1]}
samples=$((QUICK ? 20 : 60))

# Memory of processes (nothing else runs in an idle environment than its holder): "RSS PSS
# PRIVATE_DIRTY" in KiB, each the mean over PIDS. RSS counts the pages a process shares; PSS
# divides shared pages among their users; private dirty is what it alone has written.
mem_per_process() {
    local rss=0 pss=0 dirty=0 n=0 pid
    for pid in "$@"; do
        read -r r p d < <(awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } /^Private_Dirty:/ { d = $2 }
            END { print r + 0, p + 0, d + 0 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo "0 0 0")
        rss=$((rss + r)) pss=$((pss + p)) dirty=$((dirty + d)) n=$((n + 1))
    done
    ((n)) || n=1
    echo "$((rss / n)) $((pss / n)) $((dirty / n))"
}
# This home's pod holders, from `env list --json` (details.sandbox.holder_pid).
holder_pids() {
    "$PTEST" env list --json | "$PY" -c '
import json, sys
print(" ".join(str(e.get("details", {}).get("sandbox", {}).get("holder_pid", "")) for e in json.load(sys.stdin)))'
}

# A freshly written file's pages are dirty in the page cache and would count as private dirty
# memory of whoever maps them: write the programs back first (ptest, and the ptest-pod-holder
# built beside it that the holders run; a --rev from before it has none).
sync "$PTEST"
holder_program=$(dirname "$PTEST")/ptest-pod-holder
[[ ! -e $holder_program ]] || sync "$holder_program"

# The reference: as many processes as the first checkpoint that only call pause(), statically
# linked as a pod's pause container is (skipped where no C compiler is found).
if command -v cc >/dev/null &&
    printf '#include <unistd.h>\nint main(void) { for (;;) pause(); }\n' |
    cc -x c -O2 -static -o "$SCRATCH/pause" - 2>/dev/null; then
    sync "$SCRATCH/pause"
    pauses=()
    for ((i = 0; i < checkpoints[0]; i++)); do
        "$SCRATCH/pause" &
        pauses+=($!)
    done
    sleep 0.2
    read -r prss ppss pdirty <<<"$(mem_per_process "${pauses[@]}")"
    kill "${pauses[@]}"
    wait "${pauses[@]}" 2>/dev/null || true
fi

# --- CLI -------------------------------------------------------------------------------------
home=$(bench_home)
export PTEST_HOME=$home PTEST_MAX_ENVIRONMENTS=10000
bench_meta scale-cli scale "scale (CLI): sandboxed environments (medium: pod) created one by one" \
    --checkpoints "${checkpoints[*]}" \
    --ratio "exec true=limit: fork/exec true" \
    --ratio "create + rm one more=limit: mkdir + rmdir" \
    --note "create (filling up to N): each sequential \`ptest env create\` on the way to N, timed alone" \
    --note "the other rows run at population N: hyperfine, $samples runs x 2 rounds, rotated"
count=0
for n in "${checkpoints[@]}"; do
    bench_log "scale-cli: filling to $n environments"
    fill=$(mktemp "$SCRATCH/fill.XXXXXX")
    while ((count < n)); do
        bench_timed "$fill" "$PTEST" env create "s$count"
        count=$((count + 1))
    done
    (
        ROUNDS=2 WARMUP=3 RUNS=$samples
        mid="s$((n / 2))"
        bench_hyperfine "scale-cli.n$n" \
            "exec true" "$PTEST env exec $mid -- true" \
            "limit: fork/exec true" "true" \
            "create + rm one more" "sh -c '$PTEST env create extra && $PTEST env rm extra'" \
            "limit: mkdir + rmdir" "sh -c 'mkdir d && rmdir d'" \
            "list" "$PTEST env list"
    )
    bench_record "$OUT/scale-cli.n$n.fill.json" "create (filling up to N)" "$fill"
    bench_metric scale-cli "peak RSS of \`ptest env list\`" "$n" "$(bench_max_rss "$PTEST" env list)" KiB
    bench_metric scale-cli "peak RSS of \`ptest env exec\`" "$n" "$(bench_max_rss "$PTEST" env exec s0 -- true)" KiB
    # shellcheck disable=SC2046
    read -r hrss hpss hdirty <<<"$(mem_per_process $(holder_pids))"
    bench_metric scale-cli "memory of an idle environment (its pod holder): RSS" "$n" "$hrss" KiB
    bench_metric scale-cli "memory of an idle environment (its pod holder): PSS" "$n" "$hpss" KiB
    bench_metric scale-cli "memory of an idle environment (its pod holder): private dirty" "$n" "$hdirty" KiB
    if [[ -n ${ppss:-} && $n == "${checkpoints[0]}" ]]; then
        bench_metric scale-cli "reference: a static process that only calls pause(): RSS" "$n" "$prss" KiB
        bench_metric scale-cli "reference: a static process that only calls pause(): PSS" "$n" "$ppss" KiB
        bench_metric scale-cli "reference: a static process that only calls pause(): private dirty" "$n" "$pdirty" KiB
    fi
done
bench_log "scale-cli: exec in each of $max, then remove each"
each=$(mktemp "$SCRATCH/each.XXXXXX")
rm_each=$(mktemp "$SCRATCH/rm.XXXXXX")
for ((i = 0; i < max; i++)); do bench_timed "$each" "$PTEST" env exec "s$i" -- true; done
for ((i = 0; i < max; i++)); do bench_timed "$rm_each" "$PTEST" env rm "s$i"; done
bench_record "$OUT/scale-cli.final.json" "exec in each" "$each" \
    "remove each (population N down to 0)" "$rm_each"
left=$("$PTEST" env list --json | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')
[[ $left == 0 ]] || { bench_log "scale-cli: $left environments left after removing all"; exit 1; }

# --- library ---------------------------------------------------------------------------------
cps=${checkpoints[*]}
securities=(medium)
((QUICK)) || securities+=(low)
for sec in "${securities[@]}"; do
    id=scale-lib
    [[ $sec == medium ]] || id=scale-lib-$sec
    home=$(bench_home)
    bench_log "$id: same through one Manager (bench/lib-bench), security $sec"
    bench_meta "$id" scale "scale (library): environments at security $sec created one by one" \
        --checkpoints "${checkpoints[*]}" \
        --ratio "exec true=limit: fork/exec true" \
        --ratio "create + rm one more=limit: mkdir + rmdir" \
        --note "one process, one Manager; at each N, $samples samples of each row, interleaved"
    rss=$(bench_max_rss "$LIBBENCH" scale --home "$home" --checkpoints "${cps// /,}" \
        --samples "$samples" --security "$sec" --out "$OUT/$id")
    bench_metric "$id" "peak RSS of the lib-bench process (/usr/bin/time -v)" "$max" "$rss" KiB
done
