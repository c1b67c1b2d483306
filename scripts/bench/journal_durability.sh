#!/usr/bin/env bash
# Journal durability: N runs (default 1000) killed with SIGKILL at random points must all
# leave a journal that `runbook show` reads. Prints how many were killed mid-run and how
# many journals were readable. Usage: scripts/bench/journal_durability.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-1000}"
cargo build --release --quiet
bin="$PWD/target/release/runbook"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/runbooks"
cat > "$work/runbooks/durable.yaml" <<'YAML'
runbook: durable
title: Durability
procedures:
  go:
    summary: Several short steps
    stages:
      - name: One
        steps:
          - {id: a, run: [sh, -c, 'sleep 0.01; echo a'], capture: text, timeout: 5s}
          - {id: b, run: [sh, -c, 'sleep 0.01; echo b'], capture: text, timeout: 5s}
      - name: Two
        steps:
          - {id: c, run: [sh, -c, 'sleep 0.01; echo c'], timeout: 5s}
          - {id: d, run: [sh, -c, 'sleep 0.01; echo d'], timeout: 5s}
YAML
cd "$work"
export RUNBOOK_STATE_DIR="$work/state"
killed=0
start=$(date +%s.%N)
for i in $(seq 1 "$runs"); do
  "$bin" durable go --yes >/dev/null 2>&1 &
  pid=$!
  # A random point in the run: 0-79 ms (a whole run takes ~60-80 ms).
  sleep "$(printf "0.%03d" $((RANDOM % 80)))"
  if kill -KILL "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
  wait "$pid" 2>/dev/null || true
done
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
readable=0
unreadable=0
truncated=0
for journal in "$work"/state/runs/*.jsonl; do
  id="$(basename "$journal" .jsonl)"
  if out="$("$bin" show "$id" 2>&1)"; then
    readable=$((readable + 1))
    case "$out" in *"cut off"*) truncated=$((truncated + 1)) ;; esac
  else
    unreadable=$((unreadable + 1))
    echo "UNREADABLE $id: $out" >&2
  fi
done
journals=$((readable + unreadable))
echo "runs started: $runs, killed by SIGKILL mid-run: $killed, journals: $journals"
echo "readable by show: $readable, unreadable: $unreadable, with a cut-off last record: $truncated"
echo "elapsed: ${elapsed}s"
[ "$unreadable" -eq 0 ] && echo PASS || { echo FAIL; exit 1; }
