"""Training on several GPUs (or CPU processes) with PyTorch's DistributedDataParallel.

Start one process per device with ``torchrun``::

    torchrun --nproc_per_node 2 -m facelab train --model sae ...

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`from_env`
reads them, joins the process group (NCCL between CUDA devices, Gloo on CPU)
and picks ``cuda:<LOCAL_RANK>``. Each process draws its own batches (the
effective batch is ``batch_size x processes``); DDP averages the gradients, so
every process holds the same weights after each step. Only the first process
logs, writes previews and saves; its clock decides when, and :meth:`Dist.agree`
hands the decision to the others every iteration.
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as torch_dist

from facelab.errors import SettingsError

_STOPS = (None, "iterations", "minutes")


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device
    # the tensors of the last few collectives, for :meth:`settle`
    _recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=8), repr=False, compare=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, stop: str | None, preview: bool, save: bool) -> tuple[str | None, bool, bool]:
        """The first process's ``(stop, preview, save)`` decision, on every process."""
        flags = torch.tensor([_STOPS.index(stop), int(preview), int(save)], dtype=torch.int64, device=self._comm_device)
        torch_dist.broadcast(flags, 0)
        self._recent.append(flags)
        s, p, v = flags.tolist()
        return _STOPS[s], bool(p), bool(v)

    @property
    def _comm_device(self) -> torch.device:
        return self.device if torch_dist.get_backend() == "nccl" else torch.device("cpu")

    def average_(self, module: torch.nn.Module) -> None:
        """Average a module's parameters over the processes (for parts DDP does not wrap: discriminators)."""
        for p in module.parameters():
            buf = p.data.to(self._comm_device)
            torch_dist.all_reduce(buf)
            self._recent.append(buf)
            p.data.copy_(buf.div_(self.world))

    def same_weights(self, module: torch.nn.Module) -> bool:
        """Whether every process holds the same weights (a sum over all parameters, compared by min and max)."""
        total = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().to(self._comm_device)
        lo, hi = total.clone(), total.clone()
        torch_dist.all_reduce(lo, torch_dist.ReduceOp.MIN)
        torch_dist.all_reduce(hi, torch_dist.ReduceOp.MAX)
        self._recent.extend((lo, hi))
        return bool(torch.isclose(lo, hi, rtol=1e-9, atol=1e-9))

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait (at most ``timeout`` seconds) until the backend's threads have let go of the tensors of the
        last collectives; whether they have.

        A Gloo worker thread drops a finished collective's tensors only after the caller's ``wait`` has
        returned, and dropping a tensor Python also holds takes the GIL. A process that exits right after its
        last collective can reach interpreter shutdown first: the worker is then killed inside a destructor
        and the process aborts ("terminate called without an active exception", SIGABRT), which fails the
        ``torchrun`` after the model was saved (3 of 28 runs of a 4-iteration run, none of 60 with this). Sleeping
        hands the GIL to the worker; a tensor's C++ use count falls back to 1 (Python's own) once it is
        dropped."""
        deadline = time.monotonic() + timeout
        while any(t._use_count() > 1 for t in self._recent):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        self._recent.clear()
        return True


def from_env(device: str = "auto") -> Dist | None:
    """Join the process group torchrun describes in the environment; None when not started that way
    (or with a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() > 0
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise SettingsError(f"process {local} has no GPU of its own ({torch.cuda.device_count()} visible)",
                                "start at most one process per GPU: torchrun --nproc_per_node <number of GPUs>")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, dev)


def wrap(module: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    """``module`` as DDP over the processes of ``dist`` (every model uses all its parameters in each step,
    so DDP need not search for unused ones)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=False)


def close(dist: Dist | None) -> None:
    """Leave the process group (after :meth:`Dist.settle`, so that the process can exit cleanly)."""
    if dist is not None and torch_dist.is_initialized():
        dist.settle()
        torch_dist.destroy_process_group()
