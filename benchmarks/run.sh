#!/usr/bin/env bash
# The benchmark of docs/performance.md. Installs what it needs, then measures portpatrol beside
# its peers and rewrites docs/performance.md's results block and its plots.
#
#   bash benchmarks/run.sh            full run (about 6 minutes), updates docs/
#   bash benchmarks/run.sh --quick    small and short, results in $PORTPATROL_BENCH_HOME/quick
#   bash benchmarks/run.sh --only scale idle
#
# Environment: PYTHON (default: the real binary behind `python3`, not a pyenv shim),
# PORTPATROL_BENCH_HOME (venvs and npm packages; default /tmp/portpatrol-bench),
# PORTPATROL_SOURCE (what pip installs as portpatrol; default this checkout, e.g. a `git archive` of a commit).
# Needs root for apt-get only when hyperfine, wait-for-it, time or node are missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
home=${PORTPATROL_BENCH_HOME:-/tmp/portpatrol-bench}
python=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
mkdir -p "$home"

quick=0
for arg in "$@"; do [ "$arg" = --quick ] && quick=1; done

say() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Debian tools: hyperfine (timings), wait-for-it (a peer), time (peak memory), node+npm (wait-on).
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
[ -x /usr/bin/wait-for-it ] || missing+=(wait-for-it)
[ -x /usr/bin/time ] || missing+=(time)
command -v npm >/dev/null || missing+=(nodejs npm)
"$python" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=120 update -qq
  apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# portpatrol in a venv of its own, installed (not editable) as a user would get it, so the
# start-up measured is the installed command's: compiled bytecode, no .pth path hooks.
say "portpatrol venv ($python)"
[ -x "$home/pp/bin/python" ] || "$python" -m venv "$home/pp"
source=${PORTPATROL_SOURCE:-$repo}
"$home/pp/bin/pip" install -q "$source"
"$home/pp/bin/pip" install -q --force-reinstall --no-deps "$source"

say "tools venv"
[ -x "$home/tools/bin/python" ] || "$python" -m venv "$home/tools"
"$home/tools/bin/pip" install -q -r "$here/requirements.txt"

wait_on=()
if command -v npm >/dev/null; then
  say "wait-on (npm)"
  mkdir -p "$home/node"
  [ -x "$home/node/node_modules/.bin/wait-on" ] ||
    (cd "$home/node" && npm install --no-audit --no-fund --silent --prefix . wait-on@9 >/dev/null)
  wait_on=(--wait-on "$home/node/node_modules/.bin/wait-on")
fi

docs=()
out="$home/quick"
if [ "$quick" = 0 ]; then
  out="$home/full"
  docs=(--docs "$repo/docs/performance.md")
fi
say "bench.py $*"
status=0
"$home/tools/bin/python" "$here/bench.py" \
  --portpatrol "$home/pp/bin/portpatrol" \
  --wait-for-it-deb /usr/bin/wait-for-it \
  --wait-for-it-pypi "$home/tools/bin/wait-for-it" \
  "${wait_on[@]}" --out "$out" "${docs[@]}" "$@" || status=$?
if [ "$quick" = 0 ] && [ -f "$out/performance-scale.png" ]; then
  cp "$out"/performance-*.png "$repo/docs/"
fi
exit "$status"
