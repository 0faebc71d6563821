"""Atomic writes: a file or a folder appears complete at its final name, or not at all.

Everything is staged under a hidden name beside its target (``.NAME.<what>.<pid>.<random>``) and renamed
into place. A replaced folder is *exchanged* with the new one in a single system call where the system
has one (Linux ``renameat2(RENAME_EXCHANGE)``), so a kill at any moment leaves the old or the new folder
at the target, never nothing. The pid in a staging name lets the next command tell an abandoned leftover
(its process is gone) from the work of a process still running, and remove only the former.

Files are created with the permissions a plain ``open()`` would give under the user's umask (tempfile
makes them private, which would hide a shared run folder from its other readers).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import glob
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

__all__ = [
    "exchange_folders",
    "leftovers",
    "plain_permissions",
    "remove_leftovers",
    "replace_folder",
    "staged_file",
    "staging_folder",
    "unsafe_place",
    "unwritable_place",
    "write_text",
]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plain_permissions(path: Path) -> None:
    """Give a file written by a library that makes it private (safetensors: 0600) the mode of a plain ``open()``."""
    path.chmod(0o666 & ~_umask())


def _staging_name(target: Path, what: str) -> Path:
    return target.parent / f".{target.name}.{what}.{os.getpid()}.{secrets.token_hex(4)}"


def staging_folder(target: Path, what: str = "partial") -> Path:
    """A new, empty hidden folder beside ``target``, with the permissions of a plain ``mkdir``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_name(target, what)
    staging.mkdir(mode=0o777)  # the umask applies
    return staging


@contextmanager
def staged_file(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """A text stream whose content appears at ``path`` in one rename once the block ends without error.

    Staged beside the target under a hidden name (the pid and a random part: two writers never collide).
    Created with ``os.open(0o666)`` so that the umask applies, as to any file the user writes.
    """
    staged = _staging_name(path, "partial")
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline=newline) as stream:
            yield stream
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a staged file and one rename; permissions follow the umask."""
    with staged_file(path) as stream:
        stream.write(text)
    return path


def _renameat2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    function = getattr(ctypes.CDLL(name, use_errno=True), "renameat2", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def exchange_folders(first: Path, second: Path) -> bool:
    """Swap two existing paths in one system call; False where the system (or file system) cannot."""
    function = _renameat2()
    if function is None:
        return False
    result = function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(second))


def unsafe_place(target: Path) -> str | None:
    """Why a new folder at ``target`` would lose what was there, in words that follow "the output" (``/x is a
    file``): a file, a place below a file, the current folder or one above it; None where it would not."""
    if target.exists() and not target.is_dir():
        return f"{target} is a file"
    for parent in target.absolute().parents:
        if parent.exists() and not parent.is_dir():
            return f"{target} would be inside {parent}, which is a file"
    here, resolved = Path.cwd().resolve(), target.resolve()
    if resolved == here or resolved in here.parents:
        return f"folder {target} holds the current folder, which replacing it would remove"
    return None


def unwritable_place(target: Path) -> OSError | None:
    """The error that writing a folder at ``target`` would meet, met now: an empty folder is made and removed
    where its staging folder will go (or in the nearest folder that exists, inside which the write makes the
    missing ones); None when that works. Nothing is left behind. Root passes permission bits, not a read-only
    file system or a place such as /proc: the attempt catches what a check of the bits would not."""
    place = target.absolute().parent
    while not place.exists() and place != place.parent:
        place = place.parent
    probe = place / f".{target.name}.probe.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        probe.mkdir()
    except OSError as exc:
        return exc
    probe.rmdir()
    return None


def replace_folder(staging: Path, target: Path) -> None:
    """Put the complete folder ``staging`` at ``target``; an existing ``target`` is removed afterwards."""
    if not target.exists():
        os.replace(staging, target)
        return
    if exchange_folders(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the old run: a kill here leaves a named leftover
        return
    # No atomic exchange here: the old folder steps aside under a leftover name first, so a kill
    # between the two renames leaves it beside the target, where remove_leftovers() puts it back.
    old = _staging_name(target, "old")
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def leftovers(target: Path) -> list[Path]:
    """Hidden staging paths of ``target`` whose writing process is gone (a kill, a crash, a power cut)."""
    if not target.parent.is_dir():
        return []
    found = []
    for path in target.parent.glob(f".{glob.escape(target.name)}.*"):
        parts = path.name[len(target.name) + 2 :].split(".")
        if len(parts) >= 3 and parts[-2].isdigit() and not _alive(int(parts[-2])):
            found.append(path)
    return sorted(found)


def remove_leftovers(target: Path) -> list[str]:
    """Remove the abandoned staging paths of ``target``; an old folder left alone by a kill in the middle
    of a replacement (no target any more) is put back first. Returns what was done, one line each."""
    done = []
    for path in leftovers(target):
        what = path.name[len(target.name) + 2 :].split(".")[0]
        if what == "old" and not target.exists():
            os.replace(path, target)
            done.append(f"restored {target} from an interrupted replacement")
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        done.append(f"removed {path.name}, left by an interrupted write")
    return done
