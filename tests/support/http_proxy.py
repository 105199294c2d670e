"""A forwarding HTTP proxy for the tests: `python3 http_proxy.py PORT`.

Answers GET and HEAD for absolute http:// URLs, which is what apt sends to the proxy that
Acquire::http::Proxy names, with the origin's status, headers and body, and prints one
`PROXY <method> <url> <status>` line per request. No cache and no CONNECT: a venue's proxy
(apt-cacher-ng) does more; this one only shows that apt went through a proxy, and that it
reached nothing else.
"""

from __future__ import annotations

import http.server
import sys
import urllib.error
import urllib.request

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "proxy-authorization", "host"}


class Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: apt pipelines its requests

    def do_GET(self) -> None:  # http.server's naming
        self.forward()

    def do_HEAD(self) -> None:
        self.forward()

    def forward(self) -> None:
        if not self.path.startswith("http://"):
            self.send_error(400, "a proxy request needs an absolute http:// URL")
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        request = urllib.request.Request(self.path, method=self.command, headers=headers)
        try:
            reply = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as err:  # 304, 404: apt's normal answers
            reply = err
        except OSError as err:
            print(f"PROXY {self.command} {self.path} 502 {err}", flush=True)
            self.send_error(502, str(err))
            return
        with reply:
            body = b"" if self.command == "HEAD" else reply.read()
            print(f"PROXY {self.command} {self.path} {reply.status}", flush=True)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                if name.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(name, value)
            length = reply.headers.get("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(body)))
            self.end_headers()
            if body and reply.status not in (204, 304):
                self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one PROXY line per request is printed above


if __name__ == "__main__":
    # Every address of its own container: the test's networks, nothing else.
    http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Forward).serve_forever()
