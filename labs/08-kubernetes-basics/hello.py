"""Lab 08: the smallest web app worth scheduling. GET / answers which pod served it, and which
version of the app (the VERSION environment variable, changed by a rolling update)."""

import argparse
import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"pod": socket.gethostname(),
                           "version": os.environ.get("VERSION", "v1")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.client_address[0]} {fmt % args}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"hello {os.environ.get('VERSION', 'v1')} serving on :{args.port}", flush=True)
    ThreadingHTTPServer(("", args.port), Hello).serve_forever()


if __name__ == "__main__":
    main()
