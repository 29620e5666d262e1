"""The one numba decorator of the signal core, with a cache directory that works wherever it runs.

``njit(cache=True)`` raises at import when it finds no writable cache directory: neither the
package's ``__pycache__`` (read-only in a system install) nor numba's user cache (a service
user without a home). :func:`cache_dir_for` picks a per-user temporary directory then, unless
``NUMBA_CACHE_DIR`` already names one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from numba import njit
from numba.core import config

__all__ = ["jit", "cache_dir_for"]


def _writable(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(d, os.W_OK)


def cache_dir_for(in_tree: Path, user_wide: Path, fallback: Path) -> str | None:
    """None when numba's own locations work (``in_tree`` or ``user_wide`` writable), else ``fallback``."""
    if _writable(in_tree) or _writable(user_wide):
        return None
    return str(fallback)


if not config.CACHE_DIR:
    from numba.misc.appdirs import AppDirs

    _dir = cache_dir_for(Path(__file__).resolve().parent / "__pycache__",
                         Path(AppDirs(appname="numba", appauthor=False).user_cache_dir),
                         Path(tempfile.gettempdir()) / f"emon-numba-{os.getuid()}")
    if _dir is not None:
        config.CACHE_DIR = _dir


def jit(fn: Callable[..., Any]) -> Any:
    """Compile ``fn`` with numba (no Python objects, GIL released while it runs), cached on disk."""
    return njit(cache=True, nogil=True)(fn)
