# virtualenv create + remove: `ptest env create --level virtualenv v && ptest env rm v` (an
# empty venv, sandboxed at the default medium) against creating and deleting an empty venv with
# uv (the limit: the installer ptest itself drives when uv is on PATH), `python -m venv` and
# `virtualenv`, all from the same interpreter, each through one `sh -c`. Where pyenv is
# installed, ptest and uv are also given its `python3` shim, which uv runs and ptest resolves.
bench_requires uv virtualenv || return 0
home=$(bench_home)
export PTEST_HOME=$home
contenders=(
    "ptest env create --level virtualenv + rm" "sh -c '$PTEST env create --level virtualenv --python $PY v && $PTEST env rm v'"
    "uv venv + rm -rf" "sh -c 'uv venv -q -p $PY v && rm -rf v'"
    "python -m venv --without-pip + rm -rf" "sh -c '$PY -m venv --without-pip v && rm -rf v'"
    "virtualenv --no-seed + rm -rf" "sh -c 'virtualenv -q --no-seed -p $PY v && rm -rf v'"
)
notes=()
shim=$(pyenv root 2>/dev/null || true)/shims/python3
if [[ -x $shim ]]; then
    contenders+=(
        "ptest env create --python <pyenv shim> + rm" "sh -c '$PTEST env create --level virtualenv --python $shim v && $PTEST env rm v'"
        "uv venv -p <pyenv shim> + rm -rf" "sh -c 'uv venv -q -p $shim v && rm -rf v'"
    )
else
    notes+=(--note "pyenv is not installed: no rows through its shim")
fi
if ((!QUICK)); then
    # The defaults people type, which also seed pip (seconds, so only in the full run).
    contenders+=(
        "python -m venv (with pip) + rm -rf" "sh -c '$PY -m venv v && rm -rf v'"
        "virtualenv (seeds pip) + rm -rf" "sh -c 'virtualenv -q -p $PY v && rm -rf v'"
    )
else
    notes+=(--note "--quick leaves out \`python -m venv\` and \`virtualenv\` with pip seeded (seconds each)")
fi
(
    ROUNDS=$((QUICK ? 1 : 2)) WARMUP=2 RUNS=$((QUICK ? 5 : 8))
    bench_compare virtualenv "virtualenv create + remove (empty venv)" \
        --limit "uv venv + rm -rf" --ptest "ptest env create --level virtualenv + rm" \
        --note "uv is on PATH, so ptest creates venvs with uv; an empty venv has one spec hash, so after the first run every ptest create is a clone of its template (copies, reflinked where the filesystem can)" \
        --note "ptest keeps what an interpreter and uv said about themselves in \$PTEST_HOME/cache/probes (trusted while the binary is unchanged) and resolves pyenv shims without running them, so a create after the first starts no subprocess" \
        --note "ptest's row also pays two ptest processes, the sandbox (cgroup + pod holder) and the environment's bookkeeping" \
        "${notes[@]}" -- "${contenders[@]}"
)
