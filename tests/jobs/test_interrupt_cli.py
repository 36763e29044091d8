"""Ctrl-C in ``jobs.proposals`` and ``jobs.train_sppe``: one line saying how to resume, exit 130, no traceback."""

from __future__ import annotations

import importlib
import json
import os

import pytest

from jobs.ray_init import EXIT_INTERRUPTED, run_interruptible


@pytest.mark.parametrize("module", ["jobs.proposals", "jobs.train_sppe"])
def test_ctrl_c_prints_one_line_and_exits_130(module, monkeypatch, capsys):
    mod = importlib.import_module(module)

    def interrupted() -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "main", interrupted)
    assert mod._cli() == EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    assert err.strip() == mod.INTERRUPTED and "resume" in err and "Traceback" not in err


def test_run_interruptible_passes_other_outcomes_through(capsys):
    assert run_interruptible(lambda: 3, "x") == 3
    with pytest.raises(ValueError):
        run_interruptible(lambda: int("nope"), "x")
    assert capsys.readouterr().err == ""


def test_exit_process_keeps_the_status_and_every_buffered_line():
    """``exit_process`` skips the interpreter's finalisation (os._exit): what the job printed or logged last must
    still arrive, and the status must be the job's. Block-buffered stdout (a pipe) is the case that loses lines."""
    import os
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from jobs.ray_init import exit_process\n"
        "logging.basicConfig(stream=sys.stderr, level=logging.INFO)\n"
        "print('summary line', end='')\n"
        "logging.getLogger('x').info('last log line')\n"
        "exit_process(3)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a user's shell has it
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 3
    assert done.stdout == "summary line"
    assert "last log line" in done.stderr


def test_exit_finds_the_processes_it_started_and_waits_for_them():
    """``exit_process`` waits on this process's descendants (a local Ray's raylet and workers) as found by
    ``_descendants``; ``_wait_gone`` returns the ones still running once its time is up."""
    import subprocess
    import sys

    from jobs.ray_init import _descendants, _wait_gone

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        found = _descendants()
        assert child.pid in found
        assert _wait_gone({child.pid: found[child.pid]}, 0.2) == {child.pid: found[child.pid]}
        child.terminate()
        assert _wait_gone({child.pid: found[child.pid]}, 10.0) == {}  # a zombie until reaped counts as gone
    finally:
        child.kill()
        child.wait()


def test_a_job_adopts_and_reaps_what_its_children_leave_behind():
    """With ``adopt_orphans`` a grandchild whose parent exited is reparented to the job, not to PID 1, and
    ``exit_process`` waits for it and reaps it: nothing of the job is left, not even a zombie."""
    import subprocess
    import sys

    code = (
        "import os, subprocess, sys, time\n"
        "from jobs.ray_init import adopt_orphans, exit_process\n"
        "assert adopt_orphans()\n"
        "mid = subprocess.Popen([sys.executable, '-c', 'import subprocess, sys; "
        'print(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"]).pid)\'], '
        "stdout=subprocess.PIPE, text=True)\n"
        "grandchild = int(mid.stdout.readline())\n"
        "mid.wait()\n"
        "time.sleep(0.2)\n"
        "ppid = int(open(f'/proc/{grandchild}/stat').read().rsplit(')', 1)[1].split()[1])\n"
        "print(grandchild, ppid == os.getpid(), flush=True)\n"
        "exit_process(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grandchild, adopted = done.stdout.split()
    assert adopted == "True"
    assert not os.path.exists(f"/proc/{grandchild}"), "the adopted grandchild was left behind"


def test_shutdown_kills_the_autoscaler_monitor_before_ray_waits_on_it():
    """``shutdown_ray`` stops a local Ray's autoscaler monitor itself (``_stop_autoscaler_monitor``): Ray's own
    shutdown reached it after the GCS and then waited a full second for a SIGTERM handler that reports through the
    stopped GCS. Checked where Ray looks: the monitor is already gone (SIGKILL) when ``ray.shutdown()`` gets to it,
    and the rest of Ray's processes still go its way."""
    import os
    import subprocess
    import sys

    code = """
import json
import ray
import ray._private.node as node_module
from jobs.ray_init import init_ray, shutdown_ray

seen = {}
original = node_module.Node._kill_process_type

def recording(self, process_type, *args, **kwargs):
    seen[process_type] = [info.process.poll() for info in self.all_processes.get(process_type, [])]
    return original(self, process_type, *args, **kwargs)

node_module.Node._kill_process_type = recording
init_ray(1)
shutdown_ray()
print(json.dumps(seen))
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray of its own
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["monitor"] == [-9]  # killed before Ray's turn came
    assert seen["raylet"] == [None] and seen["gcs_server"] == [None]  # Ray still stops the others itself
    assert "autoscaler failed" not in done.stderr.lower()
