#!/bin/sh
# Stand-in for the application's queue smoke test (the real one lives in the app checkout),
# so `verify` can be rehearsed from this folder against the simulated app.
set -eu
: "${API_BASE_URL:?API_BASE_URL must be set}"
echo "enqueueing a smoke job at $API_BASE_URL"
curl -fsS -X POST "$API_BASE_URL/jobs/smoke"
echo
