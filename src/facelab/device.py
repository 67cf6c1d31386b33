"""Choosing the torch device: the best GPU by default, or the one the user names; and how many CPU threads."""

from __future__ import annotations

import os

import torch

from facelab.errors import SettingsError


def resolve_device(device: str) -> torch.device:
    """``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` -> an available ``torch.device``; else SettingsError."""
    hint = "use auto, cpu, cuda, cuda:N or mps"
    d = str(device).strip().lower()
    if d == "auto":
        if torch.cuda.is_available() and torch.cuda.device_count():
            best = max(range(torch.cuda.device_count()), key=lambda i: torch.cuda.get_device_properties(i).total_memory)
            return torch.device("cuda", best)
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if d == "cpu":
        return torch.device("cpu")
    if d == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SettingsError("device: mps (Apple GPU) is not available here", "use auto, cpu or cuda")
        return torch.device("mps")
    if d == "cuda" or d.startswith("cuda:"):
        index = 0
        if d.startswith("cuda:"):
            try:
                index = int(d[5:])
            except ValueError:
                raise SettingsError(f"device: {device!r} is not a device", hint) from None
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index < 0 or index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise SettingsError(f"device: {device!r} is not available ({have})", "use auto or cpu" if not count else f"use cuda:0..cuda:{count - 1}")
        return torch.device("cuda", index)
    raise SettingsError(f"device: unknown device {device!r}", hint)


def cpu_threads(share: int = 1) -> int:
    """Threads for torch on the CPU: ``OMP_NUM_THREADS`` where it is set (a machine shared with other jobs, test
    workers side by side; a count per process, as torchrun sets it), else the cores this process may run on,
    divided among ``share`` processes (distributed training on one machine)."""
    try:
        given = int(os.environ.get("OMP_NUM_THREADS") or 0)
    except ValueError:
        given = 0
    if given > 0:
        return given
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, share))
