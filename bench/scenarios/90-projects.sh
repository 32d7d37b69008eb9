# projects (issue 20, item 10): three real PyPI projects' own test suites, their sdists pinned
# (itsdangerous 2.2.0, more-itertools 10.5.0, packaging 24.2; downloaded once with pip into
# bench/.cache/sdists), each run as two suites two at a time — the tests under Python 3.11 and
# under 3.12, tox's `py311,py312` — by `ptest run -j 2`, `tox -p 2` (pip), tox-uv `-p 2` and
# plain uv + pytest (`uv venv` + `uv pip install` + pytest per interpreter, both at once).
# Cold: no environment of the tool exists (a PTEST_HOME emptied of all but its package cache
# cache/python, no .tox, no .venv-*) while the package caches (uv's, pip's, ptest's) are warm;
# warm: run again with them in place. The limit in every table is tox-uv: the issue's goals are
# ratios to it.
bench_requires uv tox || return 0
cache=$BENCH/.cache/sdists
pins=(itsdangerous==2.2.0 more-itertools==10.5.0 packaging==24.2)
mkdir -p "$cache"
for pin in "${pins[@]}"; do
    if ! compgen -G "$cache/${pin%%==*}-${pin##*==}.tar.gz" >/dev/null; then
        bench_log "projects: downloading the sdist of $pin from PyPI into bench/.cache/sdists"
        "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
            -d "$cache" "$pin"
    fi
done

# Both interpreters by their usual names, for every tool alike (pyenv's shims run only the
# selected version's binaries: the real ones are linked here).
pybin=$SCRATCH/projects-python
mkdir -p "$pybin"
for v in 3.11 3.12; do
    found=""
    for c in "$(command -v "python$v" || true)" "$HOME"/.pyenv/versions/"$v".*/bin/"python$v"; do
        if [[ -x $c ]] && "$c" -c 'import sys' 2>/dev/null; then
            found=$("$c" -c 'import sys; print(sys.executable)')
            break
        fi
    done
    if [[ -z $found ]]; then
        bench_log "projects: skipped: no Python $v (the two suites are the tests under 3.11 and 3.12)"
        bench_meta projects compare "projects — skipped" --note "skipped: no Python $v on PATH or in pyenv"
        return 0
    fi
    ln -sf "$found" "$pybin/python$v"
done
export PATH=$pybin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
# As in a developer's shell: Python writes the bytecode of what it imports. (This VM's agent
# environment sets PYTHONDONTWRITEBYTECODE=1; tox drops it from its commands' environment,
# ptest passes the caller's on, so left set it would compile every module in ptest's runs
# alone.)
unset PYTHONDONTWRITEBYTECODE

# tox-uv in a venv of its own: installed next to tox it would take over the runner scenario's.
toxuv=$BENCH/.tools/tox-uv
if [[ ! -x $toxuv/bin/tox ]] || ! "$toxuv/bin/python" -c 'import tox_uv' 2>/dev/null; then
    bench_log "projects: installing tox and tox-uv from PyPI into bench/.tools/tox-uv"
    rm -rf "$toxuv"
    "$PY" -m venv "$toxuv"
    "$toxuv/bin/python" -m pip install -q --disable-pip-version-check tox tox-uv
fi

for pin in "${pins[@]}"; do
    name=${pin%%==*} version=${pin##*==}
    # packaging's 2 × 26,921 tests take about 20 s a run: fewer rounds, none under --quick.
    if [[ $name == packaging ]]; then
        ((QUICK)) && bench_log "projects: --quick leaves packaging out (about 20 s a run)" && continue
        runs=3
    else
        runs=$((QUICK ? 1 : 5))
    fi
    dir=$SCRATCH/projects/$name
    src=$dir/src
    mkdir -p "$src"
    tar -xzf "$cache/$name-$version.tar.gz" -C "$src" --strip-components=1
    # The test dependencies, pinned once for every tool (the project's own name left out: it is
    # the project). itsdangerous pins its own; packaging lists them in tests/requirements.txt;
    # more-itertools needs only pytest.
    case $name in
    itsdangerous) reqs=$src/requirements/tests.txt ;;
    packaging) reqs=$src/tests/requirements.txt ;;
    *) reqs=$dir/tests.in && echo pytest >"$reqs" ;;
    esac
    uv pip compile -q --python-version 3.11 --no-header --no-annotate "$reqs" \
        | grep -v -i "^$name==" >"$src/bench-requirements.txt"
    cat >"$src/ptest.toml" <<EOF
[env.py]
python = ["3.11", "3.12"]
packages = ["."]
requirements = ["bench-requirements.txt"]

[[suite]]
name = "tests"
env = "py"
run = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", "reports/junit.xml"]
junit = "reports/junit.xml"
EOF
    cat >"$src/tox.ini" <<'EOF'
[tox]
env_list = py311, py312

[testenv]
package = wheel
deps = -r bench-requirements.txt
commands = python -m pytest -q -p no:cacheprovider
EOF
    cat >"$src/uv-pytest.sh" <<'EOF'
# plain uv + pytest: a venv per interpreter (made if missing), the project and its test
# dependencies installed by uv, the two pytest runs at once.
one() {
    [ -d ".venv-$1" ] || uv venv -q -p "python$1" ".venv-$1"
    uv pip install -q -p ".venv-$1/bin/python" -r bench-requirements.txt . &&
        ".venv-$1/bin/python" -m pytest -q -p no:cacheprovider
}
one 3.11 >/dev/null 2>&1 & a=$!
one 3.12 >/dev/null 2>&1 & b=$!
wait $a && wait $b
EOF
    # Each tool on a copy of its own: ptest copies or overlays its project, and another tool's
    # .tox or .venv-* would only be hidden from it, not absent.
    for tool in ptest tox tox-uv uv; do cp -a "$src" "$dir/$tool"; done
    home=$dir/home

    declare -A cmd=(
        [ptest]="$PTEST run -j 2 --project $dir/ptest"
        [tox]="tox -q -p 2 -c $dir/tox/tox.ini"
        [tox-uv]="$toxuv/bin/tox -q -p 2 -c $dir/tox-uv/tox.ini"
        [uv]="sh -c 'cd $dir/uv && sh uv-pytest.sh'"
    )
    declare -A cold=(
        [ptest]="find $home -mindepth 1 -maxdepth 2 ! -path $home/cache ! -path $home/cache/python -exec rm -rf {} +"
        [tox]="rm -rf $dir/tox/.tox"
        [tox-uv]="rm -rf $dir/tox-uv/.tox"
        [uv]="rm -rf $dir/uv/.venv-3.11 $dir/uv/.venv-3.12"
    )
    tools=(ptest tox tox-uv uv)
    # Each tool once unmeasured first (caches filled: pip's wheels, uv's builds, ptest's).
    bench_log "projects: $name $version: a first run of each tool (fills the package caches)"
    for tool in "${tools[@]}"; do
        PTEST_HOME=$home eval "${cmd[$tool]}" >/dev/null 2>&1 || {
            bench_log "projects: $name: $tool failed; its output:"
            PTEST_HOME=$home eval "${cmd[$tool]}" >&2 || true
            return 1
        }
    done
    bench_log "projects: $name $version: $runs cold and warm runs of each tool, order rotated"
    for ((r = 0; r < runs; r++)); do
        for ((k = 0; k < ${#tools[@]}; k++)); do
            tool=${tools[(k + r) % ${#tools[@]}]}
            eval "${cold[$tool]}"
            PTEST_HOME=$home bench_timed "$dir/$tool.cold" sh -c "${cmd[$tool]} 2>>$dir/$tool.err"
            PTEST_HOME=$home bench_timed "$dir/$tool.warm" sh -c "${cmd[$tool]} 2>>$dir/$tool.err"
        done
    done
    tests=$(grep -o 'tests="[0-9]*"' "$(ls -t "$home"/reports/*/output/*.junit.xml | head -n 1)" | head -n 1 | tr -dc 0-9)
    for temp in cold warm; do
        id=projects-$name-$temp
        bench_meta "$id" compare "projects: $name $version ($tests tests), 2 suites at -j 2, $temp" \
            --limit "tox-uv -p 2" --ptest "ptest run -j 2" \
            --note "the project's tests under Python 3.11 and 3.12 (py311, py312) two at a time; $temp: $([[ $temp == cold ]] && echo "no environment of the tool exists (PTEST_HOME emptied but for its package cache, no .tox, no .venv-*), package caches warm" || echo "the same command again, its environments from the cold run in place")" \
            --note "every tool installs the project from its source (tox and tox-uv build a wheel every run; plain uv takes its cached build; ptest builds one when cold and, warm, takes the wheel it kept for these unchanged files) and the same pinned test dependencies (\`uv pip compile\` of the project's own test requirements); ptest also writes and reads JUnit (per-test results), as \`ptest init\` sets it up" \
            --at-most "ptest run -j 2|$([[ $name == packaging ]] && echo 1.0 || { [[ $temp == cold ]] && echo 0.7 || echo 0.8; })" \
            --note "the issue-20 goal: $([[ $name == packaging ]] && echo "no slower than tox-uv (its 27,000 tests are CPU-bound on 2 cores)" || echo "ptest ≤ $([[ $temp == cold ]] && echo 0.7 || echo 0.8)× tox-uv $temp")"
        bench_record "$OUT/$id.json" \
            "ptest run -j 2" "$dir/ptest.$temp" \
            "tox -p 2 (pip)" "$dir/tox.$temp" \
            "tox-uv -p 2" "$dir/tox-uv.$temp" \
            "uv + pytest, both at once" "$dir/uv.$temp"
    done
    unset cmd cold
done
