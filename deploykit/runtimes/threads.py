"""The thread budget of one serving process: the machine's cores shared by ``--workers`` processes.

Every runtime sizes its intra-op pool from :func:`thread_budget`, so N workers use
``cores // N`` threads each and never oversubscribe the machine (best-deploy-paths.md §2.2, §4).
The supervisor of ``deploykit serve --workers N`` exports :data:`WORKERS_ENV` to its workers.
No framework is imported here.
"""

from __future__ import annotations

import os

#: Number of serving processes sharing this machine (set by ``deploykit serve --workers N``).
WORKERS_ENV = "DEPLOYKIT_WORKERS"


def physical_cores() -> int:
    """Physical cores this process may run on (logical CPUs when the topology is unknown)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        import psutil  # optional: knows SMT siblings

        physical = psutil.cpu_count(logical=False) or logical
    except ImportError:
        physical = logical
    return max(1, min(logical, physical))


def serving_workers() -> int:
    """How many serving processes share the cores (1 unless :data:`WORKERS_ENV` says otherwise)."""
    try:
        return max(1, int(os.environ.get(WORKERS_ENV, "1")))
    except ValueError:
        return 1


def thread_budget(workers: int | None = None, cores: int | None = None) -> int:
    """Intra-op threads for one process: ``cores // workers``, at least 1."""
    return max(1, (cores or physical_cores()) // (workers or serving_workers()))
