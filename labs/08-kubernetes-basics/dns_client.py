"""Lab 08: another pod finds the Service by its DNS name and calls it.

Resolves NAME (the Service's cluster DNS name), then asks it GET / until it has answers from
--pods different pods (the Service spreads requests over the Deployment's pods) or --timeout
passes. Prints `resolved NAME to IP` and one `answer pod=... version=...` line per reply.
"""

import argparse
import json
import socket
import sys
import time
import urllib.error
import urllib.request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", help="the Service's DNS name, e.g. hello.workshop.svc")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--pods", type=int, default=2, help="distinct pods to hear from")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    address = None
    while address is None:
        try:
            address = socket.gethostbyname(args.name)
        except OSError as err:
            if time.monotonic() > deadline:
                print(f"error: cannot resolve {args.name}: {err}", file=sys.stderr)
                return 1
            time.sleep(2)
    print(f"resolved {args.name} to {address}", flush=True)
    seen: set[str] = set()
    while len(seen) < args.pods:
        try:
            with urllib.request.urlopen(f"http://{args.name}:{args.port}/", timeout=5) as reply:
                answer = json.load(reply)
            seen.add(answer["pod"])
            print(f"answer pod={answer['pod']} version={answer['version']}", flush=True)
        except (OSError, urllib.error.URLError, ValueError, KeyError) as err:
            print(f"no answer yet ({err})", flush=True)
        if time.monotonic() > deadline:
            print(f"error: heard from {len(seen)} pod(s), wanted {args.pods}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
