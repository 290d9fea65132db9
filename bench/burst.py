#!/usr/bin/env python3
"""Benchmark (not a test): a burst through the buffered mode against RT alone.

BENCH_MAILS mails (default 300) are posted to the real RT twice per run:

- **RT alone**: BENCH_CONCURRENCY (default 2, the template's MaxConcurrency) clients
  post them straight to RT's mail gateway, one after another each, taking five at a
  time as the function does: what RT needs.
- **buffered mode**: the same number of release function processes (cargo-lambda's
  runtime API emulator, mails in moto's S3) drain SQS batches of 5 (the template's
  BatchSize), each record an SNS envelope of SES's S3-action notification, as the
  buffered mode delivers them.

Both post at most BENCH_CONCURRENCY mails at once. The two phases take turns in chunks of
BENCH_CHUNK mails (default 50; the first phase alternates from chunk to chunk), and each
phase's time is the sum over its chunks: RT's own answer time drifts by up to 25% over a
few minutes on a small machine (its database grows, the machine's other work comes and
goes), and measured as two long phases one after the other that drift, not the
function, decided the ratio. Taking turns gives both phases the same RT.

The ratio buffered / alone is printed per run with the median of BENCH_RUNS (default 5)
runs; the target is a ratio under 1.1 in every run. RT's own answer time per post is
printed for both phases, and what an invocation takes beyond its posts' answers (the
function's share: the emulator's hand-over, the S3 requests a post does not hide). RT:
BENCH_RT_URL, or a throw-away one that scripts/rt-test-server starts on port 8098.
Everything binds 127.0.0.1; stops by itself.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAILS = int(os.environ.get("BENCH_MAILS", "300"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "2"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
BATCH = 5
CHUNK = int(os.environ.get("BENCH_CHUNK", "50"))
BUCKET, PREFIX = "rt-mail", "inbound/"
FUNCTION = os.path.join(ROOT, "target/release/rt-mailgate-lambda")
AUTH = "AWS4-HMAC-SHA256 Credential=test/20261124/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, seconds=60):
    until = time.time() + seconds
    while time.time() < until:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"burst: {what} did not start on port {port}")


def mail(subject):
    return (
        f"From: alice@customer.example\r\nTo: bugs@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4()}@customer.example>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n"
        + "A line of an ordinary customer mail, about a kilobyte in all.\r\n" * 16
    ).encode()


POST_SECONDS = []
# (SES ids of the batch, seconds the invocation took), for the buffered phase.
INVOCATIONS = []


def post_to_rt(rt_url, message):
    """One post to RT's mail gateway, as rt-mailgate makes it; its time is kept."""
    started = time.monotonic()
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (("queue", b"bugs"), ("action", b"correspond"), ("message", message)):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        rt_url.rstrip("/") + "/REST/1.0/NoAuth/mail-gateway",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    answer = urllib.request.urlopen(request, timeout=120).read().decode()
    if not answer.startswith("ok"):
        sys.exit(f"burst: RT refused a mail: {answer[:200]}")
    POST_SECONDS.append(time.monotonic() - started)


def post_group(rt_url):
    """Posts a group of mails one after another, as one client."""
    return lambda group: [post_to_rt(rt_url, message) for message in group]


def in_parallel(items, work):
    """Runs work(item) for every item, CONCURRENCY at a time; returns the seconds taken."""
    todo = list(items)
    lock = threading.Lock()
    failures = []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                item = todo.pop(0)
            try:
                work(item)
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)
                return

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"burst: {failures[0]}")
    return time.monotonic() - start


class Buffered:
    """moto, the emulator, and CONCURRENCY release function processes."""

    def __init__(self, rt_url, work):
        self.dir = work
        self.children = []
        self.moto_port, self.api_port = free_port(), free_port()
        self.moto = f"http://127.0.0.1:{self.moto_port}"
        # moto stands in for S3, which in a deploy runs on AWS's machines, not RT's: it runs
        # niced (BENCH_MOTO_NICE, default 10), so that its CPU (Python, several ms a request)
        # is not taken from RT on a small machine. Its CPU seconds are printed.
        nice = os.environ.get("BENCH_MOTO_NICE", "10")
        self.spawn(["nice", "-n", nice, "moto_server", "-H", "127.0.0.1", "-p", str(self.moto_port)], "moto")
        wait_port(self.moto_port, "moto")
        self.spawn(
            ["cargo", "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(self.api_port),
             "--concurrency", str(CONCURRENCY)],
            "emulator",
        )
        wait_port(self.api_port, "cargo lambda watch")
        self.s3("PUT", BUCKET)
        # The storm counters (issue 23) as the template deploys them: one DynamoDB
        # UpdateItem per mail beside the claim. The bounds are set out of reach, so the
        # burst measures the counter's cost, not its holds (BENCH_STORM_TABLE= : off).
        storm_table = os.environ.get("BENCH_STORM_TABLE", "rt-mail-storms")
        if storm_table:
            self.dynamodb("CreateTable", {
                "TableName": storm_table, "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            })
        env = {
            "PATH": os.environ["PATH"],
            "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.api_port}/.rt",
            "AWS_LAMBDA_FUNCTION_NAME": "_", "AWS_LAMBDA_FUNCTION_VERSION": "1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.moto, "S3_FORCE_PATH_STYLE": "true",
            "MAIL_BUCKET": BUCKET, "MAIL_PREFIX": PREFIX, "RT_URL": rt_url, "RT_TIMEOUT": "120",
            "ROUTES": "bugs@example.test: --queue bugs --action correspond",
            "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO",
        }
        if storm_table:
            env.update({"STORM_TABLE": storm_table, "STORM_SENDER_MAX": "1000000", "STORM_ROUTE_MAX": "1000000"})
        for n in range(CONCURRENCY):
            tmp = os.path.join(work, f"tmp-{n}")
            os.mkdir(tmp)
            self.spawn([FUNCTION], f"function-{n}", {**env, "TMPDIR": tmp})

    def spawn(self, argv, name, env=None):
        log = open(os.path.join(self.dir, f"{name}.log"), "wb")
        self.children.append(subprocess.Popen(argv, stdout=log, stderr=log, env=env, stdin=subprocess.DEVNULL))

    def dynamodb(self, action, body):
        request = urllib.request.Request(
            f"{self.moto}/", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": AUTH.replace("/s3/", "/dynamodb/"),
                     "X-Amz-Target": f"DynamoDB_20120810.{action}",
                     "Content-Type": "application/x-amz-json-1.0"})
        urllib.request.urlopen(request, timeout=60).read()

    def s3(self, method, path, body=b""):
        request = urllib.request.Request(f"{self.moto}/{path}", data=body or None, method=method,
                                         headers={"Authorization": AUTH, "Content-Type": "message/rfc822"})
        urllib.request.urlopen(request, timeout=60).read()

    def batch_event(self, ids):
        records = []
        for id in ids:
            ses = {
                "notificationType": "Received",
                "mail": {"timestamp": "2026-11-24T10:00:00Z", "source": "alice@customer.example", "messageId": id,
                         "destination": ["bugs@example.test"], "headersTruncated": False, "headers": [],
                         "commonHeaders": {"from": ["alice@customer.example"], "to": ["bugs@example.test"],
                                           "subject": id}},
                "receipt": {"timestamp": "2026-11-24T10:00:00Z", "processingTimeMillis": 1,
                            "recipients": ["bugs@example.test"],
                            **{v: {"status": "PASS"} for v in ("spamVerdict", "virusVerdict", "spfVerdict",
                                                                "dkimVerdict", "dmarcVerdict")},
                            "action": {"type": "S3", "topicArn": "arn:aws:sns:us-east-1:123456789012:rt-mail",
                                       "bucketName": BUCKET, "objectKey": PREFIX + id}},
            }
            envelope = {"Type": "Notification", "MessageId": str(uuid.uuid4()), "Message": json.dumps(ses)}
            records.append({"messageId": id, "eventSource": "aws:sqs", "body": json.dumps(envelope)})
        return json.dumps({"Records": records}).encode()

    def invoke(self, batch):
        ids, event = batch
        started = time.monotonic()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/2015-03-31/functions/_/invocations", data=event,
            headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=900).read())
        if answer.get("batchItemFailures"):
            sys.exit(f"burst: the function left mails for a retry: {answer}")
        INVOCATIONS.append((ids, time.monotonic() - started))

    def cpu_seconds(self):
        """CPU seconds used so far: moto, and the function processes with the emulator."""
        tick = os.sysconf("SC_CLK_TCK")

        def used(pid):
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                own = (int(fields[11]) + int(fields[12])) / tick
                children = [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
                return own + sum(used(c) for c in children)
            except (OSError, IndexError, ValueError):
                return 0.0

        moto = used(self.children[0].pid)
        return moto, sum(used(c.pid) for c in self.children[1:])

    def delivered(self):
        """The routes the function processes have logged as delivered so far: SES id to
        the post's milliseconds."""
        ms = {}
        for n in range(CONCURRENCY):
            with open(os.path.join(self.dir, f"function-{n}.log"), errors="replace") as log:
                for line in log:
                    if '"outcome":"delivered"' in line:
                        fields = json.loads(line)["fields"]
                        ms[fields["message_id"]] = fields.get("ms", 0)
        return ms

    def counter_requests(self):
        """DynamoDB requests moto has answered so far (`POST /`: S3's requests never
        post to the root): the storm counters' UpdateItems, and the CreateTable."""
        with open(os.path.join(self.dir, "moto.log"), errors="replace") as log:
            return sum('"POST / HTTP' in line for line in log)

    def stop(self):
        for child in self.children:
            child.terminate()
        for child in self.children:
            child.wait(timeout=30)


def main():
    if CHUNK <= 0 or CHUNK % BATCH or MAILS % CHUNK:
        sys.exit(f"burst: BENCH_CHUNK must be a multiple of {BATCH} that divides BENCH_MAILS")
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "rt-mailgate-lambda"], cwd=ROOT, check=True)
    rt_url = os.environ.get("BENCH_RT_URL")
    own_rt = rt_url is None
    rt_env = {**os.environ, "RT_TEST_PORT": os.environ.get("BENCH_RT_PORT", "8098")}
    if own_rt:
        rt_url = subprocess.run([os.path.join(ROOT, "scripts/rt-test-server"), "start"], env=rt_env, check=True,
                                capture_output=True, text=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="burst-")
    stack = Buffered(rt_url, work)
    ratios = []
    try:
        for run in range(RUNS):
            tag = f"burst-{uuid.uuid4().hex[:8]}"
            alone = [mail(f"{tag} alone {n}") for n in range(MAILS)]
            ids = [f"{tag}-{n}" for n in range(MAILS)]
            for n, id in enumerate(ids):
                stack.s3("PUT", f"{BUCKET}/{PREFIX}{id}", mail(f"{tag} buffered {n}"))
            groups = [alone[i:i + BATCH] for i in range(0, MAILS, BATCH)]
            batches = [(ids[i:i + BATCH], stack.batch_event(ids[i:i + BATCH])) for i in range(0, MAILS, BATCH)]
            POST_SECONDS.clear()
            INVOCATIONS.clear()
            cpu_before = stack.cpu_seconds()
            counted_before = stack.counter_requests()
            took = {"alone": 0.0, "buffered": 0.0}
            for chunk, start in enumerate(range(0, MAILS, CHUNK)):
                measure = {
                    # Five mails a work item in both phases: a chunk's last item ends alone
                    # in both, so the chunks' ends cost both phases the same.
                    "alone": lambda: in_parallel(groups[start // BATCH:(start + CHUNK) // BATCH], post_group(rt_url)),
                    "buffered": lambda: in_parallel(batches[start // BATCH:(start + CHUNK) // BATCH], stack.invoke),
                }
                for name in (["alone", "buffered"] if (run + chunk) % 2 == 0 else ["buffered", "alone"]):
                    took[name] += measure[name]()
            moto_cpu, function_cpu = (after - before for after, before in zip(stack.cpu_seconds(), cpu_before))
            post_ms = stack.delivered()
            missing = [id for id in ids if id not in post_ms]
            if missing:
                sys.exit(f"burst: the function did not deliver {len(missing)} of {MAILS} mails (logs in {work})")
            function_post = statistics.mean(post_ms[id] for id in ids) / 1000
            alone_post = statistics.mean(POST_SECONDS)
            # Each invocation's time beyond its own posts: the emulator's hand-over, the
            # S3 requests not hidden behind a post, and the waits between posts.
            beyond = [took_s - sum(post_ms[id] for id in batch) / 1000 for batch, took_s in INVOCATIONS]
            ratio = took["buffered"] / took["alone"]
            counters = (stack.counter_requests() - counted_before) / MAILS
            ratios.append(ratio)
            print(f"run {run + 1}: {MAILS} mails, {CONCURRENCY} at once: RT alone {took['alone']:.1f} s, "
                  f"buffered mode {took['buffered']:.1f} s, ratio {ratio:.3f} (CPU: moto {moto_cpu:.1f} s, "
                  f"function and emulator {function_cpu:.1f} s; RT's answer per post: straight {alone_post * 1000:.0f} ms, "
                  f"from the function {function_post * 1000:.0f} ms; an invocation of {BATCH} mails beyond its "
                  f"posts: median {statistics.median(beyond) * 1000:.0f} ms, mean {statistics.mean(beyond) * 1000:.0f} ms; "
                  f"storm counter requests per mail: {counters:.1f})",
                  flush=True)
    finally:
        stack.stop()
        if own_rt:
            subprocess.run([os.path.join(ROOT, "scripts/rt-test-server"), "stop"], env=rt_env, check=False,
                           capture_output=True)
    median = statistics.median(ratios)
    print(f"ratio buffered / RT alone: median {median:.3f}, range {min(ratios):.3f} to {max(ratios):.3f} "
          f"(target < 1.1: {'MET' if max(ratios) < 1.1 else 'MISSED'})")


if __name__ == "__main__":
    main()
