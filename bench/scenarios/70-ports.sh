# ports: leasing named host ports. CLI: `ptest port alloc e pI` for N distinct names in a row
# (leases accumulate, so the N-th pays for the N-1 before it) against one process that binds
# port 0 and exits (bench/lib-bench bind-once, the limit of one allocating process); and one
# alloc + release pair under hyperfine (CPU column). Library: Manager::allocate_port over N
# names against a bare bind-to-port-0-and-close loop.
names=$((QUICK ? 50 : 200))
home=$(bench_home)
export PTEST_HOME=$home
"$PTEST" env create e --security low >/dev/null
bench_log "ports-cli: $names allocations, one process each"
alloc=$(mktemp "$SCRATCH/alloc.XXXXXX")
bind=$(mktemp "$SCRATCH/bind.XXXXXX")
for ((i = 0; i < names; i++)); do
    bench_timed "$alloc" "$PTEST" port alloc e "p$i"
    bench_timed "$bind" "$LIBBENCH" bind-once
done
leased=$("$PTEST" port list e --json | "$PY" -c 'import json,sys; l=json.load(sys.stdin); print(len(l), len({x["port"] for x in l}))')
[[ $leased == "$names $names" ]] || { bench_log "ports: expected $names distinct leases, got $leased"; exit 1; }
bench_meta ports-cli compare "ports: \`ptest port alloc\` over $names names (CLI)" \
    --limit "limit: bind port 0 in a new process" --ptest "ptest port alloc e pI (I = 0…N-1)" \
    --note "timed one by one, interleaved; allocations per second = 1 / median" \
    --note "ptest binds TCP and UDP before it leases, under the store's write lock, and records the lease"
bench_record "$OUT/ports-cli.json" "ptest port alloc e pI (I = 0…N-1)" "$alloc" \
    "limit: bind port 0 in a new process" "$bind"
bench_compare ports-pair "ports: one alloc + release (CLI, two processes each side)" \
    --limit "limit: bind-once twice" --ptest "ptest port alloc + release" -- \
    "ptest port alloc + release" "sh -c '$PTEST port alloc e x >/dev/null && $PTEST port release e x >/dev/null'" \
    "limit: bind-once twice" "sh -c '$LIBBENCH bind-once >/dev/null && $LIBBENCH bind-once >/dev/null'"
"$PTEST" env rm e >/dev/null

home=$(bench_home)
bench_log "ports-lib: Manager::allocate_port over $names names vs bind port 0"
bench_meta ports-lib compare "ports: Manager::allocate_port over $names names (library)" \
    --limit "limit: bind port 0 + close" --ptest "Manager::allocate_port (N names, one by one)" \
    --note "one process, one Manager, one environment; interleaved call by call; then every lease released"
"$LIBBENCH" ports --home "$home" --names "$names" --out "$OUT/ports-lib.json"
