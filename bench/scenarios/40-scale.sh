# scale: fill one home with sandboxed environments (the default, security medium: a cgroup and a
# pod holder each) one by one (CLI, then library), and at each checkpoint measure exec, create +
# rm of one more, and list at that population against their limits; then exec in each and
# remove all. The slope between checkpoints is the cost of one more environment existing. Peak
# RSS of `ptest env list` / `env exec` per checkpoint, of the holders, and of the whole library
# run. The full run repeats the library run at `--security low` (cgroup only).
if ((QUICK)); then checkpoints=(50 100); else checkpoints=(50 100 200 500); fi
max=${checkpoints[-1]}
samples=$((QUICK ? 20 : 60))

# Sum of the memory of this home's pod holders (nothing else runs in an idle environment), found
# from `env list --json` (details.sandbox.holder_pid): "RSS PSS" in KiB. A holder is forked from
# ptest, so its RSS counts pages it shares; PSS divides shared pages among their users.
holders_mem() {
    local rss=0 pss=0 pid kb
    for pid in $("$PTEST" env list --json | "$PY" -c '
import json, sys
print(" ".join(str(e.get("details", {}).get("sandbox", {}).get("holder_pid", "")) for e in json.load(sys.stdin)))'); do
        kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        rss=$((rss + ${kb:-0}))
        kb=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
        pss=$((pss + ${kb:-0}))
    done
    echo "$rss $pss"
}

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
    read -r hrss hpss <<<"$(holders_mem)"
    bench_metric scale-cli "memory of all pod holders: sum of RSS" "$n" "$hrss" KiB
    bench_metric scale-cli "memory of all pod holders: sum of PSS (shared pages divided)" "$n" "$hpss" KiB
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
