"""Where training runs: the `--device` / `device:` choice, mixed precision and batches assembled in worker processes.

Why one home: `srprune train`, pruning fine-tuning, the supernet and the pipeline's fine-tuning all train through
srcommon.training.TrainLoop, and each must accept the same words, pick CUDA the same way and refuse the same
impossible choices in one line. Why in srcommon: supernet must not import srprune.

- `resolve_device("auto" | "cpu" | "cuda" | "cuda:N" | "mps")`: auto picks CUDA when present, else the CPU
  (never MPS: several of our ops fall back to the CPU there; ask for it by name). Under torchrun, "cuda"/"auto"
  mean this process's GPU, cuda:LOCAL_RANK.
- `check_amp(device, amp)`: "off" everywhere; "bf16" on CUDA, MPS and the CPU (CPU autocast supports bf16);
  "fp16" on CUDA and MPS only (the CPU has no fast fp16 path, and fp16 needs loss scaling).
- `BatchPrefetcher(sampler, workers)`: the batches of a sampler that separates drawing (`draw()`: the
  seeded random choices, cheap) from assembling (`assemble(specs)`: cutting and flipping patches, the costly
  part) assembled by a torch DataLoader's worker processes, in order; `state_dict()` is the state after the last
  batch handed out, so a resumed run gets exactly the batches an uninterrupted one gets, with or without workers.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import os
from typing import Any, Iterator

from dataclasses import dataclass

import torch

from srcommon.errors import DeviceError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
AMP_CHOICES = ("off", "bf16", "fp16")


def resolve_device(spec: str | None) -> torch.device:
    """The torch device of a `--device` value; DeviceError naming what is available when it is not."""
    text = "auto" if spec is None else str(spec).strip().lower()
    cuda = torch.cuda.is_available()
    local = os.environ.get("LOCAL_RANK")
    if text == "auto":
        text = "cuda" if cuda else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DeviceError(f"device mps is not available here (available: {available()})")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text[5:] if text.startswith("cuda:") else (local or "0")
        if not index_text.isdigit():
            raise DeviceError(f"device {spec!r}: expected one of {DEVICE_CHOICES}")
        if not cuda:
            raise DeviceError(f"device {spec} is not available: this torch sees no CUDA GPU "
                              f"(torch {torch.__version__}; available: {available()})")
        index = int(index_text)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device cuda:{index} is not available: {torch.cuda.device_count()} CUDA GPU(s) here")
        return torch.device("cuda", index)
    raise DeviceError(f"device {spec!r}: expected one of {DEVICE_CHOICES}")


def available() -> str:
    """The devices this process could train on, for messages."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        names.append("mps")
    return ", ".join(names)


def check_amp(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype of `amp` on `device` (None: off); DeviceError for a combination that cannot work."""
    if amp not in AMP_CHOICES:
        raise DeviceError(f"amp {amp!r}: expected one of {', '.join(AMP_CHOICES)}")
    if amp == "off":
        return None
    if amp == "fp16" and device.type == "cpu":
        raise DeviceError("amp fp16 needs a GPU (cuda or mps); on the CPU use --amp bf16 or off")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for `dtype`, or nothing when mixed precision is off."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass(frozen=True)
class Placement:
    """Where and how a training runs (`--device`, `--amp`, `--workers`; a run config's device, amp, data_workers).
    Not part of any checkpoint's configuration: a run may resume on another device."""

    device: str = "auto"
    amp: str = "off"
    workers: int = 0

    def check(self) -> "Placement":
        """DeviceError (one line at the CLI) for a device this machine lacks or an impossible precision."""
        check_amp(resolve_device(self.device), self.amp)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise DeviceError(f"workers must be an integer >= 0, got {self.workers!r}")
        return self

    def batches(self, sampler: Any) -> "BatchPrefetcher":
        """The sampler's batches, assembled by `workers` processes (pinned memory when training on CUDA)."""
        return BatchPrefetcher(sampler, self.workers, pin_memory=resolve_device(self.device).type == "cuda")


class _Assemble(torch.utils.data.Dataset):
    """Indexed by a batch's specs: what a worker process runs."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def __getitem__(self, specs: Any) -> Any:
        return self.sampler.assemble(specs)

    def __len__(self) -> int:  # never asked for with an explicit sampler; a Dataset must have one for some tools
        return 2**62


class _Draws(torch.utils.data.Sampler):
    """The specs of the next batches, drawn in the main process; records the sampler state after each draw."""

    def __init__(self, owner: BatchPrefetcher) -> None:
        self.owner = owner

    def __iter__(self) -> Iterator[Any]:
        while True:
            specs = self.owner.sampler.draw()
            self.owner._pending.append(copy.deepcopy(self.owner.sampler.state_dict()))
            yield specs


class BatchPrefetcher:
    """Batches of `sampler` (draw/assemble/state_dict/load_state_dict) assembled by `workers` processes, in order.

    With workers = 0 it is the sampler itself, batch for batch (the workers only move the assembling).
    """

    def __init__(self, sampler: Any, workers: int, pin_memory: bool = False, prefetch: int = 4) -> None:
        if workers < 0:
            raise DeviceError(f"workers must be >= 0, got {workers}")
        self.sampler, self.workers, self.pin_memory, self.prefetch = sampler, int(workers), pin_memory, prefetch
        self._pending: collections.deque = collections.deque()
        self._state: dict | None = None  # the state after the last batch handed out (None: the sampler's own)
        self._it: Iterator | None = None

    def _loader(self) -> Iterator[Any]:
        loader = torch.utils.data.DataLoader(
            _Assemble(self.sampler), sampler=_Draws(self), batch_size=None, num_workers=self.workers,
            pin_memory=self.pin_memory, prefetch_factor=self.prefetch, persistent_workers=False)
        return iter(loader)

    def __iter__(self) -> BatchPrefetcher:
        return self

    def __next__(self) -> Any:
        if self.workers == 0:
            return next(self.sampler)
        if self._it is None:
            self._it = self._loader()
        batch = next(self._it)
        self._state = self._pending.popleft()
        return batch

    def state_dict(self) -> dict:
        """The sampler's state after the last batch handed out (not after the ones prefetched)."""
        if self.workers == 0 or self._state is None:
            return self.sampler.state_dict()
        return copy.deepcopy(self._state)

    def load_state_dict(self, state: dict) -> None:
        """Resume: drop what was prefetched and continue from `state`."""
        self.close()
        self.sampler.load_state_dict(state)
        self._state = None

    def close(self) -> None:
        """Stop the worker processes (a new iteration starts them again)."""
        self._it = None  # the DataLoader iterator's finaliser shuts its workers down
        self._pending.clear()
