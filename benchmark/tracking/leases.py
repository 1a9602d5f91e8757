"""Leases: which live process owns a cell key or a sweep run (claims with heartbeats).

The tracking store alone cannot say whether a RUNNING run is being worked on: MLflow keeps no
owner and a killed process cannot close its runs. reprorec keeps a small table, ``reprorec_leases``,
in the study storage (``optuna.db`` next to a sqlite store, or the services' PostgreSQL), so every
process that shares a store — other terminals, SLURM array tasks on other nodes — sees the same
claims:

* a **cell** is claimed (``cell:<cell key>``) before its run is created and released after the run
  ended: a second process running the same key waits for the first and then skips the FINISHED cell,
  or takes over a dead claim;
* a **sweep** run is claimed (``sweep:<run id>``) by the process that runs the sweep;
* every row carries its owner (``host:pid:nonce``) and a heartbeat the owner's thread refreshes every
  :data:`HEARTBEAT_S` seconds. An owner on another host is dead when its heartbeat is older than
  :data:`GRACE_S`; one on this host when its process is gone (SIGKILL, the OOM killer: at once),
  whatever its heartbeat (see :func:`holder_dead`).

A claim is taken with one conditional statement (``INSERT``, or ``UPDATE ... WHERE owner = <dead
owner> AND heartbeat = <its last beat>``), so of two processes racing for a key exactly one wins.
The runs a process creates carry its owner as the ``reprorec.owner`` tag: :func:`owner_alive` is how
other processes decide that a RUNNING run was left by a dead process and close it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: Seconds between heartbeats, and without one after which an owner on another host counts as dead.
HEARTBEAT_S = float(os.environ.get("REPROREC_LEASE_HEARTBEAT_S", "5"))
GRACE_S = float(os.environ.get("REPROREC_LEASE_GRACE_S", "60"))
#: How often a process waiting for a claimed cell looks again.
WAIT_POLL_S = float(os.environ.get("REPROREC_LEASE_POLL_S", "1"))

TABLE = "reprorec_leases"
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "lease_key VARCHAR(255) PRIMARY KEY, owner VARCHAR(255) NOT NULL, "
    "heartbeat DOUBLE PRECISION NOT NULL, info VARCHAR(1000))"
)

_HOST = socket.gethostname()


def process_owner() -> str:
    """This process's owner id, ``host:pid:nonce`` (the nonce tells a reused pid apart)."""
    global _OWNER
    if _OWNER is None or _OWNER[1] != os.getpid():  # a forked child is another owner
        _OWNER = (f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}", os.getpid())
    return _OWNER[0]


_OWNER: tuple[str, int] | None = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds, to within a clock tick), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def holder_dead(owner: str, heartbeat: float, now: float | None = None) -> bool:
    """True if the holder ``owner`` with last heartbeat ``heartbeat`` (epoch seconds) is dead.

    An owner on this host is judged by its process, not its heartbeat: dead when the process is
    gone, or when the live process with its pid started after the owner's last heartbeat (the pid
    was reused). A live owner's heartbeat can be minutes late: the heartbeat thread needs the GIL,
    and a native call that keeps it (LAPACK through scipy holds it for a whole decomposition) stalls
    the thread; a process on the same store that took such a claim over would throw away a running
    cell's result. Owners on other hosts are dead once the heartbeat is :data:`GRACE_S` old.
    """
    now = time.time() if now is None else now
    parts = owner.rsplit(":", 2)
    if len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit():
        pid = int(parts[1])
        if not _pid_alive(pid):
            return True
        started = _process_start(pid)
        if started is not None:
            return started > heartbeat + 2.0  # start time and btime are rounded (ticks, seconds)
    return now - heartbeat > GRACE_S


@dataclass(frozen=True)
class Holder:
    """Who holds a lease."""

    owner: str
    heartbeat: float
    info: str

    def describe(self) -> str:
        age = max(0.0, time.time() - self.heartbeat)
        return f"process {self.owner} (heartbeat {age:.0f} s ago){f', {self.info}' if self.info else ''}"


class LeaseTable:
    """The lease table of one study storage URL (one per URL and process: :func:`lease_table`)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        from benchmark.io import sqlite_path
        from benchmark.tracking.studies import open_storage

        # the Optuna schema first (atomically for SQLite: the storage is also the study's); an
        # unreachable or unusable storage fails here with its URL redacted, before any SQL of ours
        open_storage(url).engine.dispose()
        db = sqlite_path(url)
        if db is not None:
            kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
        elif url.startswith(("postgresql", "mysql")):
            kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
        else:
            kwargs = {}
        self.url = url
        self.engine = sa.create_engine(url, **kwargs)
        self._sa = sa
        self._held: dict[str, str] = {}  # key -> owner (this process)
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._execute(_DDL)

    # ------------------------------------------------------------------ SQL with retries
    def _execute(self, sql: str, **params: Any) -> Any:
        """Run one statement in its own transaction; retry SQLite's ``database is locked``."""
        delay = 0.05
        for attempt in range(60):
            try:
                with self.engine.begin() as conn:
                    result = conn.execute(self._sa.text(sql), params)
                    return result.fetchall() if result.returns_rows else result.rowcount
            except self._sa.exc.IntegrityError:
                raise
            except self._sa.exc.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 59:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def holder(self, key: str) -> Holder | None:
        rows = self._execute(f"SELECT owner, heartbeat, info FROM {TABLE} WHERE lease_key = :k", k=key)
        return Holder(rows[0][0], float(rows[0][1]), rows[0][2] or "") if rows else None

    def owner_alive(self, owner: str) -> bool:
        """True if ``owner`` holds any lease and is not dead (see :func:`holder_dead`)."""
        rows = self._execute(f"SELECT heartbeat FROM {TABLE} WHERE owner = :o", o=owner)
        return any(not holder_dead(owner, float(hb)) for (hb,) in rows)

    def prune_dead(self) -> int:
        """Delete the leases of dead holders (each with a conditional DELETE); return how many."""
        rows = self._execute(f"SELECT lease_key, owner, heartbeat FROM {TABLE}")
        pruned = 0
        for key, owner, beat in rows:
            if holder_dead(owner, float(beat)):
                pruned += self._execute(
                    f"DELETE FROM {TABLE} WHERE lease_key = :k AND owner = :o AND heartbeat = :h",
                    k=key,
                    o=owner,
                    h=beat,
                )
        return pruned

    # ------------------------------------------------------------------ claims
    def try_claim(self, key: str, info: str = "") -> tuple[bool, Holder | None]:
        """Claim ``key`` for this process unless a live process holds it.

        Returns:
            ``(True, previous dead holder or None)`` when claimed, ``(False, live holder)`` if not.
        """
        me = process_owner()
        for _ in range(20):
            now = time.time()
            held = self.holder(key)
            if held is None:
                try:
                    self._execute(
                        f"INSERT INTO {TABLE} (lease_key, owner, heartbeat, info) VALUES (:k, :o, :h, :i)",
                        k=key,
                        o=me,
                        h=now,
                        i=info[:1000],
                    )
                except self._sa.exc.IntegrityError:  # claimed meanwhile: look again
                    continue
                self._hold(key, me)
                return True, None
            if held.owner == me:
                self._hold(key, me)
                return True, None
            if not holder_dead(held.owner, held.heartbeat, now):
                return False, held
            taken = self._execute(
                f"UPDATE {TABLE} SET owner = :o, heartbeat = :h, info = :i "
                "WHERE lease_key = :k AND owner = :old AND heartbeat = :oldh",
                o=me,
                h=now,
                i=info[:1000],
                k=key,
                old=held.owner,
                oldh=held.heartbeat,
            )
            if taken == 1:
                self._hold(key, me)
                return True, held
        raise RuntimeError(f"lease {key}: could not settle a claim in {self.url}")  # pragma: no cover

    def claim(self, key: str, *, what: str, info: str = "") -> Holder | None:
        """Claim ``key``, waiting (and saying so once) while a live process holds it.

        Returns:
            The dead holder taken over, or None.
        """
        told = False
        while True:
            ok, holder = self.try_claim(key, info)
            if ok:
                if holder is not None:
                    print(f"[reprorec] {what}: took over from dead {holder.describe()}", file=sys.stderr)
                return holder
            assert holder is not None
            if not told:
                print(f"[reprorec] {what}: waiting for {holder.describe()}, which runs it", file=sys.stderr)
                told = True
            time.sleep(WAIT_POLL_S)

    def still_held(self, key: str) -> bool:
        """True if this process still holds ``key`` (no other process took it over)."""
        held = self.holder(key)
        return held is not None and held.owner == process_owner() and key not in self._lost

    def release(self, key: str) -> None:
        with self._lock:
            owner = self._held.pop(key, None)
            self._lost.discard(key)
        if owner is not None:
            with contextlib.suppress(Exception):  # the row of a dead owner is harmless
                self._execute(f"DELETE FROM {TABLE} WHERE lease_key = :k AND owner = :o", k=key, o=owner)

    @contextlib.contextmanager
    def held(self, key: str, *, what: str, info: str = "") -> Iterator[Holder | None]:
        """``with table.held(key, what=...)``: :meth:`claim` for the block, released afterwards."""
        previous = self.claim(key, what=what, info=info)
        try:
            yield previous
        finally:
            self.release(key)

    # ------------------------------------------------------------------ heartbeat
    def _hold(self, key: str, owner: str) -> None:
        with self._lock:
            self._held[key] = owner
            self._lost.discard(key)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="reprorec-lease", daemon=True)
                self._thread.start()

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self._lock:
                held = dict(self._held)
            if not held:
                return
            now = time.time()
            for key, owner in held.items():
                try:
                    n = self._execute(
                        f"UPDATE {TABLE} SET heartbeat = :h WHERE lease_key = :k AND owner = :o",
                        h=now,
                        k=key,
                        o=owner,
                    )
                except Exception:  # a busy or briefly unreachable store: beat again next time
                    continue
                if n == 0:
                    with self._lock:
                        if key in self._held:
                            self._lost.add(key)


_TABLES: dict[str, LeaseTable] = {}
_TABLES_LOCK = threading.Lock()


def lease_table(url: str) -> LeaseTable:
    """The :class:`LeaseTable` of the study storage ``url`` (created on first use, cached)."""
    with _TABLES_LOCK:
        table = _TABLES.get(url)
        if table is None or table._pid != os.getpid():
            table = LeaseTable(url)
            _TABLES[url] = table
        return table
