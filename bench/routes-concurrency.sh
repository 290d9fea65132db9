#!/usr/bin/env bash
# Benchmark (not a test): how long one mail to three queues takes against the real RT,
# with the routes posted one after another (ROUTE_CONCURRENCY=1, the first releases'
# behaviour) and concurrently (the default, 4). Runs the release function through
# moto and cargo-lambda's runtime API emulator (scripts/lambda-local) against the local
# RT (scripts/rt-test-server), ROUNDS invocations each, and prints the median.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
export RT_TEST_PORT=${RT_TEST_PORT:-8097}
work=$(mktemp -d)
export LAMBDA_LOCAL_STATE="$work/stack" MOTO_PORT=${MOTO_PORT:-5077} LAMBDA_API_PORT=${LAMBDA_API_PORT:-9077}
cleanup() { scripts/lambda-local stop >/dev/null 2>&1 || true; scripts/rt-test-server stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --quiet --release --bin rt-mailgate-lambda
rt_url=$(scripts/rt-test-server start)
routes='bugs@example.test: --queue bugs; support@example.test: --queue support; general@example.test: --queue General'
event="$work/event.json"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() {  # $1: ROUTE_CONCURRENCY; prints the median invocation time in ms
  ROUTE_CONCURRENCY=$1 ROUTES=$routes RT_URL=$rt_url \
    scripts/lambda-local start target/release/rt-mailgate-lambda > /dev/null
  for n in $(seq "$rounds"); do
    id="bench-c$1-$n-$(date +%s%N)"
    printf 'From: alice@customer.example\r\nTo: bugs@example.test\r\nSubject: three desks %s\r\nMessage-ID: <%s@bench>\r\n\r\nFor three queues.\r\n' "$id" "$id" > "$work/mail.eml"
    scripts/lambda-local put "$id" "$work/mail.eml"
    python3 - "$id" > "$event" <<'PY'
import json, sys
event = json.load(open("events/ses-multi-recipient.json"))
ses = event["Records"][0]["ses"]
ses["mail"]["messageId"] = sys.argv[1]
ses["receipt"]["recipients"] = ["bugs@example.test", "support@example.test", "general@example.test"]
print(json.dumps(event))
PY
    start=$(date +%s%N)
    answer=$(scripts/lambda-local invoke "$event")
    echo $(( ($(date +%s%N) - start) / 1000000 ))
    echo "$answer" | grep -q '"delivered":3' || { echo "not delivered to all three: $answer" >&2; exit 1; }
  done | median
  scripts/lambda-local stop > /dev/null
}

sequential=$(run 1)
concurrent=$(run 4)
printf '%-44s %6s ms\n' "one mail, three queues, one after another" "$sequential"
printf '%-44s %6s ms\n' "one mail, three queues, concurrently (4)" "$concurrent"
printf '%-44s %6s\n' "speed-up" "$(awk "BEGIN {printf \"%.1fx\", $sequential / $concurrent}")"
