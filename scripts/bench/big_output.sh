#!/usr/bin/env bash
# Memory under a flood of output: a step whose child prints SIZE bytes (default 1 GiB) of
# 100-character lines to stdout, not captured, must complete with a peak RSS of `runbook`
# under 30 MiB. Also times the same pipeline run by plain bash, for the cost of streaming
# every line through runbook. Usage: scripts/bench/big_output.sh [SIZE_BYTES]
# e.g. scripts/bench/big_output.sh 104857600   # a quick run with 100 MiB
set -euo pipefail
cd "$(dirname "$0")/../.."
size="${1:-1073741824}"
limit_mib=30
case "$size" in '' | *[!0-9]*) echo "SIZE must be a number of bytes, got: $size" >&2; exit 2 ;; esac

cargo build --release --quiet
bin="$PWD/target/release/runbook"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/runbooks"
pipeline="head -c $size /dev/zero | tr '\\0' x | fold -w 100"
cat > "$work/runbooks/flood.yaml" <<YAML
runbook: flood
title: Big output
procedures:
  go:
    summary: A child that prints $size bytes of lines to stdout
    stages:
      - name: Flood
        steps:
          - id: flood
            run: [sh, -c, "head -c $size /dev/zero | tr '\\\\0' x | fold -w 100"]
            effect: read
            timeout: 2h
YAML
cd "$work"
export RUNBOOK_STATE_DIR="$work/state" NO_COLOR=1
unset RUNBOOK_DIR RUST_LOG

# BENCH_POLL=1 forces the /proc fallback (used where GNU time is missing).
use_time=0
if [ "${BENCH_POLL:-0}" != 1 ] && [ -x /usr/bin/time ] && /usr/bin/time -v true >/dev/null 2>&1; then
  use_time=1
  how="/usr/bin/time -v (max RSS of runbook and its waited-for children; the children are a few MiB)"
else
  how="VmHWM of runbook from /proc/PID/status, polled every 50 ms"
fi

# measure NAME CMD...: runs CMD with stdout to /dev/null and stderr to NAME.err; sets
# `wall` (seconds) and `peak_kib` (peak RSS).
measure() {
  local name="$1"
  shift
  local start end status=0
  start=$(date +%s.%N)
  if [ "$use_time" = 1 ]; then
    /usr/bin/time -v -o "$work/$name.time" "$@" >/dev/null 2>"$work/$name.err" || status=$?
    peak_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/$name.time")
  else
    "$@" >/dev/null 2>"$work/$name.err" &
    local pid=$! hwm
    peak_kib=0
    while kill -0 "$pid" 2>/dev/null; do
      hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      if [ -n "$hwm" ] && [ "$hwm" -gt "$peak_kib" ]; then peak_kib=$hwm; fi
      sleep 0.05
    done
    wait "$pid" || status=$?
  fi
  end=$(date +%s.%N)
  wall=$(printf '%.2f' "$(echo "$end - $start" | bc)")
  if [ "$status" -ne 0 ]; then
    echo "$name exited with status $status:" >&2
    tail -n 20 "$work/$name.err" >&2
    exit 1
  fi
}

echo "output: $size bytes ($(printf '%.1f' "$(echo "scale=2; $size / 1048576" | bc)") MiB) in 100-character lines"
echo "peak RSS measured with $how"

measure runbook "$bin" flood go --yes
rb_wall=$wall
rb_peak_kib=$peak_kib
grep -q "1 step(s) done" "$work/runbook.err" || {
  echo "runbook did not report the step done:" >&2
  tail -n 20 "$work/runbook.err" >&2
  exit 1
}

measure baseline bash -c "$pipeline"
base_wall=$wall
base_peak_kib=$peak_kib

rb_peak_mib=$(printf '%.1f' "$(echo "scale=2; $rb_peak_kib / 1024" | bc)")
echo "runbook:  peak RSS ${rb_peak_mib} MiB, wall ${rb_wall}s"
echo "baseline: peak RSS $(printf '%.1f' "$(echo "scale=2; $base_peak_kib / 1024" | bc)") MiB, wall ${base_wall}s (bash -c \"$pipeline\")"
echo "wall time ratio runbook/baseline: $(printf '%.2f' "$(echo "scale=4; $rb_wall / $base_wall" | bc)")"
if [ "$rb_peak_kib" -lt $((limit_mib * 1024)) ]; then
  echo "PASS: peak RSS ${rb_peak_mib} MiB < ${limit_mib} MiB"
else
  echo "FAIL: peak RSS ${rb_peak_mib} MiB >= ${limit_mib} MiB"
  exit 1
fi
