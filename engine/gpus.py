"""GPUs as devices: which ones this machine shows, and which one a stage was pinned to.

mlv follows dask-cuda's convention: one worker per GPU, pinned with
``CUDA_VISIBLE_DEVICES`` (``dask cuda worker`` and ``LocalCUDACluster`` do the pinning),
offering the Dask resource ``GPU=1``. A stage that asks for a GPU then sees only its
device, and its run record names that device — model and UUID — not a label.

Devices are read from ``nvidia-smi`` (no CUDA library is imported for it), honouring
``CUDA_VISIBLE_DEVICES`` as CUDA does (indexes or UUIDs; an empty value hides them all).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    uuid: str
    name: str

    def __str__(self) -> str:
        return f"{self.name} ({self.uuid})"


def visible(env: dict | None = None) -> list[Gpu]:
    """The GPUs a process with ``env`` (default: this one's) can use; empty without a driver."""
    env = os.environ if env is None else env
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi is None:
        return []
    try:
        proc = subprocess.run([smi, "--query-gpu=index,uuid,name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    found = []
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",", 2)]
        if len(parts) == 3 and parts[0].isdigit():
            found.append(Gpu(int(parts[0]), parts[1], parts[2]))
    pinned = env.get("CUDA_VISIBLE_DEVICES")
    if pinned is None:
        return found
    chosen = []
    for item in (p.strip() for p in pinned.split(",") if p.strip()):
        match = [g for g in found if (item.isdigit() and g.index == int(item)) or g.uuid.startswith(item)]
        if not match:
            break  # CUDA stops at the first entry it cannot find
        chosen.append(match[0])
    return chosen


def describe(env: dict | None = None) -> str | None:
    """What a GPU stage ran on: the devices it could see ("model (UUID)", comma-separated), or the pin as
    given when no driver answers (a label, not a device), or None when it was given no GPU."""
    env = os.environ if env is None else env
    devices = visible(env)
    if devices:
        return ", ".join(map(str, devices))
    return env.get("CUDA_VISIBLE_DEVICES") or None
