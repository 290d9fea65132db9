#!/usr/bin/env bash
# Benchmark (not a test): REST 2 requests threading adds to a mail's post (issue 22,
# point 9), and RT's time per request. Our release CLI posts each kind of mail with
# --rt-organization (the same threading code as the Lambda's: ask_thread_target)
# through bench/threading_proxy.py, a loopback HTTP proxy that logs every request (not
# every connection) with its time. Kinds of mail, each a reply to one ticket:
#   subject-tag   `Re: [example.test #N] ...`: RT threads it itself      expected 0
#   no-marker     no tag, no In-Reply-To/References                      expected 0
#   rt-marker     `References: <RT-Ticket-N@rt.example.test>`            expected 1 (the check)
#   message-id    `In-Reply-To:` the customer's first mail               expected 1 (the RT-side
#                 extra deploy/rt/lib, which the test RT loads: tickets found and checked)
#   message-id-without-extra   the same, the proxy answering the extra's path 404 as a
#                 door without rest2-thread.conf does                    expected 4 for the
#                 CLI (the 404, the search, the hit's transaction, the check; the function
#                 pays the 404 once per instance: 3; RT 5's REST 2 can't expand the
#                 attachment's transaction, see src/rt/lookup.rs)
# Prints per kind: REST 2 requests per mail (each run must agree, else the script
# fails) and the median ms of each kind of request, over BENCH_RUNS (default 10) mails.
#
#   RT_TEST_PORT=8098 bench/threading.sh                     starts a fresh test RT, stops it after
#   BENCH_RT_URL=http://127.0.0.1:8089 bench/threading.sh    uses a running test RT (its state
#                                                            folder's lookup token: RT_TEST_STATE)
# PROXY_PORT (default 7098).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${BENCH_RUNS:-10}
proxy_port=${PROXY_PORT:-7098}
work=$(mktemp -d)
. bench/rt.sh
cleanup() {
  [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null
  [ -n "${hiding_pid:-}" ] && kill "$hiding_pid" 2>/dev/null
  bench_rt_down
  rm -rf "$work"
}
trap cleanup EXIT

echo "building the release CLI..." >&2
cargo build --quiet --release --bin rt-mailgate
ours=${CARGO_TARGET_DIR:-target}/release/rt-mailgate

bench_rt_up 8098
port=${rt_url##*:}; port=${port%%/*}
state=${RT_TEST_STATE:-/tmp/rt-mailgate-test-rt-$port}
token=$(cat "$state/lookup-token") || { echo "no lookup token in $state (scripts/rt-test-server lookup-user)" >&2; exit 2; }
printf '{"rt_token": "%s"}' "$token" > "$work/secret.json"
chmod 600 "$work/secret.json"

upstream=${rt_url#*://}; upstream=${upstream%%/*}
python3 bench/threading_proxy.py --port "$proxy_port" --upstream "$upstream" --log "$work/requests.jsonl" & proxy_pid=$!
hiding_port=$((proxy_port + 1))
python3 bench/threading_proxy.py --port "$hiding_port" --upstream "$upstream" --log "$work/requests.jsonl" \
  --hide /REST/2.0/mailgate-thread & hiding_pid=$!
for port_up in "$proxy_port" "$hiding_port"; do
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port_up") 2>/dev/null && break; sleep 0.1; done
done

post() {  # post FILE: through the proxy, threading on
  "$ours" --url "http://127.0.0.1:${2:-$proxy_port}" --queue support --action correspond \
    --rt-organization rt.example.test --rt-name example.test --secret-file "$work/secret.json" < "$1"
}

# The ticket every reply answers, from the customer's first mail.
run_id="bench-$$-$(date +%s)"
first_id="<$run_id-first@customer.example>"
printf 'From: alice@customer.example\nTo: support@example.test\nSubject: %s\nMessage-ID: %s\n\nIt burns.\n' \
  "$run_id" "$first_id" > "$work/first.eml"
post "$work/first.eml"
ticket=$(curl -fsS -G "$rt_url/REST/1.0/search/ticket" --data-urlencode "query=Subject LIKE '$run_id'" \
  --data-urlencode user=root --data-urlencode pass=password | grep -o '^[0-9]*' | head -1)
[ -n "$ticket" ] || { echo "the first mail made no ticket" >&2; exit 1; }
echo "ticket $ticket; $runs mails of each kind" >&2

printf '%-12s %-14s %s\n' kind "REST 2/mail" "median ms per request"
for kind in subject-tag no-marker rt-marker message-id message-id-without-extra; do
  counts=()
  : > "$work/requests.jsonl"
  for n in $(seq "$runs"); do
    case $kind in
      subject-tag) extra=""; subject="Re: [example.test #$ticket] $run_id" ;;
      no-marker) extra=""; subject="Re: $run_id" ;;
      rt-marker) extra="References: <RT-Ticket-$ticket@rt.example.test>"$'\n'; subject="Re: $run_id" ;;
      message-id|message-id-without-extra) extra="In-Reply-To: $first_id"$'\n'"References: $first_id"$'\n'; subject="Re: $run_id" ;;
    esac
    printf 'From: bob@customer.example\nTo: support@example.test\nSubject: %s\nMessage-ID: <%s-%s-%s@customer.example>\n%s\n%s reply %s\n' \
      "$subject" "$run_id" "$kind" "$n" "$extra" "$kind" "$n" > "$work/mail.eml"
    before=$(grep -c '/REST/2.0/' "$work/requests.jsonl" || true)
    if [ "$kind" = message-id-without-extra ]; then post "$work/mail.eml" "$hiding_port"; else post "$work/mail.eml"; fi
    after=$(grep -c '/REST/2.0/' "$work/requests.jsonl" || true)
    counts+=($((after - before)))
  done
  distinct=$(printf '%s\n' "${counts[@]}" | sort -u | tr '\n' ' ')
  [ "$(printf '%s\n' "${counts[@]}" | sort -u | wc -l)" = 1 ] || { echo "$kind: the count varied: $distinct" >&2; exit 1; }
  times=$(python3 - "$work/requests.jsonl" <<'PY'
import json, re, statistics, sys
by = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    path = re.sub(r"/[0-9]+$", "/N", r["path"])
    by.setdefault(path, []).append(r["seconds"] * 1000)
print(", ".join(f"{p} {statistics.median(v):.0f}" for p, v in sorted(by.items())))
PY
)
  printf '%-12s %-14s %s\n' "$kind" "${counts[0]}" "$times"
done
