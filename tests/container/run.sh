#!/usr/bin/env bash
# `make container-test`: build the Dockerfile with Podman and use the image as a person would.
# compose.yaml passes docker-compose's schema check → sample images → `imgsim train`, `index`
# and `search` in containers with the folders as volumes → `imgsim serve` in a container that,
# as a person's first `docker run -v photos:/data imgsim` would, trains and indexes by itself →
# /health, /stats, /search and /images from the host → the image's HEALTHCHECK goes healthy →
# it stops on SIGTERM at once. Containers are removed whatever happens; every wait is bounded.
#
# Made for a machine without a Docker daemon or image registry, as root (CI): it installs
# podman, runc, debootstrap and docker-compose (for `config` only) from Debian, makes the
# debian:bookworm-slim base image itself (debootstrap from the Debian mirror that apt uses;
# kept in podman's store for the next run), and hands this machine's pip index, extra indexes,
# wheel folder and CA bundle to the build. Settings (environment):
#   IMGSIM_IMAGE       tag to build (imgsim:test)
#   IMGSIM_TEST_PORT   port of the test server on 127.0.0.1 (a free one)
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/container
image=${IMGSIM_IMAGE:-imgsim:test}
base=docker.io/library/debian:bookworm-slim
name=imgsim-container-test-$$
tmp=""

log() { printf '\n== %s\n' "$*"; }
podman() { command podman --runtime runc --cgroup-manager cgroupfs "$@"; }
# build/run flags for these machines: no bridge network, no systemd, low default ulimits.
run_flags=(--network host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --pull=never)

cleanup() {
    local rc=$?
    if podman container exists "$name" 2>/dev/null; then
        [ "$rc" = 0 ] || podman logs --tail 40 "$name" 2>&1 | sed 's/^/  serve| /' || true
        podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
    fi
    [ -z "$tmp" ] || rm -rf "$tmp"
    [ "$rc" = 0 ] && echo "container test: passed" || echo "container test: FAILED ($rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_tools() {
    local tools=(podman runc debootstrap docker-compose) tool missing=()
    for tool in "${tools[@]}"; do
        # type -P: the program on PATH, not the podman() wrapper above (command -v finds it).
        type -P "$tool" >/dev/null || missing+=("$tool")
    done
    [ "${#missing[@]}" = 0 ] && return
    log "installing ${missing[*]}"
    [ "$(id -u)" = 0 ] || { echo "run as root, or install ${missing[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The official image cannot be pulled here: build the same from Debian's packages, slimmed
# as Debian's -slim images are. Kept between runs (podman's image store).
make_base() {
    podman image exists "$base" && return
    local mirror rootfs
    mirror=$(apt-get indextargets --format '$(REPO_URI)' | grep -v -- -security | sort -u | head -1)
    log "debootstrap bookworm from ${mirror:-deb.debian.org} → $base"
    rootfs="$tmp/rootfs"
    timeout 600 debootstrap --variant=minbase bookworm "$rootfs" \
        "${mirror:-http://deb.debian.org/debian/}" >"$tmp/debootstrap.log" 2>&1 ||
        { tail -20 "$tmp/debootstrap.log"; exit 1; }
    cp "$here/slim-dpkg.cfg" "$rootfs/etc/dpkg/dpkg.cfg.d/imgsim-slim"
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
    find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
    rm -rf "$rootfs"
}

# pip's settings on this machine (environment first, then pip's config files).
pip_setting() {
    local env_name=$1 key=$2 value
    value=${!env_name:-}
    [ -n "$value" ] || value=$(python3 -m pip config get "global.$key" 2>/dev/null || true)
    printf '%s' "$value"
}

# The build gets this machine's index, extra indexes, wheel folder and CA bundle. Local ones
# are mounted under /mnt/pip-host (not over the image's own paths) and named there.
build_image() {
    local args=() mounts=() url extra="" i=0 dir
    url=$(pip_setting PIP_INDEX_URL index-url)
    [ -z "$url" ] || args+=(--build-arg "PIP_INDEX_URL=$url")
    for url in $(pip_setting PIP_EXTRA_INDEX_URL extra-index-url); do
        if [[ $url == file://* ]]; then  # a local simple index: mount the folder holding it
            dir=${url#file://}
            i=$((i + 1))
            mounts+=(-v "$(dirname "$dir"):/mnt/pip-host/index$i:ro")
            url="file:///mnt/pip-host/index$i/$(basename "$dir")"
        fi
        extra+="${extra:+ }$url"
    done
    # Always passed: the Dockerfile's default (PyTorch's index) is out of reach from CI.
    args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra")
    dir=$(pip_setting PIP_FIND_LINKS find-links)
    if [ -n "$dir" ] && [ -d "$dir" ]; then
        mounts+=(-v "$dir:/mnt/pip-host/find-links:ro")
        args+=(--build-arg PIP_FIND_LINKS=/mnt/pip-host/find-links)
    fi
    dir=$(pip_setting PIP_CERT cert)
    if [ -n "$dir" ] && [ -f "$dir" ]; then
        mounts+=(-v "$dir:/mnt/pip-host/cert.pem:ro")
        args+=(--build-arg PIP_CERT=/mnt/pip-host/cert.pem)
    fi
    log "podman build -t $image ${args[*]}"
    # --format docker: the OCI format has no HEALTHCHECK.
    timeout 1500 podman build --format docker "${run_flags[@]}" "${mounts[@]}" "${args[@]}" \
        -t "$image" .
    podman image inspect "$image" --format 'image size: {{.Size}} bytes' |
        awk '{ printf "%s %s %.0f MB\n", $1, $2, $3 / 1e6 }'
}

in_container() {  # a one-off container with the test's folders as volumes
    timeout 900 podman run --rm --no-healthcheck "${run_flags[@]}" \
        -v "$tmp/data:/data" -v "$tmp/work:/work" "$image" "$@"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

wait_serving() {  # until the port takes connections; fails at once when the container stops
    local seconds=$1
    for _ in $(seq "$seconds"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
        [ "$(podman inspect "$name" --format '{{.State.Running}}')" = true ] ||
            { echo "the serve container stopped" >&2; exit 1; }
        sleep 1
    done
    echo "nothing listens on 127.0.0.1:$port after ${seconds}s" >&2
    exit 1
}

wait_healthy() {  # podman has no timer for HEALTHCHECK without systemd: run it as docker would
    local status=""
    for _ in $(seq 60); do
        podman healthcheck run "$name" >/dev/null 2>&1 || true
        status=$(podman inspect "$name" --format '{{.State.Health.Status}}')
        [ "$status" = healthy ] && { echo "HEALTHCHECK: $status"; return; }
        sleep 2
    done
    echo "HEALTHCHECK never became healthy (last: ${status:-none})" >&2
    exit 1
}

main() {
    install_tools
    tmp=$(mktemp -d /var/tmp/imgsim-container-test.XXXXXX)
    log "compose.yaml (schema check; its images cannot be pulled here)"
    docker-compose -f compose.yaml --profile milvus config -q
    make_base
    build_image

    log "every subcommand is there"
    podman run --rm --no-healthcheck "${run_flags[@]}" "$image" --help | grep -q "serve"
    podman run --rm --no-healthcheck "${run_flags[@]}" "$image" imgsim train --help >/dev/null

    # The image runs as uid 1000, so the host folders must be its to write.
    mkdir -p "$tmp/data" "$tmp/work" "$tmp/first-run"
    chown 1000:1000 "$tmp/data" "$tmp/work" "$tmp/first-run"
    log "sample images, train, index (containers, folders as volumes)"
    podman run --rm --no-healthcheck "${run_flags[@]}" -v "$tmp/data:/data" \
        --entrypoint python3 "$image" -c \
        'from imgsim.images.sample import generate_shapes; print(generate_shapes("/data", 12), "images")'
    in_container stats --data /data
    in_container train --epochs 3 --seed 0 --workers 1
    in_container index --kind flat
    in_container search /data/circle_00001.png --json --threshold 0 -k 3 | python3 -c '
import json, sys
top = json.load(sys.stdin)["results"][0]
print("imgsim search:", top)
assert top["filename"] == "circle_00001.png", top'

    port=${IMGSIM_TEST_PORT:-$(free_port)}
    log "imgsim serve on 127.0.0.1:$port, first run: it trains and indexes by itself"
    # Host network (no bridge here), so the server itself listens on loopback only.
    podman run -d --name "$name" "${run_flags[@]}" -e IMGSIM_PORT="$port" \
        -e IMGSIM_TRAIN_ARGS="--epochs 2 --seed 0 --workers 1" \
        -v "$tmp/data:/data" -v "$tmp/first-run:/work" \
        "$image" serve --host 127.0.0.1 --port "$port" --workdir /work \
        > /dev/null 2> >(grep -v "systemd connection" >&2)
    wait_serving 400
    timeout 120 python3 "$here/check_api.py" "http://127.0.0.1:$port" --wait 60 \
        --images 72 --query "$tmp/data/square_00002.png"
    wait_healthy

    log "podman stop: the server ends on SIGTERM, without waiting for the kill"
    SECONDS=0
    podman stop -t 30 "$name" >/dev/null
    [ "$SECONDS" -lt 10 ] || { echo "serve took ${SECONDS}s to stop on SIGTERM" >&2; exit 1; }
    echo "stopped in ${SECONDS}s"
}

main "$@"
