"""DynamoDB's write semantics in front of moto, for the storm counters' tests and
bench/storm-counters.sh.

moto answers DynamoDB's API but does not serialise concurrent writes to one item (two
`UpdateItem ADD`s at once can both read the old count and answer the same new one);
DynamoDB does, and a hot item answers the excess with a throttling error that the
client retries. This front passes every request on to moto, but:

- writes to one item (UpdateItem, PutItem, DeleteItem: one table and key) pass one at
  a time, as DynamoDB applies them; writes to other items and reads go on at once;
- with THROTTLE_SHARE above 0, that share of the writes, at random, is answered as
  DynamoDB answers a write beyond a partition's rate
  (`ProvisionedThroughputExceededException`, HTTP 400), never applied.

`GET /stats` answers the counts so far as JSON: {"forwarded": N, "throttled": N}.

Usage: dynamodb_front.py PORT UPSTREAM_URL [THROTTLE_SHARE]. Binds 127.0.0.1:PORT and
serves until killed (at most 30 minutes)."""
import http.client
import http.server
import json
import os
import random
import sys
import threading
import urllib.parse

port, upstream = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2])
throttle_share = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
WRITES = {"UpdateItem", "PutItem", "DeleteItem"}

guard = threading.Lock()
item_locks = {}
stats = {"forwarded": 0, "throttled": 0}


def item_lock(body):
    """The lock of the item a write names (table and key), made on first use."""
    request = json.loads(body or b"{}")
    name = json.dumps([request.get("TableName"), request.get("Key")], sort_keys=True)
    with guard:
        return item_locks.setdefault(name, threading.Lock())


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connections expect

    def log_message(self, *args):
        pass

    def answer(self, status, headers, body):
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/stats":
            with guard:
                body = json.dumps(stats).encode()
            self.answer(200, [("Content-Type", "application/json")], body)
        else:
            self.forward(b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        if operation not in WRITES:
            self.forward(body)
            return
        if throttle_share > 0 and random.random() < throttle_share:
            with guard:
                stats["throttled"] += 1
            error = {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded.",
            }
            self.answer(400, [("Content-Type", "application/x-amz-json-1.0")], json.dumps(error).encode())
            return
        with item_lock(body):
            self.forward(body)

    def forward(self, body):
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        with guard:
            stats["forwarded"] += 1
        self.answer(response.status, response.getheaders(), answer)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a storm's many connections at once


threading.Timer(1800, lambda: os._exit(0)).start()
Server(("127.0.0.1", port), Front).serve_forever()
