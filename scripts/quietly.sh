#!/usr/bin/env bash
# Run one set-up step with a one-line description; its output goes to a log file and is shown
# only when the step fails, so a cold `make demo` or `make test` prints a line per step, not
# pages of pip, apt and cargo output.
# usage: scripts/quietly.sh "what this step does" command [args...]
set -euo pipefail
what="$1"; shift
logdir="${QUIETLY_LOG_DIR:-.cache/logs}"
mkdir -p "$logdir"
log="$logdir/$(printf '%s' "$what" | tr -c 'A-Za-z0-9' '-' | tr -s '-' | cut -c1-60).log"
echo "setup: $what"
if ! "$@" >"$log" 2>&1; then
  echo "setup: FAILED: $what (last lines of $log):" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
