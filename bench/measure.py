"""A benchmark step as a child process, measured: wall time, peak RSS and the load while it ran.

Shared by bench/scale.py and bench/warehouse.py, which import it as `bench.measure` with the
repository root on sys.path: as a top-level name every file of bench/ would be importable, and
bench/trainer.py and bench/embeddings.py would shadow the packages of the same names.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root: int) -> int:
    """Bytes resident in `root` and all its descendants right now."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry.name}/statm") as f:
                rss[int(entry.name)] = int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


@dataclass
class Measured:
    wall_s: float
    rss_mb: float  # ru_maxrss of the child: its largest process
    tree_rss_mb: float  # sampled peak of the sum over its process tree
    rc: int
    load: float  # mean 1-minute load average while it ran: the machine is shared


def run_measured(cmd: list, log: Path, env: dict | None = None, cwd: Path | None = None,
                 interval: float = 0.5) -> Measured:
    """Run `cmd` (its output, after a `$ cmd` line, into `log`; `env` added to this environment),
    sampling its process tree's RSS and the load average every `interval` seconds until it exits."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        out.write("$ " + " ".join(map(str, cmd)) + "\n")
        out.flush()
        t0 = time.perf_counter()
        # its own process group, so that an interrupted step takes its JVM or ranks down with it
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        peak, load = 0, []
        exited = os.pidfd_open(proc.pid)  # readable once the child exits: the wall time is exact
        try:
            while True:
                peak = max(peak, _tree_rss(proc.pid))
                load.append(os.getloadavg()[0])
                if select.select([exited], [], [], interval)[0]:
                    break
            # wait4, not getrusage(RUSAGE_CHILDREN): that is a maximum over every child so far
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            os.close(exited)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
    return Measured(wall, usage.ru_maxrss / 1024, peak / 2**20, proc.returncode,
                    sum(load) / len(load))
