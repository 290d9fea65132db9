#!/usr/bin/env bash
# Benchmark (not a test): S3 requests per mail on the ordinary path (a first delivery,
# no fault), counted from moto's access log. Each mail goes to one route of a loopback
# stand-in RT that answers `ok` (bench/ok_server.py); the function runs under
# cargo-lambda's runtime API emulator (scripts/lambda-local).
#
#   bench/s3-requests.sh                 this checkout's function
#   BENCH_REV=f32753b bench/s3-requests.sh   another revision, built in a temporary worktree
#                                            (for "before and after")
#
# Prints, per mail: every S3 request (GET/PUT/HEAD) and those made before the post, and
# the storm counter's DynamoDB requests (issue 23: one UpdateItem, sent with the claim;
# BENCH_STORM_TABLE= (empty) runs without the counters, as a deployment before them).
set -euo pipefail
cd "$(dirname "$0")/.."
mails=${BENCH_MAILS:-20}
work=$(mktemp -d)
export LAMBDA_LOCAL_STATE="$work/stack" MOTO_PORT=${MOTO_PORT:-5077} LAMBDA_API_PORT=${LAMBDA_API_PORT:-9077}
ok_port=${OK_PORT:-7077}
cleanup() {
  scripts/lambda-local stop || true
  [ -n "${ok_pid:-}" ] && kill "$ok_pid" 2>/dev/null
  [ -n "${BENCH_REV:-}" ] && git worktree remove --force "$work/rev" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${BENCH_REV:-}" ]; then
  git worktree add -q --detach "$work/rev" "$BENCH_REV"
  # This checkout's target folder: the dependencies are built already, only the crate
  # itself is built again (its binary is copied out before this checkout's build).
  cargo build --quiet --manifest-path "$work/rev/Cargo.toml" --target-dir target --bin rt-mailgate-lambda
  cp target/debug/rt-mailgate-lambda "$work/rev-lambda"
  binary="$work/rev-lambda"
  label="revision $BENCH_REV"
else
  cargo build --quiet --bin rt-mailgate-lambda
  binary=target/debug/rt-mailgate-lambda
  label="this checkout ($(git rev-parse --short HEAD))"
fi

python3 bench/ok_server.py --port "$ok_port" --lifetime 600 > "$work/ok.log" 2>&1 & ok_pid=$!
# The storm counters' table, as the template makes it (the function reads STORM_TABLE).
export STORM_TABLE=${BENCH_STORM_TABLE-rt-mail-storms}
RT_URL="http://127.0.0.1:$ok_port" scripts/lambda-local start "$binary" > /dev/null
if [ -n "$STORM_TABLE" ]; then
  curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/" -X POST \
    -H "X-Amz-Target: DynamoDB_20120810.CreateTable" -H "Content-Type: application/x-amz-json-1.0" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20261124/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0" \
    -d "{\"TableName\": \"$STORM_TABLE\", \"BillingMode\": \"PAY_PER_REQUEST\", \"AttributeDefinitions\": [{\"AttributeName\": \"pk\", \"AttributeType\": \"S\"}], \"KeySchema\": [{\"AttributeName\": \"pk\", \"KeyType\": \"HASH\"}]}"
fi
printf 'From: alice@customer.example\r\nSubject: count\r\nMessage-ID: <count@bench>\r\n\r\nbody\r\n' > "$work/mail.eml"
event=$(cat events/ses-new-ticket.json)
log="$LAMBDA_LOCAL_STATE/moto.log"
for n in $(seq "$mails"); do
  id="bench-s3-$n"
  scripts/lambda-local put "$id" "$work/mail.eml"
  before=$(wc -l < "$log")
  posts_before=$(grep -c 'POST' "$work/ok.log" || true)
  # Each mail from its own sender: the ordinary path is a sender with no storm.
  one="${event//demo-new-ticket-0001/$id}"
  echo "${one//alice@customer.example/alice-$n@customer.example}" > "$work/event.json"
  answer=$(scripts/lambda-local invoke "$work/event.json")
  echo "$answer" | grep -q '"delivered":1' || { echo "mail $n not delivered: $answer" >&2; exit 1; }
  tail -n +"$((before + 1))" "$log" | grep -E '"(GET|PUT|HEAD|POST|DELETE) /' >> "$work/requests.log" || true
  echo "-- mail $n" >> "$work/requests.log"
done
# The mail's own GET is the one under the mail prefix; record requests are under the
# records prefix. The post comes after both the mail's GET and the record's first PUT
# (the claim), which go out at once and reach moto's log in either order: what follows
# the later of the two is "after".
python3 - "$work/requests.log" "$mails" "$label" <<'PY'
import re, sys
path, mails, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
per_mail, current = [], []
for line in open(path):
    if line.startswith("-- mail"):
        per_mail.append(current); current = []
        continue
    m = re.search(r'"(GET|PUT|HEAD|POST|DELETE) (\S+)', line)
    if m: current.append((m.group(1), m.group(2)))
# DynamoDB's JSON API is `POST /` (the storm counter's UpdateItem); the rest is S3.
dynamo = [sum(1 for r in requests if r == ("POST", "/")) for requests in per_mail]
per_mail = [[r for r in requests if r != ("POST", "/")] for requests in per_mail]
total = sum(len(r) for r in per_mail) / len(per_mail)
before = []
for requests in per_mail:
    mail_get = next((i for i, (verb, path) in enumerate(requests) if verb == "GET" and "/inbound/" in path), None)
    # The trace's index entries (delivery-records/index/) are written alongside, not before the post.
    claim = next((i for i, (verb, path) in enumerate(requests)
                  if verb == "PUT" and "/delivery-records/" in path and "/delivery-records/index/" not in path), None)
    if mail_get is None:
        before.append(len(requests))
    else:
        before.append(max(mail_get, claim if claim is not None else -1) + 1)
print(f"{label}: {mails} mails, one route each")
print(f"  S3 requests per mail:               {total:.1f}")
print(f"  of which before the post:           {sum(before) / len(before):.1f}")
print(f"  DynamoDB requests per mail:         {sum(dynamo) / len(dynamo):.1f} (the storm counter, sent with the claim)")
print("  the first mail's requests, in order:")
for verb, path in per_mail[0]:
    print(f"    {verb} {re.sub(r'[?].*', '', path)}")
PY
