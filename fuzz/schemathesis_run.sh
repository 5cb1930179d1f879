#!/usr/bin/env bash
# Schemathesis against the live server: `imgsim serve` on a tiny generated workdir, on
# 127.0.0.1 only, every check of every operation in src/imgsim/web/openapi.yaml, a bounded
# number of examples (SCHEMATHESIS_EXAMPLES, default 100) and time (SCHEMATHESIS_SECONDS, 180).
# Fails on any 5xx, any answer that does not match the description, or a refused valid request.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VENV:-.venv}/bin
examples=${SCHEMATHESIS_EXAMPLES:-100}
seconds=${SCHEMATHESIS_SECONDS:-180}
work=$(mktemp -d -t imgsim-schemathesis-XXXXXX)
port=$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"$bin/python" fuzz/tiny_workdir.py "$work"
"$bin/imgsim" -q index --data "$work/data" --workdir "$work"
"$bin/imgsim" -q serve --workdir "$work" --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

status=0
"$bin/schemathesis" --config-file fuzz/schemathesis.toml run \
    "http://127.0.0.1:$port/openapi.json" --wait-for-schema 60 \
    --max-examples "$examples" --max-time "$seconds" --seed 1 --workers 1 || status=$?
if grep -q "Traceback\|internal server error" "$work/server.log"; then
    echo "server log has errors:"; grep -B2 -A20 "Traceback" "$work/server.log" | head -80
    status=1
fi
exit "$status"
