"""Writing output files safely: never through a planted symlink, never half-written, with the mode the umask
gives, and with errors (read-only folder, full disk) as one :class:`~nasengine.errors.NasengineError` naming
the file.

::

    refuse_overwrite(path, force=args.force)          # InputError "PATH exists; pass --force to overwrite it"
    write_atomic(path, lambda fh: fig.savefig(fh, format="png"))
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

from nasengine.errors import InputError, NasengineError

__all__ = ["OutputError", "umask", "default_file_mode", "write_atomic", "refuse_overwrite", "os_error_text"]


class OutputError(NasengineError):
    """An output file that cannot be written (read-only folder, full disk, a symlink in its place)."""


def umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux ``/proc``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: ``0o666`` less the umask."""
    return 0o666 & ~umask()


def os_error_text(exc: OSError) -> str:
    """``"No space left on device"`` and the like (the strerror, without the file name repeated)."""
    return exc.strerror or str(exc) or type(exc).__name__


def write_atomic(path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` through ``write(fileobj)`` into a new temporary file beside it, then rename it into place:
    a symlink at ``path`` is replaced (its target is never written), a crash never leaves a half-written file,
    and the file gets :func:`default_file_mode`. :class:`OutputError` names ``path`` on an OS error."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({os_error_text(exc)})") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def refuse_overwrite(path, *, force: bool, flag: str = "--force") -> None:
    """:class:`InputError` if ``path`` exists (a symlink included) and ``force`` is false."""
    path = Path(path)
    if not force and os.path.lexists(path):
        raise InputError(f"{path} exists; pass {flag} to overwrite it")
