"""Where stage jobs run: threads in mlv's own process, or a Dask cluster — one interface for the run loop.

Both hand out futures (``result()``, ``cancel()``) for ``worker.run(job)`` and wait for
the first to finish, so ``Runner`` has one loop whatever runs the stages. Threads serve
whenever no cluster is named and no GPU is needed: every stage is a child process of its
own, so a thread per running stage is all it takes, and nothing is imported or started
(a no-op run creates neither). A Dask cluster is reached, or a local one started, on the
first submit; CPU stages go to workers without a GPU while there are any.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_threads

from mlv.engine import worker
from mlv.engine.cluster import Cluster
from mlv.engine.execute import Job


class Threads:
    """At most ``jobs`` stages at once, each on a thread of this process."""

    def __init__(self, jobs: int | None) -> None:
        self.limit = jobs or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.limit, thread_name_prefix="mlv-stage")
        # storing a stage's outputs needs the store (fsspec): import it while the first commands run
        threading.Thread(target=__import__, args=("mlv.storage.store.objects",), daemon=True).start()

    def submit(self, job: Job, *, gpu: int) -> Future:
        return self.pool.submit(worker.run, job)

    def wait(self, futures: Iterable[Future]) -> set[Future]:
        done, _ = wait_threads(list(futures), return_when=FIRST_COMPLETED)
        return done

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class OnDask:
    """Stages as Dask tasks on ``cluster`` (reached or started on the first submit)."""

    def __init__(self, cluster: Cluster, *, jobs: int | None, started: Callable[[str], None]) -> None:
        self.cluster = cluster
        self.limit = jobs or 1 << 30  # the cluster queues what its workers cannot take yet
        self.started = started  # told the dashboard link once the cluster is up

    def submit(self, job: Job, *, gpu: int):
        first = not self.cluster.started
        client = self.cluster.client()
        if first:
            self.started(self.cluster.dashboard or "")
        placement: dict = {"resources": {"GPU": gpu}} if gpu else {}
        if not gpu and (cpu := self.cluster.cpu_workers()):  # GPU workers stay free for GPU stages
            placement = {"workers": cpu, "allow_other_workers": True}
        return client.submit(worker.run, job, key=f"mlv-{job.stage}-{job.run_id}", pure=False, **placement)

    def wait(self, futures: Iterable) -> set:
        from distributed import wait

        done, _ = wait(list(futures), return_when="FIRST_COMPLETED")
        return set(done)

    def close(self) -> None:
        self.cluster.close()
