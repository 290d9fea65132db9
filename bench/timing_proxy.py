"""A loopback TCP relay for benchmarks that times each connection as the client sees
it: when the last request byte arrived from the client (the end of the upload) and when
the first answer byte came back from the server. The gap is the server's think time, the
silence a client's inactivity timeout (RT_TIMEOUT, --timeout) must outlast. The relay
reads from the client only as fast as the server takes the bytes, so the end of the
upload it sees is the one the client sees (give or take the socket buffers).

Writes one JSON line per connection to --log: upload_bytes, upload_s (first to last
request byte), answer_s (last request byte to first answer byte), total_s.

    python3 bench/timing_proxy.py --port 7094 --upstream 127.0.0.1:8094 --log times.jsonl
"""
import argparse
import json
import socket
import threading
import time

CHUNK = 1 << 16


class Timings:
    def __init__(self):
        self.lock = threading.Lock()
        self.opened = time.monotonic()
        self.first_up = None
        self.last_up = None
        self.up_bytes = 0
        self.first_down = None
        self.upload_end = None  # last_up as it stood when the answer began

    def record_up(self, size):
        now = time.monotonic()
        with self.lock:
            self.first_up = self.first_up or now
            self.last_up = now
            self.up_bytes += size

    def record_down(self):
        now = time.monotonic()
        with self.lock:
            if self.first_down is None:
                self.first_down = now
                self.upload_end = self.last_up

    def as_json(self):
        closed = time.monotonic()
        end = self.upload_end or self.last_up or self.opened
        start = self.first_up or self.opened
        return json.dumps({
            "upload_bytes": self.up_bytes,
            "upload_s": round(end - start, 3),
            "answer_s": round(self.first_down - end, 3) if self.first_down else None,
            "total_s": round((self.first_down or closed) - start, 3),
        })


def pump(source, sink, on_bytes):
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            on_bytes(len(data))
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def relay(client, upstream, log_path, log_lock):
    timings = Timings()
    with client, socket.create_connection(upstream) as server:
        up = threading.Thread(target=pump, args=(client, server, timings.record_up), daemon=True)
        up.start()
        pump(server, client, lambda _size: timings.record_down())
        up.join(timeout=600)
    with log_lock, open(log_path, "a") as log:
        log.write(timings.as_json() + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port of the server")
    parser.add_argument("--log", required=True, help="file the JSON lines are appended to")
    parser.add_argument("--lifetime", type=int, default=900, help="seconds before it stops by itself")
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", args.port))
    listener.settimeout(1)
    log_lock = threading.Lock()
    stop_at = time.monotonic() + args.lifetime
    while time.monotonic() < stop_at:
        try:
            client, _ = listener.accept()
        except socket.timeout:
            continue
        threading.Thread(
            target=relay, args=(client, (host, int(port)), args.log, log_lock), daemon=True
        ).start()


if __name__ == "__main__":
    main()
