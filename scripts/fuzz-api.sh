#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with Schemathesis: every
# operation (user and admin), every check, a fixed seed and a bounded number of
# examples, and fails on any failure.
#
# It builds `booking`, starts `booking serve` on a fresh SQLite file on 127.0.0.1
# (a free port, no rate limit, a generated admin key), creates a concert with one
# date, takes a queue token and waits until it is admitted, then runs Schemathesis
# (installed with pip into a virtual environment under target/) against
# /openapi.json with scripts/schemathesis.toml. The server is stopped at the end.
#
# Usage: scripts/fuzz-api.sh [extra arguments for `st run`]
# Environment: FUZZ_MAX_EXAMPLES (default 300 per operation and phase),
# FUZZ_SEED (default 1), FUZZ_VENV (default target/fuzz-venv), PYTHON (python3).
# Needs: cargo, python3 with venv and pip (a Debian machine: python3-venv), curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-300}
SEED=${FUZZ_SEED:-1}
VENV=${FUZZ_VENV:-$ROOT/target/fuzz-venv}
PYTHON=${PYTHON:-python3}

echo "== schemathesis $SCHEMATHESIS_VERSION in $VENV"
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$VENV/bin/st" --version

echo "== build"
cargo build --locked --quiet -p booking-cli
BOOKING=target/debug/booking

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

ADMIN_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')
USER_ID=$("$PYTHON" -c 'import uuid; print(uuid.uuid4())')

echo "== serve on a fresh SQLite file"
# Admission: a batch of 100,000 every 10 ms, so the token is admitted at the next
# tick whatever the fuzzer does to the line before; no rate limit, since the fuzzer
# sends thousands of requests from one address with one token.
"$BOOKING" serve \
  --database-url "sqlite://$WORK/fuzz.db" \
  --bind 127.0.0.1:0 \
  --admin-key "$ADMIN_KEY" \
  --policy "batch=100000,every=10ms,max-active=1000000" \
  --rate-limit-ip 0 --rate-limit-token 0 \
  --session-ttl 1h \
  --log warn >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
BASE=
for _ in $(seq 1 100); do
  BASE=$(sed -n 's/^listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$WORK/serve.out" | head -n 1)
  [ -n "$BASE" ] && curl -sf "$BASE/readyz" >/dev/null 2>&1 && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server did not start:" >&2
    cat "$WORK/serve.err" >&2
    exit 1
  fi
  sleep 0.1
done
[ -n "$BASE" ] || { echo "the server did not say where it listens" >&2; exit 1; }
echo "server: $BASE"

json() { "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)'"$1"')'; }
admin() { curl -sS --fail-with-body -H "Authorization: Bearer $ADMIN_KEY" -H 'Content-Type: application/json' "$@"; }

echo "== a concert, a date, an admitted token"
CONCERT=$(admin -X POST "$BASE/v1/admin/concerts" -d '{"name": "Fuzz night"}' | json '["id"]')
STARTS=$("$PYTHON" -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) + d.timedelta(days=30)).strftime("%Y-%m-%dT20:00:00Z"))')
admin -X POST "$BASE/v1/admin/concerts/$CONCERT/dates" -d "{\"starts_at\": \"$STARTS\", \"seats\": 50, \"price\": 100}" >/dev/null
TOKEN=$(curl -sS --fail-with-body -H 'Content-Type: application/json' -X POST "$BASE/v1/queue/tokens" \
  -d "{\"user_id\": \"$USER_ID\"}" | json '["token"]')
STATUS=
for _ in $(seq 1 100); do
  STATUS=$(curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" "$BASE/v1/queue/status" | json '["status"]')
  [ "$STATUS" = active ] && break
  sleep 0.1
done
[ "$STATUS" = active ] || { echo "the token was not admitted (status: $STATUS)" >&2; exit 1; }
# The first gated request starts the session.
curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" "$BASE/v1/concerts" >/dev/null
echo "token admitted for user $USER_ID"

echo "== schemathesis: all checks, seed $SEED, at most $MAX_EXAMPLES examples per operation"
export BOOKING_FUZZ_TOKEN=$TOKEN BOOKING_FUZZ_ADMIN_KEY=$ADMIN_KEY BOOKING_FUZZ_USER=$USER_ID
# Run from the scratch directory: Schemathesis keeps a cache in the current one.
status=0
(cd "$WORK" && "$VENV/bin/st" --config-file "$ROOT/scripts/schemathesis.toml" run "$BASE/openapi.json" \
  --checks all \
  --seed "$SEED" \
  --max-examples "$MAX_EXAMPLES" \
  --no-color \
  "$@") || status=$?

if grep -q 'ERROR' "$WORK/serve.err"; then
  echo "the server logged errors during the run:" >&2
  grep 'ERROR' "$WORK/serve.err" | head -n 20 >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "fuzz-api: FAILED (exit $status)" >&2
  exit "$status"
fi
echo "fuzz-api: no failures"
