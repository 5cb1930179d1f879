#!/usr/bin/env bash
# Runs every atheris target in fuzz/ for a bounded time each (FUZZ_SECONDS, default 60).
# Prints one summary line per target; on a finding, the end of its log (with the input in
# Base64) and a non-zero exit. An input slower than 10 s or a process over 2 GB is a finding
# too: the server must neither hang nor balloon on one upload.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
seconds=${FUZZ_SECONDS:-60}
out=$(mktemp -d -t imgsim-fuzz-XXXXXX)
status=0
for target in fuzz/fuzz_*.py; do
    name=$(basename "$target" .py)
    if "$python" "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$out/$name-" >"$out/$name.log" 2>&1; then
        echo "$name: ok, $(grep -E '^Done [0-9]+ runs' "$out/$name.log" || echo 'no summary')"
    else
        status=1
        echo "$name: FAILED (log and inputs in $out)"
        grep -v '^INFO: Instrumenting' "$out/$name.log" | tail -40
    fi
done
exit "$status"
