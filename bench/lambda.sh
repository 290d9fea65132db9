#!/usr/bin/env bash
# Benchmark (not a test): the Lambda's cold-start time and peak memory for a 40 MB mail.
# Runs the release function against moto (S3) and cargo-lambda's runtime API emulator,
# posting to a loopback stand-in RT that answers `ok` (bench/ok_server.py), and reads
# the function's own "ready" log line and its kernel high-water mark (VmHWM).
# Targets: peak RSS under 32 MB (the function must run at 128 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
export LAMBDA_LOCAL_STATE="$work/stack" MOTO_PORT=${MOTO_PORT:-5066} LAMBDA_API_PORT=${LAMBDA_API_PORT:-9066}
ok_port=${OK_PORT:-7066}
cleanup() { scripts/lambda-local stop || true; [ -n "${ok_pid:-}" ] && kill "$ok_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --quiet --release --bin rt-mailgate-lambda
python3 bench/ok_server.py --port "$ok_port" --lifetime 600 > "$work/ok.log" 2>&1 & ok_pid=$!
python3 - "$work/big.eml" <<'PY'
import base64, os, sys
body = base64.encodebytes(os.urandom(29 * 1024 * 1024)).replace(b"\n", b"\r\n")
head = b"From: alice@customer.example\r\nTo: bugs@example.test\r\nSubject: forty megabytes\r\nMessage-ID: <big@bench>\r\n\r\n"
open(sys.argv[1], "wb").write(head + body)
PY
size=$(stat -c %s "$work/big.eml")

RT_URL="http://127.0.0.1:$ok_port" scripts/lambda-local start target/release/rt-mailgate-lambda > /dev/null
pid=$(scripts/lambda-local pid)
init_ms=$(grep -o '"init_ms":[0-9.]*' "$LAMBDA_LOCAL_STATE/function.log" | cut -d: -f2)
idle_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
scripts/lambda-local put demo-new-ticket-0001 "$work/big.eml"
start=$(date +%s%N)
answer=$(scripts/lambda-local invoke events/ses-new-ticket.json)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo "$answer" | grep -q '"delivered":1' || { echo "the 40 MB mail was not delivered: $answer" >&2; exit 1; }

printf '%-34s %s\n' "mail size" "$((size / 1024 / 1024)) MB ($size bytes)"
printf '%-34s %.1f ms\n' "cold start (process to ready)" "$init_ms"
printf '%-34s %s ms\n' "invocation incl. S3 read + post" "$ms"
printf '%-34s %.1f MB\n' "peak RSS before the mail" "$(awk "BEGIN {print $idle_kb / 1024}")"
printf '%-34s %.1f MB  (target < 32 MB: %s)\n' "peak RSS with the 40 MB mail" "$(awk "BEGIN {print $peak_kb / 1024}")" \
  "$([ "$peak_kb" -lt 32768 ] && echo MET || echo MISSED)"
