# proxy: traffic through ptest's fault proxy with no fault on (`ptest net fault e echo`: a
# supervised process of a medium environment, host network) against a direct connection (the
# limit) and socat (a plain relay, one forked process per connection), on loopback. One client
# process (bench/lib-bench tcp) serves the upstream and interleaves the contenders: 64-byte
# round trips over a kept connection (the latency a proxy adds), and downloads of M MiB on a
# new connection each (its throughput). No netem here: this kernel has none.
round_trips=$((QUICK ? 2000 : 10000))
transfers=$((QUICK ? 10 : 30))
mib=$((QUICK ? 64 : 256))
home=$(bench_home)
export PTEST_HOME=$home
"$PTEST" env create e --port echo >/dev/null
json_field() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
upstream=$("$PTEST" port list e --json | json_field 'd[0]["port"]')
proxy=$("$PTEST" net fault e echo --json | json_field 'd["proxy_port"]')
via="ptest net fault (no faults)=$proxy"
socat_pid=
if bench_requires socat; then
    relay=$("$LIBBENCH" bind-once)
    socat "TCP-LISTEN:$relay,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$upstream" &
    socat_pid=$!
    # Listening (seen in /proc/net/tcp, state 0A): a probe connection would make it connect
    # to the upstream, which lib-bench starts later.
    for _ in $(seq 100); do
        grep -q ":$(printf %04X "$relay") 00000000:0000 0A" /proc/net/tcp && break
        sleep 0.05
    done
    via+=",socat (plain relay)=$relay"
fi
bench_meta proxy-rtt compare "fault proxy: one 64-byte round trip over a kept connection ($round_trips per contender)" \
    --limit "direct (limit)" --ptest "ptest net fault (no faults)" \
    --note "one client, contenders interleaved round trip by round trip after 100 warm-up ones" \
    --note "the proxy's added latency is its median minus the limit's"
bench_meta proxy-throughput compare "fault proxy: download of $mib MiB on a new connection ($transfers per contender)" \
    --limit "direct (limit)" --ptest "ptest net fault (no faults)" \
    --note "throughput = $mib MiB / median; connection set-up included"
bench_log "proxy: $round_trips round trips and $transfers downloads of $mib MiB per contender"
"$LIBBENCH" tcp --upstream "$upstream" --via "$via" --round-trips "$round_trips" \
    --transfers "$transfers" --mib "$mib" --out "$OUT/proxy"
[[ -n $socat_pid ]] && kill "$socat_pid"
"$PTEST" env rm e >/dev/null
