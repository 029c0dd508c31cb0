"""A built model organism on disk: built once, cached under the fingerprint of what decides it, and
published atomically so a killed build never leaves half a pair behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch


def data_dir_models(name: str) -> Path:
    """Where a built-in organism is cached: under LDAQ_DATA_DIR (empty means the default)."""
    data_dir = os.environ.get("LDAQ_DATA_DIR") or "~/.local/share/ldaq"
    return Path(data_dir).expanduser() / "models" / name


def cached_fingerprint(out_dir: Path, manifest: str) -> str | None:
    """The fingerprint of a complete build in `out_dir`, or None when there is none."""
    try:
        return json.loads((out_dir / manifest).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None


def read_manifest(out_dir: Path, manifest: str) -> dict:
    return json.loads((out_dir / manifest).read_text())


def ensure_built(out_dir: Path, manifest: str, fingerprint: str, build: Callable[[Path], dict]) -> Path:
    """Return `out_dir` holding the build with `fingerprint`, calling `build(staging_dir)` only if stale.

    `build` writes into a temporary sibling directory and returns what the manifest should record
    besides the fingerprint; the directory is renamed into place once everything is written.
    """
    if cached_fingerprint(out_dir, manifest) == fingerprint:
        return out_dir
    if cached_fingerprint(out_dir, manifest) is None and out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} holds something other than a build of ours; not replacing it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the pair from a worker running as another user
    try:
        started = time.perf_counter()
        record = build(staging)
        record = {"fingerprint": fingerprint, **record, "build_seconds": round(time.perf_counter() - started, 1)}
        (staging / manifest).write_text(json.dumps(record, indent=2))
        _publish(staging, out_dir, manifest, fingerprint)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _publish(staging: Path, out_dir: Path, manifest: str, expected: str) -> None:
    """Move the finished build into place, replacing an outdated one.

    A concurrent run that got there first with the same build wins, and this one's copy is dropped.
    """
    stale = out_dir.with_name(f".{out_dir.name}-stale-{os.getpid()}")
    if cached_fingerprint(out_dir, manifest) not in (None, expected):
        out_dir.rename(stale)
    try:
        staging.rename(out_dir)
    except OSError:
        if cached_fingerprint(out_dir, manifest) != expected:
            raise
    shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seeded, deterministic, fixed-thread torch while building; the caller's settings come back after."""
    saved_threads, saved_deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.set_num_threads(saved_threads)
            torch.use_deterministic_algorithms(saved_deterministic)
