"""A loopback HTTPS stand-in for RT: answers every POST with `ok`. Used by
tests/cli_tls.rs to check certificate handling.

Usage: tls_ok_server.py CERT_FILE KEY_FILE [tls1.2]. CERT_FILE may hold the
server's certificate followed by intermediate CA certificates, which are then sent
too. With `tls1.2`, TLS 1.3 is not offered (the handshake is signed differently).
Prints its port, then serves until killed (at most 120 s)."""
import http.server
import ssl
import sys
import threading

cert, key = sys.argv[1], sys.argv[2]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
if sys.argv[3:] == ["tls1.2"]:
    context.maximum_version = ssl.TLSVersion.TLSv1_2


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request, client_address):
        # The handshake runs in the connection's own thread, bounded in time: a client
        # that refuses the certificate (the point of most tests) or stalls ends only
        # its own connection, never the server.
        request.settimeout(10)
        try:
            tls = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Timer(120, server.shutdown).start()
server.serve_forever()
