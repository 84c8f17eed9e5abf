#!/usr/bin/env bash
# Builds deploy/Dockerfile with buildah and runs the image with podman as an operator would:
# a volume and --restart=always, the round trip through the published port with the generated
# certificate verified, `podman healthcheck run` (also for `serve --port <another>`), podman
# restarting the container after the primary is SIGKILLed with the data kept, `podman stop`
# draining with exit 0 and JSON logs, a non-root user and nothing but dist/ and production
# dependencies in the image; the image's user, volume, stop signal, entrypoint and command as
# `podman image inspect` reads them.
#
# No container registry is reachable here, so the base image the Dockerfile names
# (node:20-bookworm-slim) is stood in by a local image of that name: a Debian bookworm minbase
# (debootstrap), this machine's node and npm, its CA bundle and the `node` user (uid 1000). It is
# built once per machine (kept in podman's storage, rebuilt when this machine's Node changes).
#
# Usage: bash scripts/container-test.sh   (as root; installs buildah, podman, runc, debootstrap)
# Where containers cannot run at all, it says why and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=docker.io/library/node:20-bookworm-slim
IMAGE=localhost/digestd:ci
NAME=digestd-ci-$$
VOLUME=digestd-ci-data-$$
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Settings found by trying on these machines: vfs storage (no overlay in this container), the
# docker format (OCI drops HEALTHCHECK), chroot isolation, cgroupfs and runc (crun refuses hybrid
# cgroups), and ulimits within root's own (it lacks CAP_SYS_RESOURCE).
buildah=(buildah --storage-driver vfs)
podman=(podman --storage-driver vfs --cgroup-manager cgroupfs --runtime runc)
run_limits=(--ulimit nofile=16384:16384 --ulimit nproc=4096:4096)

started=$(date +%s)
step() { echo "== container-test [$(($(date +%s) - started))s]: $*"; }
fail() {
  echo "container-test: FAILED: $*" >&2
  exit 1
}
cannot() {
  echo "container-test: cannot run containers on this machine: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || cannot "it needs root (rootless podman needs subuid ranges and user namespaces this script does not set up)"

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
    cannot "apt-get install ${need[*]} failed"
fi
"${podman[@]}" info >/dev/null 2>&1 || cannot "podman info fails: $("${podman[@]}" info 2>&1 | tail -n 3)"

cleanup() {
  # -v: the anonymous volume the image's VOLUME gives the second container goes too.
  "${podman[@]}" rm -f -v -t 0 "$NAME" "$NAME-port" >/dev/null 2>&1 || true
  "${podman[@]}" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- The stand-in base image -------------------------------------------------------------------
node_binary=$(command -v node)
node_version=$("$node_binary" --version)
npm_root=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
# The machine's trust goes with its CA bundle: where the npm registry is reached through a
# TLS-inspecting proxy, npm ci inside the build needs it too.
base_recipe="node $node_version, system CA bundle via NODE_EXTRA_CA_CERTS, / mode 0755"
cache_dir=/var/cache/digestd-ci
rootfs_tar="$cache_dir/node-20-bookworm-slim-$node_version-root-0755.tar"
if [ "$("${podman[@]}" image inspect --format '{{ index .Labels "digestd.ci.base" }}' "$BASE_IMAGE" 2>/dev/null)" = "$base_recipe" ]; then
  step "base image $BASE_IMAGE ($base_recipe) already built"
else
  if [ ! -s "$rootfs_tar" ]; then
    step "building the base image's root: debootstrap bookworm minbase + Node $node_version"
    rootfs=$(mktemp -d /var/tmp/digestd-base-XXXXXX)
    # mktemp -d makes it 0700, and it becomes the image's / : the node user could not reach /usr/bin.
    chmod 0755 "$rootfs"
    # node links libstdc++; the official image has it too.
    debootstrap --variant=minbase --include=libstdc++6 bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null ||
      cannot "debootstrap from $DEBIAN_MIRROR failed (is Debian's mirror reachable?)"
    install -m 0755 "$node_binary" "$rootfs/usr/local/bin/node"
    mkdir -p "$rootfs/usr/local/lib/node_modules"
    cp -a "$npm_root" "$rootfs/usr/local/lib/node_modules/npm"
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
    mkdir -p "$rootfs/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    chroot "$rootfs" groupadd --gid 1000 node
    chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$cache_dir"
    tar -C "$rootfs" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$rootfs"
  fi
  step "importing $rootfs_tar as $BASE_IMAGE"
  "${podman[@]}" import \
    --change 'CMD ["node"]' \
    --change "ENV NODE_VERSION=${node_version#v}" \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change "LABEL digestd.ci.base=\"$base_recipe\"" \
    "$rootfs_tar" "$BASE_IMAGE" >/dev/null
fi
"${podman[@]}" run --rm --network none "${run_limits[@]}" "$BASE_IMAGE" node --version | grep -qx "$node_version" ||
  fail "the base image does not run node $node_version"

# --- Build -------------------------------------------------------------------------------------
step "buildah bud -f deploy/Dockerfile"
previous_image=$("${podman[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
"${buildah[@]}" bud --isolation chroot --format docker --pull=never \
  --ignorefile deploy/Dockerfile.dockerignore -f deploy/Dockerfile -t "$IMAGE" . >/tmp/digestd-container-build.log 2>&1 ||
  fail "the image does not build: $(tail -n 20 /tmp/digestd-container-build.log)"
# The previous build lost its name to this one: remove it, or each run leaves a full copy (vfs).
if [ -n "$previous_image" ] && [ "$previous_image" != "$("${podman[@]}" image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  "${podman[@]}" rmi "$previous_image" >/dev/null 2>&1 || true
fi
healthcheck=$("${podman[@]}" image inspect --format '{{json .HealthCheck}}' "$IMAGE")
echo "HEALTHCHECK: $healthcheck"
grep -q '/app/deploy/healthcheck.mjs' <<<"$healthcheck" || fail "the image lost its HEALTHCHECK"
# What the Dockerfile declares for whoever runs the image, as the engine reads it.
image_config=$("${podman[@]}" image inspect \
  --format '{{.Config.User}}|{{json .Config.Volumes}}|{{.Config.StopSignal}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}' "$IMAGE")
echo "User|Volumes|StopSignal|Entrypoint|Cmd: $image_config"
IFS='|' read -r image_user image_volumes image_stop_signal image_entrypoint image_cmd <<<"$image_config"
[ "$image_user" = node ] || fail "the image's user is '$image_user', not node"
[ "$image_volumes" = '{"/var/lib/digestd":{}}' ] || fail "the image's volumes are $image_volumes, not /var/lib/digestd"
# The primary drains its workers on SIGTERM; the engine may show the signal by name or number.
case "$image_stop_signal" in SIGTERM | 15 | "") ;; *) fail "the image stops with $image_stop_signal, not SIGTERM" ;; esac
[ "$image_entrypoint" = '["node","/app/bin/digestd"]' ] || fail "the image's entrypoint is $image_entrypoint"
[ "$image_cmd" = '["serve"]' ] || fail "the image's command is $image_cmd, not serve"

# --- What the image holds ----------------------------------------------------------------------
step "the image runs as a non-root user and holds dist/ and production dependencies only"
# Every package the lockfile marks dev-only must be absent from the image's node_modules.
dev_only=$(node -e '
  const lock = require("./package-lock.json");
  for (const [where, entry] of Object.entries(lock.packages)) if (where && entry.dev) console.log(where);
')
echo "dev-only packages in the lockfile: $(wc -l <<<"$dev_only")"
# One container for every look inside (with vfs storage each container is a full copy).
inside=$("${podman[@]}" run --rm -i "${run_limits[@]}" --network none --entrypoint sh "$IMAGE" -c '
  echo "uid $(id -u)"
  echo "app $(ls -A /app | tr "\n" " ")"
  echo "deploy $(ls -A /app/deploy | tr "\n" " ")"
  while read -r where; do [ ! -e "/app/$where" ] || echo "dev $where"; done
  find /app -path /app/node_modules -prune -o \( -name "*.ts" ! -name "*.d.ts" \) -print | sed "s/^/source /"
' <<<"$dev_only")
echo "$inside" | grep -v '^dev \|^source ' || true
grep -qx 'uid 1000' <<<"$inside" || fail "the container does not run as the node user (uid 1000)"
grep -qx 'app bin deploy dist node_modules package.json ' <<<"$inside" ||
  fail "/app holds more than bin, deploy, dist, node_modules and package.json"
grep -qx 'deploy healthcheck.mjs ' <<<"$inside" || fail "/app/deploy holds more than healthcheck.mjs"
! grep -q '^dev ' <<<"$inside" || fail "dev dependencies in the image: $(grep '^dev ' <<<"$inside" | head -n 5 | tr '\n' ' ')"
! grep -q '^source ' <<<"$inside" || fail "TypeScript sources in the image: $(grep '^source ' <<<"$inside" | tr '\n' ' ')"

# --- Run it as an operator would ---------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
step "podman run -d --init --stop-timeout 20 --restart=always -v $VOLUME:/var/lib/digestd -p 127.0.0.1:$port:8443"
"${podman[@]}" volume create "$VOLUME" >/dev/null
# The README's arguments: an init as PID 1, and a stop timeout longer than the drain.
"${podman[@]}" run -d --name "$NAME" "${run_limits[@]}" --init --stop-timeout 20 --restart=always \
  -v "$VOLUME:/var/lib/digestd" -p "127.0.0.1:$port:8443" "$IMAGE" >/dev/null ||
  fail "podman run failed"

wait_healthy() {
  local name=$1
  for _ in $(seq 1 90); do
    if "${podman[@]}" healthcheck run "$name" >/dev/null 2>&1; then
      echo "podman healthcheck run $name: healthy"
      return 0
    fi
    sleep 1
  done
  "${podman[@]}" logs --tail 20 "$name" >&2 || true
  fail "$name did not become healthy within 90 s: $("${podman[@]}" healthcheck run "$name" 2>&1)"
}
wait_healthy "$NAME"

volume_dir=$("${podman[@]}" volume inspect --format '{{.Mountpoint}}' "$VOLUME")
# The certificate clients trust, read out of the volume: the local CA when digestd made one,
# otherwise the generated certificate itself.
trusted=$(node -e '
  const record = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const inVolume = (file) => file.replace(/^\/var\/lib\/digestd/, process.argv[2]);
  console.log(inVolume(record.ca ?? record.cert));
' "$volume_dir/listening.json" "$volume_dir")
echo "listening.json: $(cat "$volume_dir/listening.json")"
https=(curl --silent --show-error --cacert "$trusted" --resolve "localhost:$port:127.0.0.1")
base="https://localhost:$port"

step "the round trip through the published port, verifying the certificate"
foo_digest=2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
posted=$("${https[@]}" -w ' %{http_code}' -H 'content-type: application/json' -d '{"message":"foo"}' "$base/messages")
echo "POST /messages foo: $posted"
[ "$posted" = "{\"digest\":\"$foo_digest\"} 201" ] || fail "POST answered $posted"
fetched=$("${https[@]}" -w ' %{http_code}' "$base/messages/$foo_digest")
echo "GET /messages/$foo_digest: $fetched"
[ "$fetched" = '{"message":"foo"} 200' ] || fail "GET answered $fetched"
unknown=$("${https[@]}" -w ' %{http_code}' "$base/messages/$(printf 'a%.0s' $(seq 64))")
echo "GET an unknown digest: $unknown"
grep -q '"err_msg":"Message not found".* 404$' <<<"$unknown" || fail "an unknown digest answered $unknown"

step "SIGKILL of digestd's primary: podman restarts the container and the data is still there"
restarts_before=$("${podman[@]}" inspect --format '{{.RestartCount}}' "$NAME")
primary=$("${podman[@]}" inspect --format '{{.State.Pid}}' "$NAME")
echo "primary: $(tr '\0' ' ' <"/proc/$primary/cmdline") (host pid $primary)"
kill -KILL "$primary"
for _ in $(seq 1 60); do
  [ "$("${podman[@]}" inspect --format '{{.RestartCount}}' "$NAME")" -gt "$restarts_before" ] && break
  sleep 1
done
restarts=$("${podman[@]}" inspect --format '{{.RestartCount}}' "$NAME")
[ "$restarts" -gt "$restarts_before" ] || fail "podman did not restart the container"
echo "restart count: $restarts_before -> $restarts"
wait_healthy "$NAME"
fetched=$("${https[@]}" -w ' %{http_code}' "$base/messages/$foo_digest")
echo "GET /messages/$foo_digest after the restart: $fetched"
[ "$fetched" = '{"message":"foo"} 200' ] || fail "after the restart GET answered $fetched"

step "serve --port 9444: the health check follows the flag"
other_port=$(free_port)
"${podman[@]}" run -d --name "$NAME-port" "${run_limits[@]}" -p "127.0.0.1:$other_port:9444" "$IMAGE" serve --port 9444 >/dev/null ||
  fail "podman run ... serve --port 9444 failed"
wait_healthy "$NAME-port"
record=$("${podman[@]}" exec "$NAME-port" cat /var/lib/digestd/listening.json)
echo "listening.json: $record"
grep -Eq '"url":"https://(\[::\]|0\.0\.0\.0):9444"' <<<"$record" || fail "serve --port 9444 wrote $record"
"${podman[@]}" rm -f -v -t 0 "$NAME-port" >/dev/null

step "podman stop drains and exits 0; the logs are JSON lines"
"${podman[@]}" stop -t 30 "$NAME" >/dev/null
exit_code=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$NAME")
echo "exit code after podman stop: $exit_code"
[ "$exit_code" = 0 ] || fail "podman stop: digestd exited with $exit_code"
"${podman[@]}" logs "$NAME" >/tmp/digestd-container-logs.txt 2>&1
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
  const parsed = lines.map((line, index) => {
    try { return JSON.parse(line); } catch { throw new Error(`log line ${index + 1} is not JSON: ${line}`); }
  });
  const messages = parsed.map((entry) => entry.msg);
  for (const expected of ["shutting down", "stopped"]) {
    if (!messages.includes(expected)) throw new Error(`no "${expected}" line in the log`);
  }
  console.log(`${lines.length} log lines, all JSON; the last: ${lines.at(-1)}`);
' /tmp/digestd-container-logs.txt || fail "the container's logs are not JSON lines"

step "passed in $(($(date +%s) - started)) s"
