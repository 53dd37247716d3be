"""A webhook receiver for herald's tests: a real HTTP server on loopback that verifies every
request with the independent `standardwebhooks` package (PyPI) and answers as scripted.

    python webhook_receiver.py --log FILE --secret whsec_... [--secret whsec_...] \
        [--script 500,500,200] [--script-file FILE]

Prints the port it listens on as its first line. Each request is appended to the log as one JSON
line: webhookId, timestamp, signature, verified, error, status (answered), body, path.
Script entries: an HTTP status (e.g. 500), or `sleep<ms>` to wait that long and then answer 200;
the last entry repeats. --script-file, when given, is read at each request (tests change it).
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

parser = argparse.ArgumentParser()
parser.add_argument("--log", required=True)
parser.add_argument("--secret", action="append", default=[])
parser.add_argument("--script", default="200")
parser.add_argument("--script-file")
args = parser.parse_args()

lock = threading.Lock()
count = 0


def script():
    if args.script_file:
        try:
            with open(args.script_file) as f:
                text = f.read().strip()
            if text:
                return text.split(",")
        except FileNotFoundError:
            pass
    return args.script.split(",")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified, error = False, None
        for secret in args.secret:
            try:
                Webhook(secret).verify(body, headers)
                verified = True
                break
            except WebhookVerificationError as e:
                error = str(e)
        with lock:
            steps = script()
            step = steps[min(count, len(steps) - 1)].strip()
            count += 1
        status = 200
        if step.startswith("sleep"):
            time.sleep(int(step[5:]) / 1000)
        else:
            status = int(step)
        entry = {
            "webhookId": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "correlationId": headers.get("x-correlation-id"),
            "verified": verified,
            "error": None if verified else error,
            "status": status,
            "step": step,
            "body": body.decode("utf-8", "replace"),
            "path": self.path,
            "receivedAtMs": int(time.time() * 1000),
        }
        with lock:
            with open(args.log, "a") as f:
                f.write(json.dumps(entry) + "\n")
        try:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
