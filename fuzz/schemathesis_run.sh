#!/usr/bin/env bash
# Schemathesis against the live server: `imgsim serve` on a tiny generated workdir, on
# 127.0.0.1 only, every check of every operation in src/imgsim/web/openapi.yaml, a bounded
# number of examples (SCHEMATHESIS_EXAMPLES, default 100) and time (SCHEMATHESIS_SECONDS, 180),
# with a one-run token so that the updating endpoints are exercised too.
# Fails on any 5xx, any answer that does not match the description, or a refused valid request.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${VENV:-.venv}/bin")
examples=${SCHEMATHESIS_EXAMPLES:-100}
seconds=${SCHEMATHESIS_SECONDS:-180}
work=$(mktemp -d -t imgsim-schemathesis-XXXXXX)
port=$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"$bin/python" fuzz/tiny_workdir.py "$work"
"$bin/imgsim" -q index --data "$work/data" --workdir "$work"
# A token for this run only, so the updating endpoints (POST/DELETE /images) are fuzzed too.
token=$("$bin/python" -c 'import secrets; print(secrets.token_hex(16))')
IMGSIM_TOKEN=$token "$bin/imgsim" -q serve --workdir "$work" --host 127.0.0.1 --port "$port" \
    >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

status=0
# Run from the scratch folder: schemathesis keeps its cache (.schemathesis/) in the current one.
config=$PWD/fuzz/schemathesis.toml
export SCHEMATHESIS_HOOKS=$PWD/fuzz/schemathesis_hooks.py
(cd "$work" && "$bin/schemathesis" --config-file "$config" run \
    "http://127.0.0.1:$port/openapi.json" --wait-for-schema 60 \
    -H "Authorization: Bearer $token" \
    --max-examples "$examples" --max-time "$seconds" --seed 1 --workers 1) || status=$?
if grep -q "Traceback\|Unhandled error" "$work/server.log"; then
    echo "server log has errors:"; grep -A20 "Traceback\|Unhandled error" "$work/server.log" | head -80
    status=1
fi
exit "$status"
