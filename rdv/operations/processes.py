"""Processes by pid: whether one is alive, and stopping it as every part of rdv does, SIGTERM
first, SIGKILL after a timeout.

The jobs, the supervisor, the local broker and the tests' standalone cluster are each stopped
this way; a job is stopped as its process group (its pid is its group id, `launch` starts it in a
session of its own), so that its Spark JVM and Python workers go with it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether the process runs: it exists and is not a zombie (a child that ended and was not
    waited for yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.read_text().split(") ")[-1].startswith("Z")
    except FileNotFoundError:
        return False


def group_alive(pgid: int) -> bool:
    """Whether any process of the group runs. A job's group outlives its leader when the leader
    ended first, and a query run from a terminal or a test shares a group whose leader may be gone."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a job's process group (its pid is its group id). SIGKILL is also sent to what is left
    of a job that exited: when spark-submit's JVM dies first, its Python driver can outlive it,
    stuck on the dead gateway."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _kill(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def terminate(pids: Mapping[str, int], timeout_s: float, group: bool = True, poll_s: float = 0.2) -> list[str]:
    """SIGTERM each process (its group, with group), wait up to timeout_s for all of them to end,
    then SIGKILL what is left; a group gets SIGKILL in any case, for what is left of it after its
    leader ended. Returns the names of those still running at the timeout, in the order given.
    SIGTERM goes out in the order given too (a standalone cluster's workers before its master)."""
    send = kill_group if group else _kill
    for pid in pids.values():
        send(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(pid) for pid in pids.values()):
        time.sleep(poll_s)
    killed = [name for name, pid in pids.items() if alive(pid)]
    for name, pid in pids.items():
        if group or name in killed:
            send(pid, signal.SIGKILL)
    return killed
