"""Atomic file output: nothing is ever half-written.

Every file reprorec writes goes to a temporary file in the destination folder first and is then
renamed over the destination (``os.replace`` is atomic on POSIX), so a crash leaves either the old
file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it to ``dest`` if the block succeeds.

    The caller writes the temporary path however it likes (pandas, pyarrow, a subprocess). On an
    exception the temporary file is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(dest: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``dest`` when the block succeeds."""
    if "r" in mode or "a" in mode:
        raise ValueError(f"atomic_open is for writing only, got mode {mode!r}")
    with atomic_path(dest) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(dest: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically and return ``dest``."""
    with atomic_open(dest, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(dest)


def atomic_write_bytes(dest: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically and return ``dest``."""
    with atomic_open(dest, "wb") as fh:
        fh.write(data)
    return Path(dest)


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces the folder ``dest`` when the block succeeds.

    Used for multi-file outputs (a report): readers see the old complete folder or the new one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: Seconds a process waits for another one that holds a creation lock before giving up.
LOCK_TIMEOUT_S = float(os.environ.get("REPROREC_LOCK_TIMEOUT_S", "600"))


@contextlib.contextmanager
def exclusive_lock(lock_file: str | Path, *, what: str, timeout_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if needed) for the block.

    Other processes wait (printing once what they wait for) instead of failing. The kernel drops
    the lock when its holder dies, also on SIGKILL, so a crashed holder never blocks the next one.

    Raises:
        TimeoutError: naming ``what`` and the lock file, after ``timeout_s`` seconds of waiting.
    """
    import fcntl
    import sys
    import time

    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    limit = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        start, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited > limit:
                    raise TimeoutError(
                        f"{what}: another process holds {lock_file.name} for over {limit:.0f} s"
                    ) from None
                if waited > 2 and not told:
                    print(f"[reprorec] waiting for another process creating {what}", file=sys.stderr)
                    told = True
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def create_sqlite_atomically(db: Path, build: Callable[[str], None], *, what: str) -> bool:
    """Create the SQLite database ``db`` with ``build(url)`` so that no interruption leaves half of it.

    The schema is built into a temporary file next to ``db`` under :func:`exclusive_lock` and renamed
    into place once complete: a kill at any moment leaves either no database (the next process
    removes the dead builder's temporary file and starts again) or a complete one, and processes that
    start together wait for the first instead of racing its migrations. An existing non-empty ``db``
    is left alone (an empty file, e.g. made by ``sqlite3 db``, counts as absent).

    Returns:
        True if this call created the database.
    """
    from benchmark.faults import fault_point

    if db.is_file() and db.stat().st_size > 0:
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(db.with_name(f".{db.name}.lock"), what=what):
        if db.is_file() and db.stat().st_size > 0:  # made by the process we waited for
            return False
        for stale in db.parent.glob(f".{db.name}.build-*"):  # dead builders' leftovers (we hold the lock)
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        tmp = db.with_name(f".{db.name}.build-{os.getpid()}")
        try:
            build(f"sqlite:///{tmp}")
            fault_point("store.create")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            fault_point("store.created")
            os.replace(tmp, db)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        dir_fd = os.open(db.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return True


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return None
    # SQLAlchemy's form: sqlite:///relative.db, sqlite:////absolute.db (optional ?query)
    return Path(unquote(uri[len("sqlite:///") :].split("?", 1)[0]))
