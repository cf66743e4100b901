"""A webhook receiver for the tests: verifies every request with the official Standard
Webhooks library (PyPI `standardwebhooks`) and appends one JSON line per request to a log.

Usage: webhook_receiver.py PORT SECRET LOG FAIL_FIRST [TLS_CERT TLS_KEY]
Answers 500 to the first FAIL_FIRST requests, then 200 (204 for a bad signature is never
sent: a request that fails verification gets 400). With TLS_CERT and TLS_KEY (PEM files) it
serves HTTPS. Prints `ready` once listening.
"""

import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

port, secret, log_path, fail_first = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
hook = Webhook(secret)
lock = threading.Lock()
seen = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            hook.verify(body, headers)
            verified = True
        except Exception as e:  # noqa: BLE001 - any failure means "not verified"
            verified = False
            sys.stderr.write(f"verify failed: {e!r}\n")
        with lock:
            seen += 1
            status = 500 if seen <= fail_first else (200 if verified else 400)
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps({
                    "id": headers.get("webhook-id"),
                    "timestamp": headers.get("webhook-timestamp"),
                    "verified": verified,
                    "status": status,
                    "body": body.decode("utf-8", "replace"),
                    "authorization": headers.get("authorization"),
                }) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
if len(sys.argv) > 6:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[5], sys.argv[6])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
