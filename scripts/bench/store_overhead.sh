#!/usr/bin/env bash
# What the shared store adds per step: one run of N trivial mutating steps (default 50)
# with the local state dir, then with a state URL on fake-gcs-server over loopback.
# Needs the emulator that scripts/test installs. Usage: scripts/bench/store_overhead.sh [N] [BIN]
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-50}"
bin="${2:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --quiet
    bin="$PWD/target/release/runbook"
fi
server="$(find target/fake-gcs/venv/lib -name 'fake-gcs-server-linux-*' -type f | head -n 1)"
[[ -n "$server" ]] || { echo "fake-gcs-server not installed: run scripts/test first" >&2; exit 2; }
work="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
"$server" -scheme http -host 127.0.0.1 -port "$port" -backend memory -log-level error >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do
    curl -sf -o /dev/null -X POST -H 'content-type: application/json' -d '{"name":"bench-state"}' \
        "http://127.0.0.1:$port/storage/v1/b" && break
    sleep 0.1
done
mkdir -p "$work/runbooks"
{
    printf 'runbook: bench\ntitle: Bench\nprocedures:\n  go:\n    summary: Trivial steps\n    stages:\n      - name: All\n        steps:\n'
    for i in $(seq "$steps"); do printf '          - id: s%s\n            run: [true]\n' "$i"; done
} > "$work/runbooks/bench.yaml"
cd "$work"
elapsed() { local start end; start=$(date +%s%N); "$@" >/dev/null 2>&1; end=$(date +%s%N); echo $(((end - start) / 1000000)); }
local_ms=$(RUNBOOK_STATE_DIR="$work/local" elapsed "$bin" bench go --yes)
shared_ms=$(RUNBOOK_STATE_DIR="$work/shared" STORAGE_EMULATOR_HOST="127.0.0.1:$port" \
    RUNBOOK_STATE_URL="gs://bench-state/bench" elapsed "$bin" bench go --yes)
echo "steps: $steps; local: ${local_ms} ms; shared store: ${shared_ms} ms"
echo "added per step: $(((shared_ms - local_ms) * 1000 / steps)) µs"
