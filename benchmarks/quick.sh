#!/usr/bin/env bash
# CI smoke test of the benchmark (called from .ci/run): every section runs on small sizes and
# short durations (about 1-2 minutes with the tools installed); the figures are printed, never
# compared with the targets. Fails only when something did not run.
set -euo pipefail
exec bash "$(dirname "$0")/run.sh" --quick "$@"
