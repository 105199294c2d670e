"""What a run shows: task log lines prefixed with the task name, one progress line or bar.

A terminal gets a live rich progress bar; anything else (CI, pipes) gets plain lines and a
progress line at most every few seconds, so logs stay readable. `labctl --plain` and NO_COLOR
(https://no-color.org) give a terminal those plain lines too: no colour, nothing redrawn, which
screen readers and terminal logs can follow.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Protocol

from labctl.progress import StepTracker
from labctl.tasks import TaskSpec

if TYPE_CHECKING:
    from rich.console import Console

PLAIN_EVERY_S = 5.0
_COLORS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "white")


# TensorFlow's start-up banners, printed before its logging is configured (TF_CPP_MIN_LOG_LEVEL
# cannot hide them): kept in the log files, left off the screen.
_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "oneDNN custom operations")


_plain_asked = False  # `labctl --plain`, set once per command by cli.main


def ask_plain(on: bool) -> None:
    global _plain_asked
    _plain_asked = on


def plain() -> bool:
    """No live bar, colour or redraws: --plain, or NO_COLOR set to anything but empty."""
    return _plain_asked or os.environ.get("NO_COLOR", "") != ""


def console() -> Console:
    """A rich console for tables and notes; with plain() it writes no escape sequence at all
    (rich's own NO_COLOR support drops colours but keeps bold and the like)."""
    from rich.console import Console

    return Console(highlight=False, color_system=None if plain() else "auto")


def is_noise(text: str) -> bool:
    return text.startswith(_NOISE[0]) or _NOISE[1] in text


def metrics(tracker: StepTracker) -> str:
    parts = []
    if tracker.loss is not None:
        parts.append(f"loss {tracker.loss:.4f}")
    if tracker.accuracy is not None:
        parts.append(f"accuracy {tracker.accuracy:.4f}")
    return "  ".join(parts)


class Display(Protocol):
    def line(self, task: TaskSpec, text: str) -> None: ...
    def note(self, text: str) -> None: ...
    def progress(self, tracker: StepTracker) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    def __init__(self, title: str, total: int | None, quiet: bool, width: int = 0,
                 stream=None) -> None:
        self.title, self.total, self.quiet = title, total, quiet
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self.shown_at = 0.0
        self.shown_step: int | None = None
        self.last: StepTracker | None = None
        self.width = width  # the longest task name: prefixes line up from the first line on

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def line(self, task: TaskSpec, text: str) -> None:
        if not self.quiet:
            self.width = max(self.width, len(task.name))
            self._print(f"{task.name:<{self.width}} | {text}")

    def note(self, text: str) -> None:
        self._print(f"labctl: {text}")

    def _progress_text(self, tracker: StepTracker) -> str:
        total = f"/{self.total}" if self.total else ""
        elapsed = time.monotonic() - self.started
        step = f"step {tracker.global_step}{total}"
        return f"{self.title}: {step} {metrics(tracker)} [{elapsed:.0f} s]"

    def progress(self, tracker: StepTracker, force: bool = False) -> None:
        self.last = tracker
        now = time.monotonic()
        due = force or now - self.shown_at >= PLAIN_EVERY_S
        if tracker.global_step != self.shown_step and due:
            self.shown_at, self.shown_step = now, tracker.global_step
            self._print("progress: " + self._progress_text(tracker))

    def close(self) -> None:
        """The last step reached, unless it was just shown."""
        if self.last is not None and self.last.last_report:
            self.progress(self.last, force=True)


class RichDisplay:
    def __init__(self, title: str, total: int | None, quiet: bool, width: int = 0) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.quiet = quiet
        self.console = Console(highlight=False)
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.task_id = self.bar.add_task(title, total=total, metrics="starting")
        self.colors: dict[TaskSpec, str] = {}
        self.width = width
        self.bar.start()

    def line(self, task: TaskSpec, text: str) -> None:
        if self.quiet:
            return
        from rich.text import Text

        color = self.colors.setdefault(task, _COLORS[len(self.colors) % len(_COLORS)])
        self.width = max(self.width, len(task.name))
        self.console.print(Text(f"{task.name:<{self.width}} | ", style=color) + Text(text))

    def note(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(f"labctl: {text}", style="bold"))

    def progress(self, tracker: StepTracker) -> None:
        self.bar.update(self.task_id, completed=tracker.global_step, metrics=metrics(tracker))

    def close(self) -> None:
        self.bar.stop()


def make_display(title: str, total: int | None, quiet: bool, width: int = 0) -> Display:
    if sys.stdout.isatty() and not plain():
        return RichDisplay(title, total, quiet, width)
    return PlainDisplay(title, total, quiet, width)
