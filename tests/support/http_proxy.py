"""A forwarding HTTP proxy for the tests: `python3 http_proxy.py PORT [CACHE_DIR [offline]]`.

Answers GET and HEAD for absolute http:// URLs, which is what apt sends to the proxy that
Acquire::http::Proxy names, with the origin's status, headers and body, and prints one
`PROXY <method> <url> <status>` line per request. With CACHE_DIR it keeps every GET answered
200, and serves that copy (`PROXY GET <url> 200 cached`) when the origin cannot be reached, or
without asking it at all when `offline` (apt-cacher-ng's Offlinemode): a venue's cache, warmed
while online, serving the room once it is not. No CONNECT, and no revalidation: apt-cacher-ng
does more.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "proxy-authorization", "host"}


class Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: apt pipelines its requests
    cache: Path | None = None
    offline = False

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
            if self.offline:
                raise OSError("offline: from the cache only")
            reply = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as err:  # 304, 404: apt's normal answers
            reply = err
        except OSError as err:
            kept = self.cached()
            if kept is not None:
                print(f"PROXY {self.command} {self.path} 200 cached", flush=True)
                self.answer(200, kept[0], kept[1])
                return
            print(f"PROXY {self.command} {self.path} 502 {err}", flush=True)
            self.send_error(502, str(err))
            return
        with reply:
            body = b"" if self.command == "HEAD" else reply.read()
            print(f"PROXY {self.command} {self.path} {reply.status}", flush=True)
            headers = [(n, v) for n, v in reply.headers.items()
                       if n.lower() not in HOP_BY_HOP | {"content-length"}]
            if self.cache is not None and self.command == "GET" and reply.status == 200:
                self.keep(headers, body)
            length = reply.headers.get("Content-Length") if self.command == "HEAD" else None
            self.answer(reply.status, headers, body, length)

    def answer(self, status: int, headers: list[tuple[str, str]], body: bytes,
               length: str | None = None) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", length or str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def _entry(self) -> Path:
        assert self.cache is not None
        return self.cache / hashlib.sha256(self.path.encode()).hexdigest()

    def keep(self, headers: list[tuple[str, str]], body: bytes) -> None:
        self._entry().with_suffix(".body").write_bytes(body)
        self._entry().with_suffix(".json").write_text(json.dumps(headers))

    def cached(self) -> tuple[list[tuple[str, str]], bytes] | None:
        if self.cache is None or not self._entry().with_suffix(".json").is_file():
            return None
        headers = [tuple(h) for h in json.loads(self._entry().with_suffix(".json").read_text())]
        return headers, self._entry().with_suffix(".body").read_bytes()  # type: ignore[return-value]

    def log_message(self, format: str, *args: object) -> None:
        pass  # one PROXY line per request is printed above


if __name__ == "__main__":
    if len(sys.argv) > 2:
        Forward.cache = Path(sys.argv[2])
        Forward.cache.mkdir(parents=True, exist_ok=True)
        Forward.offline = sys.argv[3:] == ["offline"]
    # Every address of its own container: the test's networks, nothing else.
    http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Forward).serve_forever()
