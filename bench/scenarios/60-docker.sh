# docker: `ptest env create --image IMG d && ptest env rm d` against `docker run -d --init IMG
# sleep …` + `docker rm -f` (the limit: the container ptest makes, without ptest), and against
# the same through `--build DIR` (image tagged by content hash, built once, then reused). IMG is
# built here FROM scratch with Debian's busybox-static, like ptest-docker's test image, so no
# registry is needed. Skipped, with the reason, when no Docker engine answers.
if ! command -v docker >/dev/null || ! docker version >/dev/null 2>&1; then
    bench_log "docker: skipped: no Docker engine answers (scripts/start-dockerd starts one)"
    bench_meta docker compare "docker: environment create + remove — skipped" \
        --note "skipped: no Docker engine answered \`docker version\` (run scripts/start-dockerd)"
    return 0
fi
if [[ ! -x /bin/busybox ]]; then
    bench_log "docker: skipped: /bin/busybox missing (apt-get install busybox-static)"
    bench_meta docker compare "docker: environment create + remove — skipped" \
        --note "skipped: /bin/busybox (Debian's busybox-static) is missing, needed to build the image"
    return 0
fi
ctx=$SCRATCH/docker-ctx
mkdir -p "$ctx"
cp /bin/busybox "$ctx/busybox"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
CMD ["sh"]
DOCKERFILE
img=ptest-bench-busybox:latest
docker build -q -t "$img" "$ctx" >/dev/null
home=$(bench_home)
export PTEST_HOME=$home
# An environment outside a run joins Docker's default bridge, like docker run; the
# environments of one `ptest run` share a user-defined network of the run's (neighbours
# resolve each other by name), which costs Docker more: the --network row measures docker run
# doing that work, on a network made here the way ptest makes a run's.
net=ptest-bench-run-network
docker network rm "$net" >/dev/null 2>&1 || true
docker network create "$net" >/dev/null
trap 'docker network rm "$net" >/dev/null 2>&1 || true' EXIT
(
    ROUNDS=$((QUICK ? 1 : 2)) WARMUP=1 RUNS=$((QUICK ? 3 : 12))
    bench_compare docker "docker: environment create + remove" \
        --limit "docker run -d --init + docker rm -f" --ptest "ptest env create --image + rm" \
        --note "image: busybox-static FROM scratch, built before measuring; docker $(docker version --format '{{.Server.Version}}' 2>/dev/null) engine" \
        --note "ptest's container: the root bind-mounted, Docker's init running \`sleep 2147483647\`, labels; rm removes container and leftovers" \
        --note "outside a run ptest uses Docker's default bridge, like docker run; the --network row is what joining a user-defined network (a \`ptest run\`'s environments) adds" \
        --note "the CPU column counts the client processes only (ptest, docker CLI); dockerd's and containerd's work is in neither, so compare wall times here" \
        -- \
        "ptest env create --image + rm" "sh -c '$PTEST env create --image $img d && $PTEST env rm d'" \
        "ptest env create --build + rm" "sh -c '$PTEST env create --build $ctx d && $PTEST env rm d'" \
        "docker run -d --init + docker rm -f" "sh -c 'docker rm -f \$(docker run -d --init $img sleep 2147483647)'" \
        "docker run -d --init --network <user-defined> + docker rm -f" "sh -c 'docker rm -f \$(docker run -d --init --network $net $img sleep 2147483647)'" \
        "mkdir d && rmdir d" "sh -c 'mkdir d && rmdir d'"
)

# exec into a running docker environment: `ptest env exec` against `docker exec` of the same
# container (the limit: the bare operation through the same engine).
"$PTEST" env create --image "$img" dx >/dev/null
container=$("$PTEST" env show --json dx | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["environment"]["details"]["container"])')
(
    ROUNDS=$((QUICK ? 1 : 2)) WARMUP=2 RUNS=$((QUICK ? 5 : 30))
    bench_compare docker-exec "docker: exec in an environment" \
        --limit "docker exec CONTAINER true" --ptest "ptest env exec E -- true" \
        --note "the same running container; ptest also records the exec, captures nothing (streams live) and waits for the exit code through the exec API" \
        -- \
        "ptest env exec E -- true" "$PTEST env exec dx -- true" \
        "docker exec CONTAINER true" "docker exec $container true"
)
"$PTEST" env rm dx >/dev/null
