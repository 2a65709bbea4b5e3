"""Build-once storage of the fixtures: keyed, locked, atomically published.

Each fixture lives in `<root>/<name>/` with a marker file holding its key (a hash of the
recipe's source code, the corpus, and the versions of the libraries that produce it).
A matching marker means the directory is complete and current, so the fast path takes
no lock. Otherwise one process, holding `<root>/.lock`, builds into a temporary sibling
directory, writes the marker there last, and renames it into place: other processes
either wait on the lock and then find it done, or never see a half-built directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER = ".fixture-key"
LOCK = ".lock"


def source_key(parts: Iterable[str], files: Iterable[Path]) -> str:
    """A stable hash of some strings plus the bytes of some files."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    for file in files:
        h.update(file.name.encode("utf-8"))
        h.update(file.read_bytes())
        h.update(b"\x00")
    return h.hexdigest()[:24]


def is_current(target: Path, key: str) -> bool:
    marker = target / MARKER
    try:
        return marker.read_text(encoding="utf-8").strip() == key
    except OSError:
        return False


@contextmanager
def root_lock(root: Path) -> Iterator[None]:
    """An exclusive advisory lock on `<root>/.lock` (released when the file is closed)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_built(root: Path, name: str, key: str, build: Callable[[Path], None]) -> Path:
    """Return `<root>/<name>`, building it with `build(tmp_dir)` unless its key matches.

    The caller must hold `root_lock(root)` when the fast path fails; `ensure_built`
    checks again under the lock so concurrent callers build only once.
    """
    target = root / name
    if is_current(target, key):
        return target
    # Leftovers of a builder that crashed: nobody else can be using them under the lock.
    for stale in root.glob(f".{name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        build(staging)
        _make_readable(staging)
        (staging / MARKER).write_text(key + "\n", encoding="utf-8")
        if target.exists():
            # An outdated build: move it aside first (rename cannot replace a non-empty dir).
            retired = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-old-", dir=root))
            os.rename(target, retired / name)
            shutil.rmtree(retired, ignore_errors=True)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _make_readable(directory: Path) -> None:
    """mkdtemp (and some writers) create owner-only entries; the fixtures are shared
    read-only with whoever runs the tests or the server (another user in a container)."""
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
