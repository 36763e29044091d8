"""How every job joins or starts Ray: one rule, so ``ray job submit`` never gets resources passed to its cluster."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

__all__ = ["init_ray", "shutdown_ray", "run_interruptible", "adopt_orphans", "exit_process", "EXIT_INTERRUPTED"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def init_ray(num_cpus: int | None = None, logging_level: str = "WARNING") -> None:
    """Connect to the cluster named by ``RAY_ADDRESS`` (as under ``ray job submit``; ``num_cpus`` is then ignored:
    resources cannot be given to an existing cluster), else start a local Ray with ``num_cpus`` CPUs (None: all) and
    no dashboard. Does nothing when Ray is already initialised."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging_level)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging_level)


#: Threads through which Ray Data still calls Ray after a Dataset's iterator was abandoned (a Ctrl-C): its
#: scheduling loop and metadata prefetcher. ``StreamingExecutor.shutdown`` waits only 2 s for them.
_RAY_DATA_THREADS = ("StreamingExecutor-", "ray-data-metadata-prefetch")


def shutdown_ray(timeout_s: float = 30.0) -> None:
    """``ray.shutdown()`` once Ray Data's own threads of this process have stopped (at most ``timeout_s``).

    An interrupted ``take_all`` leaves the executor's scheduling loop running in its thread for a while (it is
    given 2 s, more on a loaded machine); a Ray call it makes after ``ray.shutdown()`` reaches a destroyed core
    worker, which ends the whole process at once with status 1 (Ray's ``QuickExit``: "The core worker process is
    not initialized yet or already shutdown"), so a Ctrl-C'd job reported a crash instead of 130 in about one
    run of three on a loaded 2-core machine.
    """
    import threading
    import time

    import ray

    if not ray.is_initialized():
        return
    deadline = time.monotonic() + timeout_s
    for t in threading.enumerate():
        if t is not threading.current_thread() and t.name.startswith(_RAY_DATA_THREADS):
            t.join(timeout=max(0.0, deadline - time.monotonic()))
    _stop_autoscaler_monitor()
    ray.shutdown()  # returns while the local Ray's workers are still exiting: exit_process waits for them


def _stop_autoscaler_monitor() -> None:
    """Kill the autoscaler monitor of the local Ray this process started (none when it joined a cluster).

    ``ray.shutdown()`` stops a local Ray's processes one after another, the GCS before the monitor, and gives each
    1 s after SIGTERM before a SIGKILL. The monitor's SIGTERM handler (``ray/autoscaler/_private/monitor.py``,
    ``Monitor._signal_handler``) first reports its "failure" through the GCS, already gone by then, so it always
    took the full second: 1.0 of the 1.36 s ``ray.shutdown()`` took, about a tenth of a small job's whole run
    (issue 13). A job's local Ray never autoscales, and the monitor gets the same SIGKILL a second later anyway.
    Ray keeps the processes it started in private fields; if they move, this does nothing and shutdown is as slow
    as before."""
    import ray

    try:
        from ray._private import ray_constants

        node = ray._private.worker._global_node
        infos = [] if node is None else list(node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []))
    except (AttributeError, ImportError):
        return
    for info in infos:
        process = getattr(info, "process", None)
        if process is not None and process.poll() is None:
            process.kill()  # not SIGTERM: its handler would report an autoscaler failure to this driver
            with contextlib.suppress(Exception):
                process.wait(timeout=5)


def _proc_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _descendants() -> dict[int, str]:
    """pid → start time of every descendant of this process (Linux ``/proc``; empty where there is none)."""
    if not os.path.isdir("/proc"):
        return {}
    children: dict[int, list[int]] = {}
    start: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        fields = _proc_stat(entry.name) if entry.name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            start[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    todo = [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = start[child]
            todo.append(child)
    return found


def _wait_gone(procs: dict[int, str], timeout_s: float) -> dict[int, str]:
    """Wait until none of ``procs`` (pid → start time) runs any more (gone, replaced, or a zombie), at most
    ``timeout_s``; returns those still running."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        procs = {
            pid: t for pid, t in procs.items() if (f := _proc_stat(pid)) is not None and f[19] == t and f[0] != "Z"
        }
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.05)


def run_interruptible(main: Callable[[], int], message: str) -> int:
    """``main()``, with a Ctrl-C (KeyboardInterrupt) reported as ``message`` in one line on stderr and exit status
    130 instead of a traceback, Ray shut down once Ray Data's threads have stopped (``shutdown_ray``). For the jobs
    whose work is committed piecewise, so ``message`` can say how to resume (``jobs.label``, which adds a SIGINT
    handler for a Ctrl-C that library code swallows; ``jobs.proposals``; ``jobs.train_sppe``)."""
    try:
        return main()
    except KeyboardInterrupt:
        print(message, file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):
            shutdown_ray()
        return EXIT_INTERRUPTED


def adopt_orphans() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``; False elsewhere).

    When a local Ray stops, its raylet exits before some of its workers, which are then reparented. Adopted by this
    job instead of PID 1, they stay visible to ``exit_process``, which waits for them and reaps them: a finished or
    Ctrl-C'd job then leaves not even a zombie behind, also under a PID 1 that reaps late (a sandbox's init left
    one for seconds after a Ctrl-C'd run, tests/jobs/test_label_interrupt.py)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER = 36 (linux/prctl.h)
    except (OSError, AttributeError):
        return False


def exit_process(status: int) -> None:
    """End a job's process with ``status`` once its work is done and Ray is shut down (``shutdown_ray``): standard
    streams and logging flushed, then ``os._exit``, skipping the interpreter's finalisation.

    Why: after ``ray.shutdown()`` the finalisation of a ``jobs.label`` process (torch's and Ray's native
    destructors) took 0.9 s of a 12-s job (issue 13), and Ray's native threads can crash it after the work is done
    (ray-project/ray#31145; the test suite's ``conftest`` ends the same way for that reason), turning a finished run
    into a non-zero status. It first waits (at most 10 s) until every process this one started has exited. Only for
    ``python -m`` entry points: every output is written and closed, every thread of ours stopped, before this is
    called.
    """
    import logging

    # Processes this one started that are still exiting (``ray.shutdown()`` returns before a local Ray's workers
    # have exited; a Ctrl-C reaches them directly): os._exit must not leave them behind (a Ctrl-C'd run's session
    # is checked empty right after its exit, tests/jobs/test_label_interrupt.py).
    left = _wait_gone(_descendants(), 10.0)
    if left:
        print(f"warning: processes {sorted(left)} started by this job were still running at its exit", file=sys.stderr)
    with contextlib.suppress(ChildProcessError):  # reap exited children, adopted ones too (adopt_orphans)
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(status)
