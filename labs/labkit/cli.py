"""Command-line options common to the lab programs (the contract: --output-dir plus [args])."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from labkit.cluster import config_error


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line and exit 2 instead of argparse's usage block: a launcher shows the last lines.
        config_error(f"{message} (see `{self.prog} --help`)")


def parse(description: str | None, *, training: bool = True, steps: int = 600,
          batch_size: int = 64, learning_rate: float = 0.01,
          flags: dict[str, str] | None = None,
          numbers: dict[str, tuple[int, str]] | None = None,
          fractions: dict[str, tuple[float, str]] | None = None,
          paths: dict[str, str] | None = None) -> argparse.Namespace:
    """Parse the program's options. Training labs get the data and optimizer options too;
    `flags` adds on/off options of the program's own ({name: help}), `numbers` whole-number
    ones ({name: (default, help)}), `fractions` numbers from 0 to 1 (the same), `paths`
    required folders or files ({name: help})."""
    parser = _Parser(description=(description or "").split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, required=True,
                        help="shared by all tasks of a run: results, checkpoints, events")
    if training:
        parser.add_argument("--steps", type=_positive, default=steps,
                            help="global training steps (default %(default)s)")
        parser.add_argument("--dataset", choices=("digits", "mnist"), default="digits",
                            help="digits ships with the kit; mnist needs a download")
        parser.add_argument("--batch-size", type=_positive, default=batch_size,
                            help="examples per step and worker (default %(default)s)")
        parser.add_argument("--learning-rate", type=float, default=learning_rate,
                            help="Adam learning rate (default %(default)s)")
        parser.add_argument("--eval-every", type=_positive, default=50,
                            help="global steps between test-accuracy evaluations")
    for name, text in (flags or {}).items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
    for name, (default, text) in (numbers or {}).items():
        parser.add_argument(f"--{name}", type=_positive, default=default,
                            help=f"{text} (default %(default)s)")
    for name, (default, text) in (fractions or {}).items():
        parser.add_argument(f"--{name}", type=_fraction, default=default,
                            help=f"{text} (default %(default)s)")
    for name, text in (paths or {}).items():
        parser.add_argument(f"--{name}", type=Path, required=True, help=text)
    return parser.parse_args()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to 1")
    return value
