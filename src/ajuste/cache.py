"""The freeze-boundary cache: hidden states kept in memory within a process and on disk across processes.

An entry is keyed by everything its values depend on — the frozen weights and the model's config
(the checkpoint), the boundary, the tokenizer, the maximum length, the precision actually computed in,
the attention implementation, the torch and transformers versions and the exact texts (as the token
ids they became) — so any change to one of them makes a new key, never a stale hit.
Files are safetensors (loading never runs code), written atomically, and the least recently used are
removed once the folder grows past its size cap. A damaged or unreadable file is a miss, not an error.

Settings (environment): ``AJUSTE_CACHE_DIR`` (the folder; default ``$XDG_CACHE_HOME/ajuste`` or
``~/.cache/ajuste``), ``AJUSTE_CACHE_SIZE`` (disk cap, e.g. ``4GB``, ``500MB``; ``0`` keeps nothing on
disk; default 4 GB) and ``AJUSTE_CACHE_MEMORY`` (in-process cap; default 2 GB).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ajuste.errors import ConfigError
from ajuste.models.boundary import BoundaryStates

__all__ = [
    "CacheEntry",
    "cache_dir",
    "clear",
    "disk_cap",
    "entries",
    "filling_seconds",
    "fingerprint_modules",
    "fingerprint_sequences",
    "fingerprint_texts",
    "get",
    "make_key",
    "put",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SUFFIX = ".safetensors"
_DEFAULT_DISK = 4 * 1024**3
_DEFAULT_MEMORY = 2 * 1024**3
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*$", re.I)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

_memory: OrderedDict[str, BoundaryStates] = OrderedDict()
_unwritable: set[Path] = set()  # folders a write failed in, already warned of
#: Seconds this process spent computing what it put in the cache (see :func:`filling_seconds`).
_filled = 0.0


@dataclass(frozen=True)
class CacheEntry:
    """One file of the disk cache, as ``ajuste cache list`` shows it."""

    key: str
    path: Path
    bytes: int
    last_used: float
    meta: dict[str, Any]


def cache_dir() -> Path:
    """The cache folder: ``$AJUSTE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ajuste``, else ``~/.cache/ajuste``."""
    configured = os.environ.get("AJUSTE_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ajuste"


def parse_size(text: str, what: str, default: int = 4 * 1024**3) -> int:
    """Bytes from ``4GB``, ``500MB``, ``1.5G`` or a plain number of bytes; ``default`` (bytes) is what a message
    offers instead."""
    match = _SIZE.match(text)
    if not match:
        example = f"{default / 1024**3:g}GB" if default >= 1024**3 else f"{default // 1024**2}MB"
        raise ConfigError(
            f"{what} must be a size",
            expected="a size like 4GB, 500MB or 0",
            found=repr(text),
            fix=f"Set {what}={example} (its default), or unset it.",
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _cap(variable: str, default: int) -> int:
    value = os.environ.get(variable)
    return default if value is None or not value.strip() else parse_size(value, variable, default)


def disk_cap() -> int:
    """The most bytes the cache folder may hold (``AJUSTE_CACHE_SIZE``, default 4 GB)."""
    return _cap("AJUSTE_CACHE_SIZE", _DEFAULT_DISK)


# -- keys ---------------------------------------------------------------------------------------------


def fingerprint_modules(modules: Iterable[nn.Module]) -> str:
    """A hash of the parameters and buffers of ``modules``, bytes and names: the frozen weights exactly."""
    digest = hashlib.blake2b(digest_size=16)
    for index, module in enumerate(modules):
        for name, tensor in module.state_dict(keep_vars=False).items():
            data = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{index}.{name}:{data.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def fingerprint_sequences(sequences: Sequence[Sequence[int]]) -> str:
    """A hash of the exact token ids of every text, in order."""
    digest = hashlib.blake2b(digest_size=16)
    for sequence in sequences:
        digest.update(len(sequence).to_bytes(4, "little"))
        digest.update(torch.tensor(list(sequence), dtype=torch.int64).numpy().tobytes())
    return digest.hexdigest()


def fingerprint_texts(texts: Sequence[str]) -> str:
    """A hash of the exact texts, in order."""
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def make_key(parts: dict[str, Any]) -> str:
    """The entry's name: a hash of every part it depends on."""
    text = json.dumps({"version": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# -- reading and writing ----------------------------------------------------------------------------


def get(key: str) -> BoundaryStates | None:
    """The entry from memory, else from disk (then kept in memory), else ``None``."""
    if key in _memory:
        _memory.move_to_end(key)
        return _memory[key]
    path = cache_dir() / f"{key}{SUFFIX}"
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            _meta(handle)  # a file whose record is damaged is damaged, however good its tensors look
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        states = BoundaryStates(tensors["values"], tensors.get("offsets"))
        os.utime(path)  # least recently used goes first
    except Exception as exc:  # a damaged file is a miss: recompute and overwrite it
        log.warning("ignoring unreadable cache file %s (%s)", path, exc)
        return None
    _remember(key, states)
    return states


def filling_seconds() -> float:
    """Seconds this process has spent computing the entries it put in the cache (as their callers timed them): a
    one-time cost that a search leaves out of what a trial costs, since the next trial of its kind reads them."""
    return _filled


def put(key: str, states: BoundaryStates, meta: dict[str, Any], *, seconds: float = 0.0) -> None:
    """Keep ``states`` (computed in ``seconds``) in memory and, within the size cap, on disk. Never fails the run
    it serves."""
    global _filled
    _remember(key, states)
    written = _write(key, states, meta)
    if written or key in _memory:  # kept: the next reader is spared the computation (an entry over both caps is not)
        _filled += seconds


def _write(key: str, states: BoundaryStates, meta: dict[str, Any]) -> bool:
    """Write ``states`` to the disk cache, within its size cap; whether it was written."""
    cap = disk_cap()
    if states.nbytes > cap:
        if cap:
            log.info("boundary states of %d bytes exceed the disk cache cap: kept in memory only", states.nbytes)
        return False
    folder = cache_dir()
    tensors = {"values": states.values.contiguous()}
    if states.offsets is not None:
        tensors["offsets"] = states.offsets.contiguous()
    try:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{key}.", suffix=SUFFIX, dir=folder)
        os.close(handle)
        try:
            save_file(tensors, temporary, metadata={"ajuste": json.dumps({**meta, "created": time.time()})})
            os.replace(temporary, folder / f"{key}{SUFFIX}")
        finally:
            Path(temporary).unlink(missing_ok=True)
        _evict(folder, cap)
    except OSError as exc:
        # said once per folder and process: every later write fails alike, and the run goes on without it
        level = logging.INFO if folder in _unwritable else logging.WARNING
        _unwritable.add(folder)
        reason = "a file, not a folder" if folder.is_file() else (exc.strerror or str(exc))
        log.log(
            level,
            "cannot write the boundary cache in %s (%s): kept in memory only; set AJUSTE_CACHE_DIR to a folder "
            "this user may write",
            folder,
            reason,
        )
        return False
    return True


def _meta(handle: Any) -> dict[str, Any]:
    """The record that :func:`put` writes into a file's metadata; ``ValueError`` when it is not one."""
    text = (handle.metadata() or {}).get("ajuste")
    if text is None:
        raise ValueError("no ajuste record in the metadata")
    meta = json.loads(text)
    if not isinstance(meta, dict):  # valid JSON, but not the object put() writes
        raise ValueError(f"the ajuste record is a JSON {type(meta).__name__}, not an object")
    return meta


def _remember(key: str, states: BoundaryStates) -> None:
    cap = _cap("AJUSTE_CACHE_MEMORY", _DEFAULT_MEMORY)
    _memory[key] = states
    _memory.move_to_end(key)
    total = sum(s.nbytes for s in _memory.values())
    while _memory and total > cap:
        _, dropped = _memory.popitem(last=False)
        total -= dropped.nbytes


def _evict(folder: Path, cap: int) -> None:
    """Remove the least recently used files until the folder holds at most ``cap`` bytes."""
    files = []
    for path in folder.glob(f"*{SUFFIX}"):
        if path.name.startswith("."):  # another process's file being written
            continue
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile by another process
            continue
        files.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files, key=lambda f: f[0]):
        if total <= cap:
            break
        path.unlink(missing_ok=True)
        total -= size


# -- what `ajuste cache` shows and does ---------------------------------------------------------------


def entries() -> list[CacheEntry]:
    """The files of the disk cache, most recently used first."""
    folder = cache_dir()
    found = []
    for path in folder.glob(f"*{SUFFIX}") if folder.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                meta = _meta(handle)
            stat = path.stat()
        except Exception:  # damaged: listed as such, and `clear` removes it
            meta, stat = {"damaged": True}, path.stat()
        found.append(CacheEntry(path.name[: -len(SUFFIX)], path, stat.st_size, stat.st_mtime, meta))
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def clear() -> tuple[int, int]:
    """Remove every file of the disk cache (and what this process holds in memory); (files, bytes) removed."""
    _memory.clear()
    removed = freed = 0
    folder = cache_dir()
    for path in folder.glob(f"*{SUFFIX}") if folder.is_dir() else []:
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        removed, freed = removed + 1, freed + size
    return removed, freed
