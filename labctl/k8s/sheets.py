"""The printable access card of one attendee: written once in Markdown, and as HTML converted
from it (the small subset the card uses: headings, a list, paragraphs, code blocks, `code` and
**bold**)."""

from __future__ import annotations

import html
import re
from datetime import datetime


def markdown(name: str, namespace: str, kubeconfig: str, server: str, expires: datetime) -> str:
    return f"""# Workshop access: {name}

- **Your namespace:** `{namespace}` (everything you run goes there; you cannot see the others')
- **Cluster:** `{server}`
- **Your access ends:** {expires:%Y-%m-%d %H:%M} UTC

## Install your kubeconfig

Copy the file `{kubeconfig}` the instructor gives you to the repository's root as
`kubeconfig`, then in a terminal there:

```console
$ export KUBECONFIG=$PWD/kubeconfig
$ kubectl get pods
No resources found in {namespace} namespace.
```

## Your first command

```console
$ labctl run 08 --target k8s
```

`labctl` runs every cluster lab in `{namespace}`: no `--namespace` needed. Clean each lab up
when you are done with it (`labctl clean 08`): your namespace has a quota, and old runs count.
"""


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def to_html(md: str) -> str:
    """The card's Markdown as a standalone, printable HTML page."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in md.splitlines():
        if code is not None:
            if line.startswith("```"):
                out.append(f"<pre>{html.escape(chr(10).join(code))}</pre>")
                code = None
            else:
                code.append(line)
        elif line.startswith("```"):
            flush()
            code = []
        elif heading := re.match(r"(#+) (.*)", line):
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.startswith("- "):
            items.append(line[2:])
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
    flush()
    title = html.escape(md.splitlines()[0].lstrip("# "))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title>\n<style>body{{font-family:sans-serif;max-width:40em;"
            "margin:2em auto}code,pre{background:#f3f3f3}pre{padding:.5em}</style>\n"
            "</head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def card(name: str, namespace: str, kubeconfig: str, server: str,
         expires: datetime) -> tuple[str, str]:
    """(Markdown, HTML) of one attendee's card."""
    md = markdown(name, namespace, kubeconfig, server, expires)
    return md, to_html(md)
