"""The k8s extra's optional dependencies (PyYAML, the kubernetes client), imported on first use,
so that labctl's local target runs without them."""

from __future__ import annotations

from typing import Any

from labctl.errors import UsageError


def need(module: str) -> Any:
    """Import a module of the k8s extra, or say how to install it (one line, exit 2)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"the Kubernetes target needs {module.split('.')[0]}: install it with "
                         "`.venv/bin/pip install -e '.[k8s]'` (or `make venv-dev`)") from None
