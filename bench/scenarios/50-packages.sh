# packages: 10 pinned packages into a fresh environment from a warm cache, no network: 10 small
# wheels built here, every contender with `--find-links DIR --no-index`. ptest three times: create
# with the packages in the spec (after the first, the same spec hash is cloned from its template:
# reuse by hash), create with a spec never seen before (one extra name differs each run, so the
# template is built: uv pip install into a clone of the empty venv, warm cache) and create +
# `ptest pkg install` (the installer runs every time); against `uv venv` + `uv pip install` (the
# limit: what ptest drives) and `python -m venv` + `pip install`. The first create of a spec
# (template built, cache cold) is timed alone, fresh home each time.
bench_requires uv || return 0
wheels=$SCRATCH/wheels
if [[ ! -d $wheels ]]; then
    mkdir -p "$wheels"
    "$PY" - "$wheels" <<'PYEOF'
import base64, hashlib, os, sys, zipfile
out = sys.argv[1]
def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (path, digest, len(data))
for i in range(10):
    name, version = "ptbench_%d" % i, "1.0"
    info = "%s-%s.dist-info" % (name, version)
    files = {}
    files["%s/__init__.py" % name] = ("VERSION = %r\nN = %d\n" % (version, i)).encode()
    files["%s/data.py" % name] = ("TABLE = %r\n" % list(range(200))).encode()
    files[info + "/METADATA"] = ("Metadata-Version: 2.1\nName: ptbench-%d\nVersion: %s\nSummary: bench package %d\n" % (i, version, i)).encode()
    files[info + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: ptest-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [record_line(p, d) for p, d in files.items()] + [info + "/RECORD,,"]
    files[info + "/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(os.path.join(out, "%s-%s-py3-none-any.whl" % (name, version)), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
PYEOF
fi
pkgs=""
for i in $(seq 0 9); do pkgs+=" ptbench-$i==1.0"; done
idx="--find-links $wheels --no-index"
cpkgs=""
for p in $pkgs; do cpkgs+=" --package $p"; done
home=$(bench_home)
export PTEST_HOME=$home UV_CACHE_DIR=$SCRATCH/uv-cache PIP_CACHE_DIR=$SCRATCH/pip-cache \
    PIP_DISABLE_PIP_VERSION_CHECK=1
contenders=(
    "ptest env create with 10 packages + rm (reuse by hash)" "sh -c '$PTEST env create --python $PY$cpkgs $idx v && $PTEST env rm v'"
    "ptest env create with 10 packages, new spec + rm (template built)" "sh -c 'n=\$(date +%s%N); $PTEST env create --python $PY$cpkgs --package ptbench-0[x\$n]==1.0 $idx v && $PTEST env rm v'"
    "ptest env create + ptest pkg install 10 + rm" "sh -c '$PTEST env create --level virtualenv --python $PY v && $PTEST pkg install v$pkgs $idx && $PTEST env rm v'"
    "uv venv + uv pip install 10 + rm -rf" "sh -c 'uv venv -q -p $PY v && uv pip install -q -p v/bin/python$pkgs $idx && rm -rf v'"
    "uv venv + uv pip install --no-cache 10 + rm -rf (nothing shared)" "sh -c 'uv venv -q -p $PY v && uv pip install -q --no-cache -p v/bin/python$pkgs $idx && rm -rf v'"
)
notes=()
if ((!QUICK)); then
    contenders+=("python -m venv + pip install 10 + rm -rf" "sh -c '$PY -m venv v && v/bin/pip install -q$pkgs $idx && rm -rf v'")
else
    notes+=(--note "--quick leaves out \`python -m venv\` + \`pip install\` (seconds each)")
fi

# The first create of a spec: template built and cache cold (fresh home each time), timed alone.
first=$(mktemp "$SCRATCH/first.XXXXXX")
for ((i = 0; i < (QUICK ? 2 : 5); i++)); do
    PTEST_HOME=$(bench_home) bench_timed "$first" sh -c "$PTEST env create --python $PY$cpkgs $idx v && $PTEST env rm v"
done
bench_record "$OUT/packages.json" "first create with 10 packages + rm (builds the template; fresh home, cold cache)" "$first"
(
    ROUNDS=$((QUICK ? 1 : 2)) WARMUP=2 RUNS=$((QUICK ? 5 : 8))
    bench_compare packages "packages: 10 pinned wheels into a fresh environment, warm cache" \
        --limit "uv venv + uv pip install 10 + rm -rf" --ptest "ptest env create with 10 packages + rm (reuse by hash)" \
        --note "10 local wheels, every contender \`--find-links DIR --no-index\` (no network); caches warm after the warm-up runs" \
        --note "reuse by hash: an environment whose spec (interpreter, packages, index options) hashes like an earlier one is cloned from its template (copies, never hard links: no file is shared between environments); ptest runs uv with UV_LINK_MODE=copy, the uv row keeps uv's default (hard links from its cache); \`pkg install\` into an existing environment always runs the installer (uv)" \
        --note "uv caches what an interpreter says about itself by the path it is given, and each environment's venv has a new path: ptest hands uv a link to the venv at a path that stays the same (\`cache/venv-links/\`), so uv starts no python, as in the uv row, which installs into the same \`v/bin/python\` every time" \
        --note "nothing shared: what \`ptest pkg install\` runs inside the environment is uv with \`--no-cache\` (a cache the command could write to would be shared with every other environment, issue 23), so uv asks the venv's python about itself (~45 ms here) and unpacks every wheel anew; this uv row does the same on the host" \
        --note "new spec: the extra \`ptbench-0[x<n>]\` names an extra the package lacks (uv warns, installs the same files) so that every run hashes to a spec never seen before" \
        --note "the first-create row is timed alone (no CPU column), in a fresh PTEST_HOME each time" \
        "${notes[@]}" -- "${contenders[@]}"
)
