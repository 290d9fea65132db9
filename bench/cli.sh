#!/usr/bin/env bash
# Benchmark (not a test): our rt-mailgate against the Perl reference client, on the same
# mails and the same loopback stand-in RT (bench/ok_server.py answers `ok` at once).
# Prints per-message wall time and peak RSS for a small mail and a 40 MB mail.
# Targets: at least 20x faster per small mail; peak RSS under 16 MB for the 40 MB mail.
#   BENCH_RUNS=20 bench/cli.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${BENCH_RUNS:-20}
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time missing: apt-get install time" >&2; exit 1; }
big_runs=${BENCH_BIG_RUNS:-3}
port=${OK_PORT:-7067}
[ -x /usr/bin/rt-mailgate ] || { echo "bench: the Perl client is missing: scripts/rt-test-server install" >&2; exit 1; }
work=$(mktemp -d)
cleanup() { [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --quiet --release --bin rt-mailgate
ours=target/release/rt-mailgate
python3 bench/ok_server.py --port "$port" --lifetime 900 & server_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

printf 'From: alice@customer.example\nTo: bugs@example.test\nSubject: small\nMessage-ID: <small@bench>\n\n%s\n' \
  "$(for i in $(seq 12); do echo "Line $i of a short customer mail, about eighty characters long, give or take."; done)" > "$work/small.eml"
python3 - "$work/big.eml" <<'PY'
import base64, os, sys
body = base64.encodebytes(os.urandom(29 * 1024 * 1024))
head = (b"From: alice@customer.example\nSubject: big\nMessage-ID: <big@bench>\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: base64\n\n")
open(sys.argv[1], "wb").write(head + body + b"--B--\n")
PY

# N runs of one client on one mail: prints "median_wall_ms peak_rss_kb".
measure() { python3 bench/run_client.py "$1" "$2" "$3" "http://127.0.0.1:$port"; }

printf '%-12s %-12s %14s %14s\n' client mail "median wall" "peak RSS"
declare -A result
for client in perl ours; do
  bin=/usr/bin/rt-mailgate; [ "$client" = ours ] && bin=$ours
  for mail in small big; do
    n=$runs; [ "$mail" = big ] && n=$big_runs
    read -r ms kb < <(measure "$bin" "$work/$mail.eml" "$n")
    result[$client-$mail-ms]=$ms; result[$client-$mail-kb]=$kb
    printf '%-12s %-12s %11.2f ms %11.1f MB\n' "$client" "$mail ($n)" "$ms" "$(awk "BEGIN {print $kb / 1024}")"
  done
done
speedup=$(awk "BEGIN {printf \"%.1f\", ${result[perl-small-ms]} / ${result[ours-small-ms]}}")
big_mb=$(awk "BEGIN {printf \"%.1f\", ${result[ours-big-kb]} / 1024}")
echo
echo "speed-up per small mail: ${speedup}x (target >= 20x: $(awk "BEGIN {print ($speedup >= 20) ? \"MET\" : \"MISSED\"}"))"
echo "our peak RSS, 40 MB mail: ${big_mb} MB (target < 16 MB: $([ "${result[ours-big-kb]}" -lt 16384 ] && echo MET || echo MISSED))"
