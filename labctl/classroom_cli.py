"""`labctl class up|status|down`: one shared cluster for the whole room.

    up NAMES      per attendee: namespace, ServiceAccount + Role, quota, isolation, a kubeconfig
                  with a time-limited token, and a printable card (Markdown and HTML)
    status        who ran what, the check verdicts, who is stuck (a table, --json, or --serve)
    down NAMES    deletes exactly the namespaces `up` made for those names (or --all of them)

Idempotent: `up` again updates the objects and writes fresh tokens; a run that stopped halfway
is finished by running it again. Only objects labelled by `labctl class` are ever changed.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from labctl.errors import UsageError

DEFAULT_HOURS = 12
DEFAULT_OUT = Path("classroom")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("class", help="a classroom on one cluster: namespaces, kubeconfigs, "
                                     "the instructor's view")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    up = verbs.add_parser("up", help="create or update every attendee's namespace and card")
    up.add_argument("names", type=Path, metavar="NAMES", help="a file, one attendee per line")
    up.add_argument("--hours", type=int, default=DEFAULT_HOURS,
                    help=f"how long the attendees' tokens last (default {DEFAULT_HOURS})")
    up.add_argument("--server", metavar="URL",
                    help="the API server address attendees reach (default: your kubeconfig's; "
                         "it must be in the API server certificate's names)")
    up.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"where kubeconfigs and cards go (default ./{DEFAULT_OUT})")
    status = verbs.add_parser("status", help="the room at a glance")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.add_argument("--serve", type=int, metavar="PORT",
                        help="serve it as a page that refreshes itself, on 127.0.0.1:PORT")
    down = verbs.add_parser("down", help="delete the attendees' namespaces")
    down.add_argument("names", type=Path, nargs="?", metavar="NAMES")
    down.add_argument("--all", action="store_true", help="every namespace `class up` made")
    for q in (up, status, down):
        q.add_argument("--kubeconfig", metavar="PATH",
                       help="the instructor's (default $KUBECONFIG, ./kubeconfig, ~/.kube/config)")


def cmd_class(args: argparse.Namespace) -> int:
    from labctl.k8s import classroom
    from labctl.k8s.api import Api

    if args.verb == "down" and bool(args.names) == bool(args.all):
        raise UsageError("class down takes a names file or --all (not both)")
    if args.verb == "up" and not 1 <= args.hours <= 48:
        raise UsageError(f"--hours {args.hours}: give 1 to 48 (a workshop day, not forever)")
    if getattr(args, "names", None):
        classroom.read_names(args.names)  # a bad names file fails before any connection
    api = Api(args.kubeconfig)
    return {"up": up, "status": status, "down": down}[args.verb](api, args)


def up(api: Any, args: argparse.Namespace) -> int:
    from labctl.k8s import classroom, kubeconfigs, sheets

    attendees = classroom.read_names(args.names)
    nodes = api.list("Node")
    problem = classroom.room_problem(nodes, len(attendees))
    if problem:
        raise UsageError(problem)
    server, ca = kubeconfigs.admin_cluster(api.kubeconfig)
    server = args.server or server
    ips = [a["address"] for n in nodes for a in n.get("status", {}).get("addresses", [])
           if a.get("type") == "InternalIP"]
    expires = datetime.now(UTC) + timedelta(hours=args.hours)
    for who in attendees:
        for doc in classroom.objects(who, ips):
            apply(api, doc)
        token = api.token(classroom.ACCOUNT, who.namespace, args.hours * 3600)
        config = args.out / who.slug / "kubeconfig"
        kubeconfigs.write(config, kubeconfigs.attendee_config(who.slug, who.namespace, server,
                                                              ca, token))
        md, page = sheets.card(who.name, who.namespace, str(config), server, expires)
        (args.out / f"{who.slug}.md").write_text(md)
        (args.out / f"{who.slug}.html").write_text(page)
        print(f"labctl: {who.name}: namespace {who.namespace}, kubeconfig {config}, card "
              f"{args.out / who.slug}.html", flush=True)
    print(f"labctl: {len(attendees)} attendee(s) ready until {expires:%Y-%m-%d %H:%M} UTC; "
          "watch them with `labctl class status`")
    return 0


def apply(api: Any, doc: dict[str, Any]) -> None:
    """Create, or replace what `class up` made before; never touch anyone else's object."""
    from labctl.k8s import classroom

    meta = doc["metadata"]
    current = api.read(doc["kind"], meta["name"], meta.get("namespace"))
    if current is None:
        api.create(doc)
        return
    if current["metadata"].get("labels", {}).get(classroom.LABEL) != "true":
        where = f" in {meta['namespace']}" if meta.get("namespace") else ""
        raise UsageError(f"{doc['kind']} {meta['name']}{where} exists and was not made by "
                         "`labctl class`: remove it or rename the attendee")
    if doc["kind"] == "Namespace":  # its labels are all we set; the rest belongs to the cluster
        current["metadata"]["labels"] = {**current["metadata"]["labels"], **meta["labels"]}
        api.replace(current)
        return
    api.replace({**doc, "metadata": {**meta, "resourceVersion":
                                     current["metadata"].get("resourceVersion")}})


def status(api: Any, args: argparse.Namespace) -> int:
    from labctl.k8s import roster

    if args.serve:
        return serve(api, args.serve)
    found = roster.rows(api)
    if args.json:
        print(roster.as_json(found))
        return 0
    if not found:
        print("labctl: no classroom on this cluster: `labctl class up NAMES` makes one")
        return 0
    lines = roster.table(found)
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]) - 1)]
    for r in lines:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


def serve(api: Any, port: int) -> int:
    server = page_server(api, port)
    print(f"labctl: the classroom on http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def page_server(api: Any, port: int) -> ThreadingHTTPServer:
    """The status page on 127.0.0.1:PORT, computed afresh for every request."""
    from labctl.k8s import roster

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            now = datetime.now(UTC)
            body = roster.page(roster.rows(api, now), now).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            pass  # one line per refresh of every open page would drown the terminal

    try:
        return ThreadingHTTPServer(("127.0.0.1", port), Page)
    except OSError as exc:
        raise UsageError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror}; pick another "
                         "--serve PORT") from None


def down(api: Any, args: argparse.Namespace) -> int:
    from labctl.k8s import classroom
    from labctl.k8s.waits import wait_gone

    spaces = api.list("Namespace", selector=f"{classroom.LABEL}=true")
    if args.names:
        wanted = {a.namespace for a in classroom.read_names(args.names)}
        spaces = [s for s in spaces if s["metadata"]["name"] in wanted]
    for space in spaces:
        name = space["metadata"]["name"]
        api.delete("Namespace", name)
        print(f"labctl: deleting namespace {name}", flush=True)
    started = time.monotonic()
    for space in spaces:
        wait_gone(api, "Namespace", space["metadata"]["name"], None, lambda _msg: None)
    print(f"labctl: removed {len(spaces)} namespace(s) in {time.monotonic() - started:.0f} s")
    return 0
