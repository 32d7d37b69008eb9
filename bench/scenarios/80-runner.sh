# runner: 12 tiny shell suites (a 0.1 s sleep and a little CPU each) run two at a time by
# `ptest run -j 2` (each suite in its own sandboxed environment with a private copy of the
# project) against `tox -p 2` (12 envs, skip_install, the same script), running the 12 scripts
# one after another (serial) and `xargs -P 2` (the limit: the same parallelism, no isolation).
bench_requires tox || return 0
proj=$SCRATCH/runner-project
mkdir -p "$proj"
cat >"$proj/suite.sh" <<'SH'
i=0
while [ $i -lt 3000 ]; do i=$((i + 1)); done
sleep 0.1
SH
{
    for i in $(seq -w 1 12); do
        printf '[[suite]]\nname = "s%s"\nrun = "sh suite.sh"\n\n' "$i"
    done
} >"$proj/ptest.toml"
# tox's project lives apart: `ptest run` copies its whole project into every environment, and
# a .tox of 12 virtualenvs in it would be copied too (thousands of files per suite).
toxproj=$SCRATCH/runner-tox
mkdir -p "$toxproj"
cp "$proj/suite.sh" "$toxproj/suite.sh"
{
    printf '[tox]\nenv_list = %s\n\n' "$(seq -w -s, 1 12 | sed 's/\([0-9][0-9]\)/s\1/g')"
    printf '[testenv]\nskip_install = true\nallowlist_externals = sh\ncommands = sh {toxinidir}/suite.sh\n'
} >"$toxproj/tox.ini"
home=$(bench_home)
export PTEST_HOME=$home
cd "$proj"
(
    ROUNDS=$((QUICK ? 1 : 2)) WARMUP=1 RUNS=$((QUICK ? 2 : 8))
    bench_compare runner "runner: 12 suites, 2 at a time" \
        --limit "xargs -P 2 (no isolation)" --ptest "ptest run -j 2" \
        --note "each suite: \`sh suite.sh\` = a 3000-step shell loop and \`sleep 0.1\`; serial ideal 1.2 s, two at a time 0.6 s" \
        --per-unit "serial (12 scripts in a row)|12|suite" \
        --note "the project ptest copies holds only ptest.toml and suite.sh (tox's project and its .tox are elsewhere)" \
        --note "tox's 12 virtualenvs exist after the warm-up run (skip_install: no packages); ptest makes 12 sandboxed environments (cgroup + pod) and 12 project copies every run" \
        -- \
        "ptest run -j 2" "$PTEST run -j 2 --project $proj" \
        "tox -p 2" "tox -q -p 2 -c $toxproj/tox.ini" \
        "serial (12 scripts in a row)" "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sh $proj/suite.sh; done'" \
        "xargs -P 2 (no isolation)" "sh -c 'seq 12 | xargs -P 2 -I{} sh $proj/suite.sh'"
)
