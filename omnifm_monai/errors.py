"""Errors a site can act on: one line (file, reason, what was expected) instead of a config-engine traceback.

MONAI's config engine wraps whatever a bundle expression raises: a ``ValueError("'x.png': not an image")``
from a data loader reaches the terminal as ~60 lines ending in ``RuntimeError: Failed to evaluate
ConfigExpression``, with the useful line buried in the middle. Two pieces fix that:

- :class:`SiteDataError`: the type :func:`omnifm_monai.checkpoint_record` and the loaders raise for a
  problem with the site's data or checkpoint (a ``ValueError``, so ``except ValueError`` still catches it);
- :func:`install_bundle_error_hook`: when the process is ``python -m monai.bundle``, an uncaught exception
  whose root cause is a user-input error raised by this library (:class:`SiteDataError`, or a
  ``ValueError``/``TypeError``/``OSError`` raised inside ``omnifm_monai``, whose messages are one line by
  the project's rule) is printed as ``ERROR: <message>`` and the process exits with status 1. Anything else
  (a bug, a torch error) keeps Python's full traceback, and so does every error when
  ``OMNIFM_TRACEBACK=1`` is set. :mod:`omnifm_monai` installs it on import; NVFlare clients, pytest and
  scripts are not ``monai.bundle`` and are left alone.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from types import TracebackType

__all__ = ["SiteDataError", "root_cause", "one_line_reason", "install_bundle_error_hook"]

_PACKAGE_DIR = Path(__file__).resolve().parent
_USER_ERRORS = (ValueError, TypeError, OSError)


class SiteDataError(ValueError):
    """A problem with a site's data or checkpoint, described in one line (file, reason, what was expected)."""


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes, outermost first (``__cause__``, else ``__context__``)."""
    chain = [error]
    while True:
        inner = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        if inner is None or any(inner is e for e in chain):
            return chain
        chain.append(inner)
        error = inner


def root_cause(error: BaseException) -> BaseException:
    """The outermost :class:`SiteDataError` of ``error``'s chain (already one line, naming the file), else the
    innermost exception (what MONAI's ``RuntimeError("applying transform ...")`` wrappers hide)."""
    chain = _chain(error)
    return next((e for e in chain if isinstance(e, SiteDataError)), chain[-1])


def one_line_reason(error: BaseException) -> str:
    """The message of ``error``'s :func:`root_cause`: as it is for a :class:`SiteDataError`, else
    ``"<Type>: <first line of the message>"``."""
    cause = root_cause(error)
    if isinstance(cause, SiteDataError):
        return str(cause)
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


def _raised_in_package(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE_DIR)


def _actionable(error: BaseException) -> BaseException | None:
    """The root cause when it is a one-line user-input error of this library, else ``None``."""
    cause = root_cause(error)
    if isinstance(cause, SiteDataError):
        return cause
    if isinstance(cause, _USER_ERRORS) and _raised_in_package(cause):
        return cause
    return None


def _bundle_excepthook(previous):
    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        cause = None if os.environ.get("OMNIFM_TRACEBACK") == "1" else _actionable(error)
        if cause is None:
            previous(kind, error, tb)
            return
        print(f"ERROR: {cause}", file=sys.stderr)
        print("(set OMNIFM_TRACEBACK=1 for the full traceback)", file=sys.stderr)

    hook.omnifm = True
    return hook


def _is_monai_bundle_cli() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name in ("monai.bundle.__main__", "monai.bundle")


def install_bundle_error_hook(force: bool = False) -> bool:
    """Install the one-line error hook as ``sys.excepthook`` when running under ``python -m monai.bundle``.

    Args:
        force: install it in any process (tests).

    Returns:
        whether the hook is installed now.
    """
    if getattr(sys.excepthook, "omnifm", False):
        return True
    if not (force or _is_monai_bundle_cli()):
        return False
    sys.excepthook = _bundle_excepthook(sys.excepthook)
    return True
