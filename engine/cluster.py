"""Reaching Dask: a local cluster started only when a stage must run, or an existing scheduler.

``dask-cluster.yaml`` (at the repo root, or the file given to ``--cluster``) says which.
Without a scheduler, the local cluster is the cheapest form that serves: threads in
mlv's own process, one per running stage, since every stage (``call`` stages too) runs
in a child process of its own. ``distributed`` is imported only here, and only when a
cluster is actually needed (a scheduler, GPU workers, or ``local.processes: true``).

Dask's own chatter stays out of mlv's output: the scheduler's HTTP server binds a free port
(never the default 8787, whose "Port 8787 is already in use" warning would leak), and the
dashboard link is given only once the dashboard answers (bokeh, the ``dashboard`` extra:
``pip install 'mlv[dashboard]'``).

``workspace`` says what workers share with the client: ``shared`` (the default) — the
repo's filesystem, as every local run does; ``remote`` — only the repo's default remote:
workers fetch deps from it by digest into scratch directories and push outputs back
(``engine.worker``, ``engine.remote_run``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlv.storage import yamlfile
from mlv.storage.errors import ConfigError, MlvError, UsageError

FILE = "dask-cluster.yaml"
_LOCAL_KEYS = {"workers", "threads_per_worker", "memory_limit", "processes", "gpu_workers"}
_KEYS = ("scheduler", "workspace", "local")
SHARED, REMOTE = "shared", "remote"  # what workers share with the client: the repo's filesystem, or the remote


class ClusterError(MlvError):
    """The scheduler could not be reached or lacks what a stage needs (exit 1)."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str | int = "auto"
    processes: bool | str = "auto"
    gpu_workers: int = 0
    workspace: str = SHARED  # shared | remote
    source: str = FILE

    @property
    def remote(self) -> bool:
        """Whether workers share only the default remote with the client (``workspace: remote``)."""
        return self.workspace == REMOTE


def load_config(path: Path) -> ClusterConfig:
    if not path.exists():
        return ClusterConfig()
    try:
        data = yamlfile.load(yamlfile.read_text(path, source=path.name, limit=yamlfile.CONFIG_BYTES),
                             source=path.name) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not valid YAML ({exc})", path=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a mapping with 'scheduler', 'workspace' and/or 'local'",
                          path=str(path))
    unknown = set(data) - set(_KEYS)
    if unknown:
        raise ConfigError(f"{path.name}: unknown key '{sorted(map(str, unknown))[0]}'; valid: {', '.join(_KEYS)}",
                          path=str(path))
    workspace = data.get("workspace", SHARED)
    if workspace not in (SHARED, REMOTE):
        raise ConfigError(f"{path.name}: 'workspace' must be {SHARED} (workers share this repo's filesystem) or "
                          f"{REMOTE} (workers share only the default remote), got {workspace!r}", path=str(path))
    local = data.get("local") or {}
    if not isinstance(local, dict) or set(local) - _LOCAL_KEYS:
        bad = sorted(map(str, set(local) - _LOCAL_KEYS)) if isinstance(local, dict) else ["(not a mapping)"]
        raise ConfigError(f"{path.name}: unknown key 'local.{bad[0]}'; valid: {', '.join(sorted(_LOCAL_KEYS))}")
    config = ClusterConfig(
        scheduler=data.get("scheduler") or None,
        workers=local.get("workers"),
        threads_per_worker=local.get("threads_per_worker") or 1,
        memory_limit=local.get("memory_limit") or "auto",
        processes=local.get("processes", "auto"),
        gpu_workers=local.get("gpu_workers") or 0,
        workspace=workspace,
        source=path.name,
    )
    for name in ("workers", "threads_per_worker", "gpu_workers"):
        value = getattr(config, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ConfigError(f"{path.name}: 'local.{name}' must be a non-negative integer, got {value!r}")
    if config.processes not in (True, False, "auto"):
        raise ConfigError(f"{path.name}: 'local.processes' must be true, false or auto, got {config.processes!r}")
    return config


class Cluster:
    """A Dask client made on first use and closed (with any cluster mlv started) on exit."""

    def __init__(self, config: ClusterConfig, *, jobs: int | None, gpu: bool) -> None:
        self.config = config
        self.jobs = jobs
        self.gpu = gpu
        self._client = None
        self._local = None
        self._cpu_workers: list[str] | None = None

    def threads_suffice(self, *, gpu: bool) -> bool:
        """Whether Dask's threaded scheduler in this process serves: local and no GPU. Every stage runs in
        a child process of its own (``call`` stages too), so a thread per running stage is all it takes."""
        return not (self.config.scheduler or gpu or self.config.gpu_workers or self.config.processes is True)

    @property
    def started(self) -> bool:
        return self._client is not None

    def client(self):
        if self._client is None:
            self._client = self._connect() if self.config.scheduler else self._start_local()
        return self._client

    def _connect(self):
        from distributed import Client

        try:
            return Client(self.config.scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at '{self.config.scheduler}' (from {self.config.source}): {exc}. "
                "Start it with `dask scheduler`, or remove 'scheduler' to run on a local cluster."
            ) from exc

    def _start_local(self):
        from distributed import Client, LocalCluster

        if self.config.gpu_workers:
            return Client(self._start_local_gpus())
        cores = os.cpu_count() or 1
        processes = self.config.processes is True
        if processes:
            workers = self.config.workers or min(cores, self.jobs or cores)
            threads = self.config.threads_per_worker
        else:
            workers, threads = 1, self.jobs or self.config.workers or cores
        with _quiet_ports():
            self._local = LocalCluster(
                n_workers=workers, threads_per_worker=threads, processes=processes,
                memory_limit=self.config.memory_limit, **_dashboard_settings(),
            )
            return Client(self._local)

    def _start_local_gpus(self):
        """One worker per GPU, each pinned to its device with ``CUDA_VISIBLE_DEVICES``: dask-cuda's
        ``LocalCUDACluster`` (the ``gpu`` extra), offering the resource ``GPU=1``."""
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise UsageError(f"{self.config.source}: 'local.gpu_workers' needs dask-cuda, which pins one worker to "
                             "each GPU; install it with `pip install 'mlv[gpu]'`") from None
        with _quiet_ports():
            self._local = LocalCUDACluster(
                n_workers=self.config.gpu_workers, threads_per_worker=1, memory_limit=self.config.memory_limit,
                resources={"GPU": 1}, **_dashboard_settings(),
            )
        return self._local

    def gpu_workers(self) -> int:
        """How many workers offer the GPU resource (connects to the scheduler if needed)."""
        if not self.config.scheduler:
            return self.config.gpu_workers
        info = self.client().scheduler_info()
        return sum(1 for w in info.get("workers", {}).values() if (w.get("resources") or {}).get("GPU", 0) > 0)

    def check_devices(self) -> None:
        """``local.gpu_workers`` asks for local GPU workers: each needs a GPU this machine shows."""
        wanted = self.config.gpu_workers
        if self.config.scheduler or not wanted:
            return
        from mlv.engine import gpus

        found = gpus.visible()
        if len(found) < wanted:
            seen = f"only {len(found)} ({', '.join(map(str, found))})" if found else "none"
            raise UsageError(
                f"{self.config.source}: 'local.gpu_workers' is {wanted}, but this machine shows {seen} GPU(s) "
                "(nvidia-smi, honouring CUDA_VISIBLE_DEVICES). Set it to the number of GPUs here, or 0; GPU "
                f"workers elsewhere join through 'scheduler' (`dask cuda worker <scheduler-address> --resources GPU=1`)"
            )

    def cpu_workers(self) -> list[str]:
        """Addresses of the workers that offer no GPU (CPU stages go there first), once per run."""
        if self._cpu_workers is None:
            info = self.client().scheduler_info()
            self._cpu_workers = sorted(a for a, w in info.get("workers", {}).items()
                                       if not (w.get("resources") or {}).get("GPU"))
        return self._cpu_workers

    def require_gpu(self, stages: list[str]) -> None:
        if self.gpu_workers() == 0:
            where = f"the scheduler at {self.config.scheduler}" if self.config.scheduler else "the local cluster"
            raise UsageError(
                f"stage(s) {', '.join(repr(s) for s in stages)} need a GPU (resources: {{gpu: N}}), but no Dask worker "
                f"of {where} offers one. Start a GPU worker with `dask worker <scheduler-address> --resources GPU=1` "
                f"and set 'scheduler' in {FILE}, or set 'local.gpu_workers: 1' there on a machine with a GPU."
            )

    @property
    def dashboard(self) -> str | None:
        """The dashboard link the scheduler advertises (a local one only with bokeh); ``dashboard_answers``
        says whether anything serves it."""
        if self._client is None:
            return None
        try:
            return self._client.dashboard_link if self.config.scheduler or _has_bokeh() else None
        except (KeyError, AttributeError):
            return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._local is not None:
            self._local.close()
        self._client = self._local = None


def dashboard_answers(link: str, *, timeout: float = 5.0) -> bool:
    """Whether the dashboard at ``link`` serves its page (a scheduler without bokeh advertises a link
    that only answers 404)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(link, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _dashboard_settings() -> dict:
    """A free port for the scheduler's HTTP server always (it starts even without a dashboard), the
    dashboard itself only where bokeh can draw it."""
    return {"dashboard_address": ":0", **({} if _has_bokeh() else {"scheduler_kwargs": {"dashboard": False}})}


@contextmanager
def _quiet_ports() -> Iterator[None]:
    """No "Port N is already in use ... Hosting the HTTP server on port M instead" from Dask: mlv picks
    free ports itself, and that advice is for someone who chose the port."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("distributed.node", "distributed.http.server")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None
