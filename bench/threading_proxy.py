"""A loopback HTTP reverse proxy for the threading benchmark (bench/threading.sh) that
counts and times each request, not each connection (a client keeps its connection
alive across requests): one JSON line per request to --log, with the method, the path
without its query, the status and the seconds from the request's first byte read to
the answer's last byte sent (RT's time plus the relay's, on loopback well under 1 ms).

    python3 bench/threading_proxy.py --port 7098 --upstream 127.0.0.1:8089 --log requests.jsonl

With --hide PATH, a request for PATH is answered 404 here (and logged), as a front door
without that extra answers it: e.g. --hide /REST/2.0/mailgate-thread.
"""
import argparse
import http.client
import http.server
import json
import threading
import time

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}


def handler(upstream, log_path, lock, hide=None):
    host, port = upstream.rsplit(":", 1)

    class Relay(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def relay(self):
            started = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if hide and self.path.split("?", 1)[0] == hide:
                self.send_response(404, "Not Found")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.log_request_line(404, started)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPConnection(host, int(port), timeout=600)
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status, answer.reason)
            for k, v in answer.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()
            self.log_request_line(answer.status, started)

        def log_request_line(self, status, started):
            line = json.dumps({
                "method": self.command,
                "path": self.path.split("?", 1)[0],
                "status": status,
                "seconds": round(time.monotonic() - started, 4),
            })
            with lock, open(log_path, "a") as log:
                log.write(line + "\n")

        do_GET = relay
        do_POST = relay

    return Relay


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--hide")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port),
                                             handler(args.upstream, args.log, threading.Lock(), args.hide))
    server.serve_forever()


if __name__ == "__main__":
    main()
