# exec in an environment, through the CLI: one `ptest env exec E -- true` in a sandboxed
# environment (the default, security medium: the pod's holder forks the command, already in
# the pod's namespaces and cgroup), in a `--security low` one (cgroup only, host namespaces)
# and at the directory level (made with PTEST_SANDBOX_DISABLE=namespaces,cgroups: what hosts without namespaces and
# cgroups fall back to), against the bare fork/exec of `true` (the limit) and the sandboxes
# people reach for instead.
home=$(bench_home)
export PTEST_HOME=$home
"$PTEST" env create em >/dev/null
"$PTEST" env create el --security low >/dev/null
PTEST_SANDBOX_DISABLE=namespaces,cgroups "$PTEST" env create ed >/dev/null
# What was really applied (a host without namespaces would fall back): details.isolation, as
# "security|pod|cgroup|holder pid".
isolation() {
    "$PTEST" env show "$1" --json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)["environment"].get("details", {})
i, s = d.get("isolation", {}), d.get("sandbox", {})
print("|".join([i.get("security", "?"), "own pod" if i.get("pod") else "no pod",
                "own cgroup" if i.get("cgroup") else "no cgroup", str(s.get("holder_pid", ""))]))'
}
IFS='|' read -r msec mpod mcg mholder <<<"$(isolation em)"
IFS='|' read -r lsec lpod lcg _ <<<"$(isolation el)"
IFS='|' read -r dsec dpod dcg _ <<<"$(isolation ed)"

contenders=(
    "ptest env exec (medium: pod)" "$PTEST env exec em -- true"
    "ptest env exec (low: cgroup only)" "$PTEST env exec el -- true"
    "ptest env exec (directory: no sandbox)" "$PTEST env exec ed -- true"
    "true (fork/exec)" "true"
)
notes=()
if bench_requires bwrap; then
    contenders+=("bwrap --unshare-all" "bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true")
fi
if [[ -n $mholder ]] && nsenter -t "$mholder" -a true 2>/dev/null; then
    contenders+=("nsenter -t HOLDER -a (join the same pod)" "nsenter -t $mholder -a true")
fi
if unshare -pfmiu --mount-proc true 2>/dev/null; then
    contenders+=("unshare -pfmiu --mount-proc" "unshare -pfmiu --mount-proc true")
else
    notes+=(--note "unshare -pfmiu is not permitted here (needs root), so it is left out")
fi

bench_compare exec-cli "exec in an environment (CLI), sandboxed level" \
    --limit "true (fork/exec)" --ptest "ptest env exec (medium: pod)" \
    --note "each ptest run is a whole process: it opens its state, records the exec and its events, asks the pod's holder to start the command (medium) or joins the cgroup through a relay (low), waits" \
    --note "as applied (\`env show\`): the default environment: $msec, $mpod, $mcg; the \`--security low\` one: $lsec, $lpod, $lcg; the directory-level one: $dsec, $dpod, $dcg" \
    --note "nsenter joins the medium environment's holder (all its namespaces) and runs \`true\`: a process in the same pod, the way tools without a holder that forks get one" \
    --note "the directory level is what hosts without namespaces and cgroups get; ptest still runs the command through its relay (so a killed ptest ends the command's group)" \
    --note "bwrap and unshare build their namespaces on every call; ptest builds them once, at create" \
    --below "ptest env exec (medium: pod)|bwrap --unshare-all" \
    "${notes[@]}" -- "${contenders[@]}"
"$PTEST" env rm em el ed >/dev/null

# A CLI call that does nothing but start and print: what every other call pays first.
# The floor under it: a Rust program that only prints (std's start-up), linked as ptest's
# release build is (scripts/release-flags: statically where the host has glibc).
hello=$SCRATCH/rust-hello
start=()
if bench_requires rustc; then
    printf 'fn main() {\n    println!("ptest 0.1.0");\n}\n' >"$hello.rs"
    read -r -a link <<<"$("$BENCH/../scripts/release-flags" --rustc)"
    rustc -C opt-level=3 "${link[@]}" -o "$hello" "$hello.rs"
    start=("Rust hello-world (rustc -O, linked like ptest)" "$hello")
fi
bench_compare cli-start "a CLI call on its own: \`ptest --version\`" \
    --limit "true (fork/exec)" --ptest "ptest --version" \
    --note "loading and starting the binary, parsing the command line, printing one line; no state is opened" \
    --note "the Rust hello-world is the floor of any Rust binary here: std's start-up and one print, no more; it and ptest are linked as scripts/release-flags says (statically, without a dynamic loader, where the host has glibc), so either can start faster than the dynamically linked \`true\`" \
    --at-most "ptest --version|1.3" \
    -- "ptest --version" "$PTEST --version" "true (fork/exec)" "true" "${start[@]}"
