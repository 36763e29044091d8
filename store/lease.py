"""One live run per output folder: a lease file per run under ``<output>/_lease/``, on local disks and object stores.

Two runs writing one output at once would each clean up the other's staged rows and report false errors, so a run
takes the output's lease before it writes there and keeps it until it ends. Each run writes only its own file,
``<output>/_lease/<run_id>.json`` (``LeaseRecord``: run id, host, pid, start time, heartbeat time, TTL, state),
atomically (``store.writers.put_atomic``); nothing ever needs an atomic create-if-absent, which plain fsspec does not
offer on S3. A lease is **live** while its heartbeat is younger than its TTL and, when it was written on this host,
its process still exists (so a killed run on this machine is stale at once; elsewhere after its TTL).

Acquiring (``Lease.acquire``) is a timing-based mutual exclusion (Fischer's algorithm) over listings:

1. write our file as ``candidate``;
2. list ``_lease/``: any other live ``held`` lease, or a live ``candidate`` that sorts before ours by
   (start time, run id), wins: delete ours and refuse (``LeaseHeld``);
3. wait ``settle_s``, list again and apply the same rule (a competitor that wrote just after our first listing is
   seen now);
4. rewrite our file as ``held``, delete the stale leases (crashed runs) and go.

Two runs can both get the lease only if one of them stalls for more than ``settle_s`` between its second listing
and writing ``held`` (or, across hosts, their clocks differ by more than the TTL); the listings must be strongly
consistent (local disks; S3 since December 2020; other object stores: check). ``--break-lease`` deletes every
other lease instead of refusing.

While the run works, ``Lease.start_heartbeat`` renews the file every ``ttl_s / 4``; a renewal that finds the file
gone or another run holding the output sets ``Lease.lost`` (the job stops before its next chunk). ``release``
deletes the file, on success and on failure.

``live_run_ids`` tells the staging clean-up (``store.staging.remove_staging``) which runs' staged rows it must leave
alone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace

import fsspec

from store.writers import join_uri, put_atomic, read_json_folder

__all__ = [
    "LEASE_DIR",
    "DEFAULT_TTL_S",
    "DEFAULT_SETTLE_S",
    "LeaseRecord",
    "LeaseHeld",
    "Lease",
    "read_leases",
    "live_run_ids",
]

logger = logging.getLogger(__name__)

LEASE_DIR = "_lease"
DEFAULT_TTL_S = 60.0
DEFAULT_SETTLE_S = 2.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: assume alive
    return True


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class LeaseRecord:
    """The content of one run's lease file."""

    run_id: str
    host: str
    pid: int
    start_time: float  # unix seconds: when the run asked for the lease (orders competing candidates)
    heartbeat: float  # unix seconds of the last renewal
    ttl_s: float  # live while now < heartbeat + ttl_s
    state: str = "candidate"  # "candidate" while acquiring, "held" once acquired

    @property
    def key(self) -> tuple[float, str]:
        return (self.start_time, self.run_id)

    def is_live(self, now: float | None = None) -> bool:
        """The heartbeat is younger than the TTL and, for a lease of this host, its process exists."""
        now = time.time() if now is None else now
        if now >= self.heartbeat + self.ttl_s:
            return False
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return False
        return True

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return (
            f"run {self.run_id} on host {self.host} (pid {self.pid}), last seen {max(now - self.heartbeat, 0):.0f} s "
            f"ago ({_when(self.heartbeat)})"
        )


class LeaseHeld(Exception):
    """Another live run holds the output; the message is one line naming it and how to override."""

    def __init__(self, output: str, holder: LeaseRecord) -> None:
        self.holder = holder
        now = time.time()
        super().__init__(
            f"output {output} is in use by {holder.describe(now)}; wait for it to finish (its lease expires "
            f"{max(holder.heartbeat + holder.ttl_s - now, 0):.0f} s after its last heartbeat) or, if that run is "
            f"certainly dead, rerun with --break-lease"
        )


def _fs(output: str, storage_options: dict | None):
    return fsspec.core.url_to_fs(join_uri(output, LEASE_DIR), **(storage_options or {}))


def read_leases(output: str, storage_options: dict | None = None) -> dict[str, LeaseRecord]:
    """Every readable lease file under ``output`` by run id (an unreadable or vanished file is no lease)."""
    out = {}
    for d in read_json_folder(join_uri(output, LEASE_DIR), storage_options):
        try:
            rec = LeaseRecord(**d)
        except TypeError:
            continue
        out[rec.run_id] = rec
    return out


def live_run_ids(output: str, storage_options: dict | None = None) -> set[str]:
    """The runs whose lease on ``output`` is live now."""
    now = time.time()
    return {r for r, rec in read_leases(output, storage_options).items() if rec.is_live(now)}


class Lease:
    """This run's lease on ``output``: ``acquire`` (or ``begin``, other read-only work, ``confirm``),
    ``start_heartbeat``, ``release`` (or use it as a context manager around the run after ``acquire``).

    Args:
        output: the output folder (local path or fsspec URI).
        run_id: this run's id (unique; the lease file's name).
        storage_options: fsspec options.
        ttl_s: how long the lease stays live without a heartbeat (other hosts wait this long after a crash).
        settle_s: the wait between the two listings of ``acquire`` (must exceed any stall between a listing and
            the next write).
    """

    def __init__(
        self,
        output: str,
        run_id: str,
        storage_options: dict | None = None,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        settle_s: float = DEFAULT_SETTLE_S,
    ) -> None:
        if ttl_s <= 0 or settle_s < 0:
            raise ValueError(f"lease ttl_s must be > 0 and settle_s ≥ 0 (got {ttl_s}, {settle_s})")
        if "/" in run_id or not run_id:
            raise ValueError(f"run id {run_id!r} cannot name a lease file")
        self.output = output
        self.run_id = run_id
        self.storage_options = dict(storage_options or {})
        self.ttl_s = float(ttl_s)
        self.settle_s = float(settle_s)
        self.uri = join_uri(output, LEASE_DIR, f"{run_id}.json")
        self.lost = False  # set by the heartbeat when another run took the output over
        self._record: LeaseRecord | None = None
        self._last_renewal = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._break = False  # begin(break_lease=True): take the output from every other run
        self._first_check: float | None = None  # monotonic time of begin's check; None outside begin → confirm

    # ---- acquiring -------------------------------------------------------------------------------------------------
    def acquire(self, break_lease: bool = False) -> list[LeaseRecord]:
        """Take the lease or raise ``LeaseHeld`` (our file is deleted then). Returns the leases this run took over:
        stale ones (crashed runs), and with ``break_lease`` every other one."""
        self.begin(break_lease)
        return self.confirm()

    def begin(self, break_lease: bool = False) -> None:
        """Steps 1–2 of ``acquire``: write our ``candidate`` file and check the others (``LeaseHeld`` if one wins).
        The caller may work (read-only on the output, e.g. start Ray) before ``confirm``, which waits only what is
        left of ``settle_s``: the settle time then costs the job nothing."""
        now = time.time()
        self._record = LeaseRecord(
            run_id=self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            start_time=now,
            heartbeat=now,
            ttl_s=self.ttl_s,
            state="candidate",
        )
        self._write()
        self._break = break_lease
        try:
            if not break_lease:
                self._check_others()
        except BaseException:
            self._delete_own()
            raise
        self._first_check = time.monotonic()

    def confirm(self) -> list[LeaseRecord]:
        """Steps 3–4 of ``acquire`` after ``begin``: the second check once ``settle_s`` has passed since the first,
        then ``held``. Returns the leases taken over, as ``acquire``."""
        if self._first_check is None:
            raise ValueError("confirm before begin")
        first, self._first_check = self._first_check, None
        try:
            if not self._break and time.monotonic() - first > self.ttl_s / 2:
                # Our candidate file aged while the caller worked: others may have taken it for a dead run's. Renew
                # it and check again, so the rule below holds for a fresh candidate.
                self._write()
                self._check_others()
                first = time.monotonic()
            if not self._break and self.settle_s:
                time.sleep(max(0.0, self.settle_s - (time.monotonic() - first)))
                self._check_others()
            self._write(state="held")
        except BaseException:
            self._delete_own()
            raise
        others = [r for r in read_leases(self.output, self.storage_options).values() if r.run_id != self.run_id]
        now = time.time()
        taken = [r for r in others if self._break or not r.is_live(now)]
        for r in taken:
            self._delete(r.run_id)
        return taken

    def _check_others(self) -> None:
        now = time.time()
        mine = self._record
        for r in sorted(read_leases(self.output, self.storage_options).values(), key=lambda r: r.key):
            if r.run_id == self.run_id or not r.is_live(now):
                continue
            if r.state == "held" or r.key < mine.key:
                raise LeaseHeld(self.output, r)

    # ---- renewing ------------------------------------------------------------------------------------------------
    def renew(self) -> bool:
        """Rewrite our file with a new heartbeat; False (and ``lost`` set) when another run took the output over."""
        if self._record is None:
            raise ValueError("renew before acquire")
        others = read_leases(self.output, self.storage_options)
        others.pop(self.run_id, None)
        now = time.time()
        # Another live holder means it took the output over (it deleted our file, which a renewal racing with that
        # may have written again): never renew over it.
        usurper = next((r for r in others.values() if r.state == "held" and r.is_live(now)), None)
        if usurper is not None or now - self._last_renewal > self.ttl_s:
            self.lost = True
            logger.error(
                "lost the lease on %s%s: stop writing there",
                self.output,
                f" to {usurper.describe(now)}" if usurper else " (no heartbeat for longer than its TTL)",
            )
            return False
        self._write()
        return True

    def _loop(self) -> None:
        interval = self.ttl_s / 4
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except Exception:  # a failed renewal is retried; the lease stays live for ttl_s after the last one
                logger.warning("could not renew the lease on %s", self.output, exc_info=True)

    def start_heartbeat(self) -> Lease:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="raypose-lease-heartbeat", daemon=True)
            self._thread.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat and delete our file (a failure to delete is logged: the lease then expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._record is not None:
            self._delete_own()
        self._record = None

    def __enter__(self) -> Lease:
        return self.start_heartbeat()

    def __exit__(self, *exc) -> None:
        self.release()

    # ---- files ---------------------------------------------------------------------------------------------------
    def _write(self, state: str | None = None) -> None:
        now = time.time()
        self._record = replace(self._record, heartbeat=now, state=state or self._record.state)
        put_atomic(json.dumps(asdict(self._record), sort_keys=True).encode(), self.uri, self.storage_options)
        self._last_renewal = now

    def _delete(self, run_id: str) -> None:
        fs, path = _fs(self.output, self.storage_options)
        try:
            fs.rm(f"{path}/{run_id}.json")
        except FileNotFoundError:
            pass

    def _delete_own(self) -> None:
        try:
            self._delete(self.run_id)
        except Exception:
            logger.warning("could not delete the lease file %s (it expires by itself)", self.uri, exc_info=True)
