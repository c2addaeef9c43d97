"""An HTTP server for `herd run` using only Python's standard library.

    herd run -- python3 examples/python/server.py

It serves the socket herd passes as fd 3 (socket.socket(fileno=3)), tells
herd it is ready with sd_notify's READY=1 on NOTIFY_SOCKET, and on SIGTERM
stops accepting, finishes the requests in flight and exits.

Routes: / (hello), /pid ({"processid": pid}), /api/N (sum of 0..N),
/slow?ms=N (answers after N milliseconds). Every answer carries
X-Worker-Id and X-Worker-Pid.
"""
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PID = os.getpid()
WORKER = os.environ.get("HERD_RUN_WORKER", "")


class Handler(BaseHTTPRequestHandler):
    server_version = "herd-python-example"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/":
            self.reply(200, "text/plain", "Hello World!")
        elif url.path == "/pid":
            self.reply(200, "application/json", json.dumps({"processid": PID}))
        elif url.path.startswith("/api/"):
            try:
                n = min(int(url.path[len("/api/"):]), 5_000_000_000)
            except ValueError:
                return self.reply(400, "application/json", json.dumps({"error": "n must be a whole number"}))
            self.reply(200, "text/plain", f"Final count is {n * (n + 1) // 2 if n >= 0 else 0} {PID}")
        elif url.path == "/slow":
            ms = int(urllib.parse.parse_qs(url.query).get("ms", ["0"])[0])
            print(f"slow request started: {ms} ms", flush=True)
            time.sleep(ms / 1000)
            self.reply(200, "text/plain", f"slept {ms} ms in pid {PID}\n")
        else:
            self.reply(404, "application/json", json.dumps({"error": "not found"}))

    def reply(self, status, ctype, body):
        b = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(b)))
        self.send_header("X-Worker-Id", WORKER)
        self.send_header("X-Worker-Pid", str(PID))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, format, *args):
        pass  # one line per request would flood herd's log


def notify(msg):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(path)
        s.send(msg.encode())


def main():
    if os.environ.get("LISTEN_PID") != str(PID) or os.environ.get("LISTEN_FDS") is None:
        sys.exit("server.py: no socket passed (LISTEN_PID/LISTEN_FDS): run it under herd run")
    server = ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=3)
    server.daemon_threads = False  # server_close waits for requests in flight

    def stop(signum, frame):
        notify("STOPPING=1")
        # shutdown() waits for serve_forever, which runs in this thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    notify("READY=1")
    print(f"server.py: pid {PID} serving fd 3", file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
