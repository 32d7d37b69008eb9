# Python (ptest-env, issue 16): the wheel built in release mode into the target dir of the run's
# ptest build (bench/target, or bench/target/rev with --rev), installed with testcontainers into bench/.tools/py-venv.
# 1. exec: `env.exec(["true"])` from Python in a sandboxed (medium) environment against the
#    Rust library's `Manager::execute_command(["true"])` in the same kind of environment (the
#    limit: what the bindings wrap) and `subprocess.run(["true"])`. Python rounds (env.exec and
#    subprocess.run interleaved call by call) alternate with lib-bench rounds.
# 2. docker: `manager.create_environment(image=IMG)` + `env.remove()` against testcontainers'
#    `DockerContainer(IMG).start()` + `.stop()` (Ryuk disabled: it needs a pulled image) and
#    the Docker SDK's `containers.run(detach=True)` + `remove(force=True)` (the limit), all
#    from one Python process, interleaved call by call. IMG: busybox-static FROM scratch.
# The wheel is built from the work tree, or from BENCH_SRC when set (with --rev:
# BENCH_SRC=bench/target/rev-src bench/run --rev REV python).
venv=$BENCH/.tools/py-venv
src=${BENCH_SRC:-$BENCH/..}
bench_log "python: building the ptest-env wheel (release) from $src and its venv"
wheel=$(CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BENCH/target} "$src/scripts/build-wheel" --release | tail -n 1)
if [[ ! -x $venv/bin/python ]]; then
    "$PY" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check 'testcontainers>=4,<5'
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
VPY=$venv/bin/python

export PTEST_HOME=$(bench_home)
iters=$((QUICK ? 300 : 2000))
rounds=$((QUICK ? 1 : 2))
bench_meta py-exec compare "Python: exec in an environment (ptest-env)" \
    --limit 'Manager::execute_command(["true"]), security medium' \
    --ptest 'env.exec(["true"]) from Python, security medium' \
    --note "Python rounds (env.exec and subprocess.run interleaved call by call, one Manager) alternate with bench/lib-bench rounds (the Rust library, the limit here: what the bindings wrap); $iters calls per round, $rounds rounds each" \
    --note "env.exec releases the GIL and runs the same Manager::execute_command on the module's tokio runtime, and builds a ProcessResult with the captured output" \
    --at-most 'env.exec(["true"]) from Python, security medium|1.5' \
    --note "the issue-16 target below: env.exec from Python within 1.5× the Rust library's exec" \
    --note "the limit's rounds come from bench/lib-bench, which interleaves each execute_command call with its own peers (std and tokio Command, bwrap, unshare); the Python rounds interleave only subprocess.run: the ratio compares the two loops as they are, and below 1× means the bindings add less than that difference, not that they are faster than Rust"
for ((r = 0; r < rounds; r++)); do
    "$VPY" - "$iters" "$OUT/py-exec.r$((2 * r)).json" <<'PY'
import json, subprocess, sys, time

import ptest

iters, out = int(sys.argv[1]), sys.argv[2]
env = ptest.Manager().create_environment("py-exec", security="medium")
rows = {'env.exec(["true"]) from Python, security medium': [], 'subprocess.run(["true"])': []}
calls = list(zip(rows.values(), [lambda: env.exec(["true"]), lambda: subprocess.run(["true"])]))
for i in range(50 + iters):
    for times, call in calls:
        start = time.perf_counter()
        call()
        if i >= 50:
            times.append(time.perf_counter() - start)
env.remove()
with open(out, "w") as f:
    json.dump({"results": [{"command": k, "times": v} for k, v in rows.items()]}, f)
PY
    "$LIBBENCH" exec --home "$(bench_home)" --iters "$iters" --warmup 50 --security medium \
        --out "$SCRATCH/lib-exec.json"
    # Only the library's row: its peers are measured in the exec-lib table.
    "$VPY" - "$SCRATCH/lib-exec.json" "$OUT/py-exec.r$((2 * r + 1)).json" <<'PY'
import json, sys

results = json.load(open(sys.argv[1]))["results"]
keep = [r for r in results if r["command"].startswith("Manager::execute_command")]
json.dump({"results": keep}, open(sys.argv[2], "w"))
PY
done

if ! command -v docker >/dev/null || ! docker version >/dev/null 2>&1 || [[ ! -x /bin/busybox ]]; then
    bench_log "python docker: skipped: no Docker engine or no /bin/busybox"
    bench_meta py-docker compare "Python: docker environment vs testcontainers — skipped" \
        --note "skipped: no Docker engine answered \`docker version\`, or /bin/busybox (busybox-static) is missing"
    return 0
fi
ctx=$SCRATCH/py-docker-ctx
mkdir -p "$ctx"
cp /bin/busybox "$ctx/busybox"
printf '%s\n' 'FROM scratch' 'COPY busybox /bin/busybox' \
    'RUN ["/bin/busybox", "--install", "-s", "/bin"]' 'ENV PATH=/bin' 'CMD ["sh"]' >"$ctx/Dockerfile"
img=ptest-bench-busybox:latest
docker build -q -t "$img" "$ctx" >/dev/null
n=$((QUICK ? 5 : 20))
bench_meta py-docker compare "Python: docker environment vs testcontainers (start + stop)" \
    --limit 'docker SDK containers.run(detach) + remove(force)' \
    --ptest 'create_environment(image=IMG) + remove()' \
    --note "from one Python process, contenders interleaved call by call, $n each; IMG: busybox-static FROM scratch (no registry), running \`sleep 2147483647\`" \
    --note "testcontainers $("$VPY" -c 'import importlib.metadata as m; print(m.version("testcontainers"))') with TESTCONTAINERS_RYUK_DISABLED=true (Ryuk needs an image pulled from a registry); ptest needs no reaper container: \`ptest gc\` removes a dead session's environments" \
    --note "ptest's container: the root bind-mounted, Docker's init, labels; remove() also removes its leftovers"
TESTCONTAINERS_RYUK_DISABLED=true "$VPY" - "$img" "$n" "$OUT/py-docker.json" <<'PY'
import json, sys, time

import docker
from testcontainers.core.container import DockerContainer

import ptest

img, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
manager = ptest.Manager()
client = docker.from_env()


def ptest_env():
    manager.create_environment(image=img).remove()


def testcontainers():
    container = DockerContainer(img).with_command("sleep 2147483647")
    container.start()
    container.stop()


def sdk():
    client.containers.run(img, "sleep 2147483647", detach=True, init=True).remove(force=True)


rows = {
    "create_environment(image=IMG) + remove()": ptest_env,
    "testcontainers DockerContainer(IMG).start() + stop()": testcontainers,
    "docker SDK containers.run(detach) + remove(force)": sdk,
}
times = {k: [] for k in rows}
for i in range(1 + n):
    for name, call in rows.items():
        start = time.perf_counter()
        call()
        if i >= 1:
            times[name].append(time.perf_counter() - start)
with open(out, "w") as f:
    json.dump({"results": [{"command": k, "times": v} for k, v in times.items()]}, f)
PY
