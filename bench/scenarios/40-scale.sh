# scale: fill one home with directory environments one by one (CLI, then library), and at each
# checkpoint measure exec, create + rm of one more, and list at that population against their
# limits; then exec in each and remove all. The slope between checkpoints is the cost of one
# more environment existing. Peak RSS of `ptest env list` / `env exec` per checkpoint, and of
# the whole library run.
if ((QUICK)); then checkpoints=(50 100); else checkpoints=(50 100 200 500); fi
max=${checkpoints[-1]}
samples=$((QUICK ? 20 : 60))

# --- CLI -------------------------------------------------------------------------------------
home=$(bench_home)
export PTEST_HOME=$home PTEST_MAX_ENVIRONMENTS=10000
bench_meta scale-cli scale "scale (CLI): directory environments created one by one" \
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
home=$(bench_home)
bench_log "scale-lib: same through one Manager (bench/lib-bench)"
bench_meta scale-lib scale "scale (library): directory environments created one by one" \
    --checkpoints "${checkpoints[*]}" \
    --ratio "exec true=limit: fork/exec true" \
    --ratio "create + rm one more=limit: mkdir + rmdir" \
    --note "one process, one Manager; at each N, $samples samples of each row, interleaved"
cps=${checkpoints[*]}
rss=$(bench_max_rss "$LIBBENCH" scale --home "$home" --checkpoints "${cps// /,}" \
    --samples "$samples" --out "$OUT/scale-lib")
bench_metric scale-lib "peak RSS of the lib-bench process (/usr/bin/time -v)" "$max" "$rss" KiB
