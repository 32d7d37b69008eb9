# Sourced by bench/run and by every bench/scenarios/*.sh: what a scenario may call.
#
# Set by bench/run before a scenario is sourced:
#   BENCH     this directory            OUT     where results go (report.py reads it)
#   PTEST     the release ptest binary  LIBBENCH the release ptest-lib-bench binary
#   PY        the real python3          QUICK   1 under --quick, else 0
#   ROUNDS WARMUP RUNS                  how bench_compare repeats (smaller under --quick)
#   SCRATCH   a temp dir removed at exit; each scenario runs with its cwd in a fresh one

bench_log() { printf '[bench] %s\n' "$*" >&2; }

# bench_home: a fresh, empty PTEST_HOME; prints its path.
bench_home() { mktemp -d "$SCRATCH/home.XXXXXX"; }

# bench_requires CMD...: returns 1 (the scenario should `return 0`) when a command is missing.
bench_requires() {
    local c
    for c in "$@"; do
        if ! command -v "$c" >/dev/null; then
            bench_log "skipped: $c is not installed"
            return 1
        fi
    done
}

# bench_meta ID KIND TITLE [report.py meta flags...]: describes a result for report.py.
bench_meta() {
    local id=$1 kind=$2 title=$3
    shift 3
    "$PY" "$BENCH/report.py" meta --out "$OUT" --id "$id" --kind "$kind" --title "$title" "$@"
}

# bench_hyperfine ID NAME CMD [NAME CMD]...: ROUNDS hyperfine runs of the contenders in one
# go, the order rotated every round so none always runs first (hyperfine runs each command's
# runs back to back); writes ID.r<k>.json, merged by report.py. Commands run without a shell
# (-N), so the limit is a bare fork/exec; use `sh -c '…'` in a command that needs one.
bench_hyperfine() {
    local id=$1
    shift
    local names=() cmds=()
    while (($#)); do
        names+=("$1")
        cmds+=("$2")
        shift 2
    done
    local n=${#names[@]} r k i args
    for ((r = 0; r < ROUNDS; r++)); do
        args=()
        for ((k = 0; k < n; k++)); do
            i=$(((k + r) % n))
            args+=(--command-name "${names[i]}" "${cmds[i]}")
        done
        # Its "statistical outliers" warnings are expected here; show its stderr on failure.
        if ! hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" \
            --export-json "$OUT/$id.r$r.json" "${args[@]}" >/dev/null 2>"$SCRATCH/hyperfine.err"; then
            cat "$SCRATCH/hyperfine.err" >&2
            return 1
        fi
    done
}

# bench_compare ID TITLE --limit NAME --ptest NAME [--note TEXT]... -- NAME CMD [NAME CMD]...
# One table: median, p90, ratio to the limit, and ptest's ratio to each contender.
bench_compare() {
    local id=$1 title=$2
    shift 2
    local meta=()
    while [[ $1 != -- ]]; do
        meta+=("$1" "$2")
        shift 2
    done
    shift
    bench_log "$id: $title"
    bench_meta "$id" compare "$title" "${meta[@]}"
    bench_hyperfine "$id" "$@"
}

# bench_timed FILE CMD...: runs CMD (output discarded) and appends "start end" in seconds to
# FILE; report.py record turns such files into hyperfine-shaped JSON. EPOCHREALTIME is a bash
# builtin, so the only process timed is CMD's.
bench_timed() {
    local file=$1 t0 t1
    shift
    t0=$EPOCHREALTIME
    "$@" >/dev/null
    t1=$EPOCHREALTIME
    printf '%s %s\n' "$t0" "$t1" >>"$file"
}

# bench_record OUTFILE NAME PAIRS [NAME PAIRS]...: hyperfine-shaped JSON from bench_timed files.
bench_record() {
    local out=$1
    shift
    local args=()
    while (($#)); do
        args+=(--command "$1" "$2")
        shift 2
    done
    "$PY" "$BENCH/report.py" record --out-file "$out" "${args[@]}"
}

# bench_max_rss CMD...: runs CMD under /usr/bin/time -v and prints its peak RSS in KiB.
bench_max_rss() {
    local log
    log=$(mktemp "$SCRATCH/rss.XXXXXX")
    /usr/bin/time -v -o "$log" "$@" >/dev/null
    awk -F': ' '/Maximum resident set size/ { print $2 }' "$log"
}

# bench_metric ID NAME N VALUE UNIT: one line for a scenario's extra readings (memory).
bench_metric() {
    printf '%s\t%s\t%s\t%s\n' "$2" "$3" "$4" "$5" >>"$OUT/$1.tsv"
}
