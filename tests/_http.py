"""HTTP servers the tests start in a thread: a stand-in upstream, a bundle being served."""

from __future__ import annotations

import functools
import http.server
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[str]:
    """`server` answering in a thread while the block runs; its host:port."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]  # type: ignore[misc]
        yield f"{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


def directory_server(root: Path) -> http.server.ThreadingHTTPServer:
    """The files under `root`, on a free loopback port."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
