#!/usr/bin/env bash
# Benchmark (not a test): how long a real RT 5 takes to answer a mail, against the mail's
# size. RT reads the whole upload, then turns it into a ticket (and runs its scrips)
# before it answers, sending nothing meanwhile: that silence is what an inactivity
# timeout (the Lambda's RT_TIMEOUT, the CLI's --timeout) must outlast, or the client gives
# up on a mail RT is still storing and the retry makes a second ticket.
#
# Each mail is posted with our release CLI (--timeout 0: no limit) through
# bench/timing_proxy.py, a loopback relay that notes when the last request byte came from
# the client (the end of the upload) and when RT's first answer byte went back:
#   upload+answer = first request byte to first answer byte (what one post costs),
#   answer only   = last request byte to first answer byte (RT's silence),
#   RT CPU        = CPU seconds RT's processes used for the post (a test RT started here
#                   only): what the answer would take on an idle core, whatever the load.
# On loopback the upload itself takes milliseconds; across a network add its transfer.
# Kinds of mail (a short header; the size is the whole mail's):
#   body-text     one text/plain body of random-ish text in short lines of varying length
#   body-html     the same as a text/html body: RT's slowest case, so it is measured up to
#                 BENCH_HTML_MAX_MB (default 5) and extrapolated linearly (`~`) beyond
#   attach-text   a short body plus that text as a text/plain attachment
#   attach-base64 a short body plus random bytes as a base64 attachment (76-char lines)
# Recommended RT_TIMEOUT per row: BENCH_SAFETY (default 3) x RT's answer on an idle
# core (RT CPU when known, else the answer measured), rounded up to 10 s, so an RT that
# is 3 times slower (busy, slower CPU, more scrips) still answers in time. The one to
# configure is the worst for the largest mail SES accepts (40 MB).
#
#   RT_TEST_PORT=8094 bench/rt-answer-time.sh    starts a fresh test RT there, stops it after
#   BENCH_RT_URL=http://127.0.0.1:8089 bench/rt-answer-time.sh   uses a running RT as it is
# Other settings: BENCH_SIZES (MB, default "0.1 1 5 10 20 40"), BENCH_KINDS (default all
# four), BENCH_BUDGET (seconds of posting, default 300: later mails are skipped, loudly,
# once it is spent; a post still running 60 s past it fails the run), PROXY_PORT
# (default 7097). RT's answer time is CPU time: run it on a quiet machine (the load
# average is printed with the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${BENCH_SIZES:-"0.1 1 5 10 20 40"}
kinds=${BENCH_KINDS:-"body-text body-html attach-text attach-base64"}
html_max=${BENCH_HTML_MAX_MB:-5}
safety=${BENCH_SAFETY:-3}
budget=${BENCH_BUDGET:-300}
proxy_port=${PROXY_PORT:-7097}
export RT_TEST_PORT=${RT_TEST_PORT:-8097}
work=$(mktemp -d)
. bench/rt.sh
cleanup() {
  [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null
  bench_rt_down
  rm -rf "$work"
}
trap cleanup EXIT

echo "building the release CLI..." >&2
cargo build --quiet --release --bin rt-mailgate
ours=${CARGO_TARGET_DIR:-target}/release/rt-mailgate

bench_rt_up 8097
if $started_rt; then rt_pgid=$(cat "${RT_TEST_STATE:-/tmp/rt-mailgate-test-rt-$RT_TEST_PORT}/rt.pid"); fi
upstream=${rt_url#*://}; upstream=${upstream%%/*}
python3 bench/timing_proxy.py --port "$proxy_port" --upstream "$upstream" --log "$work/times.jsonl" \
  --lifetime $((budget + 120)) & proxy_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null && break; sleep 0.1; done
sleep 0.2; : > "$work/times.jsonl"  # the readiness probe above is not a post
load_before=$(cut -d' ' -f1 /proc/loadavg)
began=$SECONDS

# make_mail KIND MB FILE: a mail of about MB megabytes (10^6 bytes) with LF line ends, as
# a local MTA hands it over (the Lambda turns SES's CRLF into LF before posting too).
make_mail() {
  python3 - "$1" "$2" "$3" <<'PY'
import base64, os, random, sys
kind, mb, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
size = int(mb * 1_000_000)
rng = random.Random(f"{kind}-{mb}")
head = (f"From: alice@customer.example\nTo: bugs@example.test\nSubject: {kind}, {mb:g} MB\n"
        f"Message-ID: <{kind}-{mb:g}-{os.getpid()}@bench.example>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
        "MIME-Version: 1.0\n")
note = "Content-Type: text/plain; charset=us-ascii\n\nThe attachment is what RT has to store.\n"
def text(size):
    words = ("error warn info retry queue ticket mail gateway timeout socket upload answer "
             "request 200 404 503 0x7f3a 2024-01-01T00:00:00Z user=alice id=42 ok not").split()
    pool = " ".join(rng.choice(words) for _ in range(200_000))
    lines, left = [], size
    while left > 0:
        n = rng.choice((0, 3, 9, 17, 24, 31, 40, 48, 55, 63, 72, 79))
        at = rng.randrange(len(pool) - 80)
        lines.append(pool[at:at + n])
        left -= n + 1
    return "\n".join(lines) + "\n"
if kind == "body-text":
    mail = head + "Content-Type: text/plain; charset=us-ascii\n\n" + text(size - len(head) - 50)
elif kind == "body-html":
    body = text((size - len(head) - 100) * 100 // 111).replace("\n", "<br>\n")
    mail = head + "Content-Type: text/html; charset=us-ascii\n\n<html><body>\n" + body + "</body></html>\n"
elif kind == "attach-text":
    mail = (head + "Content-Type: multipart/mixed; boundary=BENCH\n\n--BENCH\n" + note + "--BENCH\n"
            'Content-Type: text/plain; charset=us-ascii\nContent-Disposition: attachment; filename="server.log"\n\n'
            + text(size - len(head) - 300) + "--BENCH--\n")
elif kind == "attach-base64":
    raw = rng.randbytes(max(1, (size - len(head) - 350) * 57 // 77))
    mail = (head + "Content-Type: multipart/mixed; boundary=BENCH\n\n--BENCH\n" + note + "--BENCH\n"
            'Content-Type: application/octet-stream\nContent-Disposition: attachment; filename="data.bin"\n'
            "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(raw).decode() + "--BENCH--\n")
else:
    sys.exit(f"unknown kind of mail: {kind}")
open(path, "w").write(mail)
PY
}

# rt_cpu: CPU seconds used so far by RT's process group (with its waited-for children),
# or `-` for an RT not started here.
rt_cpu() {
  [ -n "${rt_pgid:-}" ] || { echo -; return; }
  python3 - "$rt_pgid" "$(getconf CLK_TCK)" <<'PY'
import glob, sys
group, ticks, total = sys.argv[1], int(sys.argv[2]), 0
for stat in glob.glob("/proc/[0-9]*/stat"):
    try:
        fields = open(stat).read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if fields[2] == group:  # pgrp
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
print(total / ticks)
PY
}
# idle ANSWER CPU: RT's answer on an idle core: CPU, or ANSWER when CPU is `-`.
idle() { local cpu=${2#\~}; [ "$cpu" = - ] && echo "$1" || echo "$cpu"; }
# rt_timeout ANSWER CPU: the safety factor times the idle answer, rounded up to 10 s.
rt_timeout() {
  awk -v a="$(idle "$1" "$2")" -v k="$safety" 'BEGIN { r = int((a * k + 9.999) / 10) * 10; print (r < 10 ? 10 : r) }'
}
# bigger A B: exit 0 when A > B.
bigger() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

largest=0
for mb in $sizes; do bigger "$mb" "$largest" && largest=$mb; done
printf '%-14s %6s %10s %16s %14s %9s %16s\n' kind MB bytes "upload+answer s" "answer only s" "RT CPU s" "RT_TIMEOUT >= s"
declare -A last_mb last_total last_answer last_cpu
worst=0; worst_cpu=-; worst_kind=none; skipped=0
for mb in $sizes; do
  for kind in $kinds; do
    if [ "$kind" = body-html ] && bigger "$mb" "$html_max"; then continue; fi
    if (( SECONDS - began > budget )); then
      printf '%-14s %6s   skipped: the %s s budget is spent (BENCH_BUDGET)\n' "$kind" "$mb" "$budget"
      skipped=$((skipped + 1)); continue
    fi
    mail="$work/$kind-$mb.eml"
    make_mail "$kind" "$mb" "$mail"
    bytes=$(stat -c %s "$mail")
    before=$(wc -l < "$work/times.jsonl")
    cpu_before=$(rt_cpu)
    status=0
    timeout $((budget + 60 - (SECONDS - began))) "$ours" --url "http://127.0.0.1:$proxy_port" \
      --queue General --timeout 0 < "$mail" 2> "$work/stderr" || status=$?
    cpu=$(rt_cpu)
    [ "$cpu" = - ] || cpu=$(awk -v a="$cpu" -v b="$cpu_before" 'BEGIN { printf "%.1f", a - b }')
    rm -f "$mail"
    if [ "$status" != 0 ] || [ -s "$work/stderr" ]; then
      echo "the $kind $mb MB mail was not delivered (exit $status): $(head -c 400 "$work/stderr")" >&2
      exit 1
    fi
    for _ in $(seq 50); do [ "$(wc -l < "$work/times.jsonl")" -gt "$before" ] && break; sleep 0.1; done
    read -r total answer < <(tail -n 1 "$work/times.jsonl" | python3 -c \
      'import json, sys; t = json.load(sys.stdin); print(t["total_s"], t["answer_s"])')
    printf '%-14s %6s %10s %16.1f %14.1f %9s %16s\n' "$kind" "$mb" "$bytes" "$total" "$answer" "$cpu" "$(rt_timeout "$answer" "$cpu")"
    last_mb[$kind]=$mb; last_total[$kind]=$total; last_answer[$kind]=$answer; last_cpu[$kind]=$cpu
    if [ "$mb" = "$largest" ] && bigger "$(idle "$answer" "$cpu")" "$(idle "$worst" "$worst_cpu")"; then
      worst=$answer; worst_cpu=$cpu; worst_kind=$kind
    fi
  done
done
# Kinds stopped short of the largest size: extrapolated linearly from their largest mail.
for kind in $kinds; do
  mb=${last_mb[$kind]:-}
  [ -n "$mb" ] && [ "$mb" != "$largest" ] || continue
  total=$(awk -v t="${last_total[$kind]}" -v m="$mb" -v l="$largest" 'BEGIN { print t / m * l }')
  answer=$(awk -v a="${last_answer[$kind]}" -v m="$mb" -v l="$largest" 'BEGIN { print a / m * l }')
  cpu=${last_cpu[$kind]}
  [ "$cpu" = - ] || cpu="~$(awk -v c="$cpu" -v m="$mb" -v l="$largest" 'BEGIN { printf "%.0f", c / m * l }')"
  printf '%-14s %6s %10s %16s %14s %9s %16s\n' "$kind" "~$largest" "" "~$(printf %.0f "$total")" \
    "~$(printf %.0f "$answer")" "$cpu" "$(rt_timeout "$answer" "$cpu")"
  if bigger "$(idle "$answer" "$cpu")" "$(idle "$worst" "$worst_cpu")"; then
    worst=$answer; worst_cpu=$cpu; worst_kind="$kind, extrapolated from $mb MB"
  fi
done

echo
echo "RT: $rt_url; $((SECONDS - began)) s of posting; load average $load_before before, $(cut -d' ' -f1 /proc/loadavg) after."
if [ "$skipped" -gt 0 ]; then
  echo "$skipped mail(s) skipped: the figures below cover only what was measured." >&2
fi
printf 'slowest %s MB mail (%s): answered after %.0f s at this load, RT CPU %s s\n' \
  "$largest" "$worst_kind" "$worst" "${worst_cpu#\~}"
echo "recommended RT_TIMEOUT: >= $(rt_timeout "$worst" "$worst_cpu") s ($safety x the idle answer, rounded up to 10 s)"
