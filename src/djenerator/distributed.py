"""Data-parallel training with PyTorch's own engine (torch.distributed + DistributedDataParallel).

``torchrun --nproc_per_node=N -m djenerator train ...`` starts N processes and :func:`setup` joins the
process group (gloo on CPU, NCCL on GPU); without torchrun's variables everything here is a no-op. Batches
and latents are pure functions of (seed, step, k) sliced per rank, so N processes train the model one
process would, and resume works with any number of them. How a step is split: docs/scaling.md.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    """Where this process stands: rank, world size, local rank (GPU index), and the device to use."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    control: object = None  # a gloo group for host-side agreement (stop flags), None in one process
    owns_group: bool = False  # setup() created the process group (and cleanup() destroys it)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str = "auto", timeout_s: float = 1800.0) -> Dist:
    """Join the process group if launched by torchrun (else return a one-process :class:`Dist`).

    ``device_name`` is ``train.device``: auto | cpu | cuda | cuda:N. Under torchrun with CUDA each process
    takes GPU ``LOCAL_RANK`` and NCCL; on CPU, gloo. Idempotent: a second call reuses the group.
    """
    from .config import ConfigError

    want_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device_name} but no CUDA GPU is available; use train.device=cpu")
    if not launched_by_torchrun():
        dev = torch.device(device_name if device_name != "auto" else ("cuda" if want_cuda else "cpu"))
        return Dist(device=dev)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} GPU(s); "
                              "use --nproc_per_node <= the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
        _cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    owns = not dist.is_initialized()
    if owns:
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device, control=control, owns_group=owns)


def _cpu_threads(local_world: int) -> None:
    """CPU processes on one node share its cores: each gets cores / processes intra-op threads.

    torchrun sets OMP_NUM_THREADS=1 when it is unset; ``DJENERATOR_THREADS`` overrides both.
    """
    n = os.environ.get("DJENERATOR_THREADS")
    if n:
        torch.set_num_threads(max(1, int(n)))
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores // max(local_world, 1)))


def cleanup(d: Dist) -> None:
    if d.enabled and d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """Seed of the process-global RNGs (dropout, noise, phase shuffle) on ``rank``; rank 0 keeps ``seed``."""
    return int(seed) if rank == 0 else int(np.random.SeedSequence([int(seed), 0x5EED, int(rank)]).generate_state(1)[0])


def local_slice(global_batch: int, d: Dist) -> slice:
    """The contiguous part of a global batch that ``d.rank`` trains on."""
    from .config import ConfigError

    if global_batch % d.world:
        raise ConfigError(f"train.batch_size={global_batch} is the global batch and must divide evenly across "
                          f"{d.world} processes; use a multiple of {d.world}")
    b = global_batch // d.world
    return slice(d.rank * b, (d.rank + 1) * b)


def global_latents(seed: int, step: int, k: int, batch: int, dim: int) -> torch.Tensor:
    """Latents of the whole global batch of (step, k) as a pure function of its arguments (CPU, float32).

    k < d_steps are the critic steps, k = d_steps the generator step. Sliced by rank with
    :func:`local_slice`, N processes see the latents one process would.
    """
    key = int(np.random.SeedSequence([int(seed), int(step), int(k), 0x1A7E]).generate_state(1)[0])
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(key))


# --- models ---------------------------------------------------------------------------------------
class DistBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch across all processes.

    For CPU (gloo), where ``nn.SyncBatchNorm`` does not run: one differentiable all-reduce of
    (sum, sum of squares, count) per forward (``torch.distributed.nn.functional.all_reduce``, whose
    backward all-reduces the gradient). Outside training or a process group it is plain BatchNorm1d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        import warnings

        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xf = x.float()
        flat = xf.transpose(0, 1).reshape(c, -1)
        n_local = torch.tensor([float(flat.shape[1])], device=x.device)
        with warnings.catch_warnings():  # deprecated in 2.13 for a private module; still PyTorch's own
            warnings.simplefilter("ignore", FutureWarning)
            stats = all_reduce(torch.cat([flat.sum(1), (flat * flat).sum(1), n_local]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp_min(1)), alpha=m)
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module, d: Dist) -> nn.Module:
    """Batch norm over the global batch: SyncBatchNorm on GPU, :class:`DistBatchNorm1d` on CPU.

    The state_dict keys are unchanged, so checkpoints load into the plain model.
    """
    if not d.enabled:
        return module
    if d.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, DistBatchNorm1d):
        out = DistBatchNorm1d(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


def wrap(module: nn.Module, d: Dist) -> nn.Module:
    """DistributedDataParallel around ``module`` (its parameters broadcast from rank 0); as is in one process."""
    if not d.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [d.device.index] if d.device.type == "cuda" else None
    # buffers: BN running stats are kept equal by the synchronised BN, STFT windows are constants
    import inspect

    # buffers are synced from rank 0 once, at wrapping; not before every forward
    sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters \
        else {"broadcast_buffers": False}
    return DDP(module, device_ids=ids, **sync)


# --- agreement and reductions ----------------------------------------------------------------------
def mean_floats(values: list[float], d: Dist) -> list[float]:
    """Average a few host floats over ranks (at log steps), so every rank sees (and checks) the same numbers."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, group=d.control)
    return (t / d.world).tolist()


def broadcast_object(obj, d: Dist):
    """``obj`` of rank 0 on every rank (a checkpoint, an error message)."""
    if not d.enabled:
        return obj
    box = [obj if d.is_main else None]
    dist.broadcast_object_list(box, src=0, group=d.control)
    return box[0]


def gather_objects(obj, d: Dist) -> list:
    """Every rank's ``obj``, in rank order, on every rank (RNG states for checkpoints)."""
    if not d.enabled:
        return [obj]
    out = [None] * d.world
    dist.all_gather_object(out, obj, group=d.control)
    return out


def agree_stop(reason: str, d: Dist, step: int, every: int) -> str:
    """Stop reasons ("", "time budget", "interrupted") agreed by all ranks, at steps divisible by ``every``.

    One process: ``reason`` as is, at any step. Several: every rank must stop at the same step, so they
    compare notes (one host-side all-reduce) only every ``every`` steps.
    """
    if not d.enabled:
        return reason
    if step % max(every, 1):
        return ""
    codes = ["", "time budget", "interrupted"]
    t = torch.tensor([float(codes.index(reason))])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=d.control)
    return codes[int(t.item())]


def rank_rng_state(ck: dict, d: Dist, seed: int) -> dict:
    """The RNG state this rank resumes with: its own saved one when the checkpoint was written by as many
    processes, else (rank > 0 with another process count) a fresh one keyed by (seed, step, rank)."""
    from .checkpoint import rng_state

    saved = ck.get("rng_ranks")
    if d.rank == 0:
        return ck["rng"]
    if saved is not None and len(saved) == d.world:
        return saved[d.rank]
    import random

    s = int(np.random.SeedSequence([int(seed), int(ck["step"]), 0x5EED, d.rank]).generate_state(1)[0])
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)
    return rng_state()


# --- performance helpers ---------------------------------------------------------------------------
class Autocast(nn.Module):
    """Runs the wrapped model under bf16 autocast (CUDA) and hands its outputs back in float32."""

    def __init__(self, module: nn.Module, device_type: str):
        super().__init__()
        self.inner = module
        self.device_type = device_type

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = self.inner(*args, **kwargs)
        return _to_float(out)


def _to_float(x):
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(_to_float(v) for v in x)
    return x


def fast_paths(module: nn.Module, d: Dist, amp: bool, compile: bool, ddp: bool = True) -> nn.Module:
    """The callable the loop uses for ``module``: compiled (``train.compile``), DDP-wrapped (several
    processes; ``ddp``), under bf16 autocast (``train.amp``, CUDA only). Parameters stay shared with ``module``."""
    m = torch.compile(module) if compile else module
    if ddp:
        m = wrap(m, d)
    if amp and d.device.type == "cuda":
        m = Autocast(m, "cuda")
    return m


class Prefetcher:
    """Makes the batches of upcoming (step, k) keys in a background thread, ``depth`` ahead.

    ``make(step, k)`` must be a pure function of its key (the loop's batches are), so prefetching
    changes no result. With ``pin`` the tensors are copied into pinned memory, so the step's
    ``.to(device, non_blocking=True)`` is a real asynchronous copy.
    """

    def __init__(self, make, keys, depth: int = 4, pin: bool = False):
        import queue
        import threading

        self.make, self.pin = make, pin
        self.q: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(iter(keys),), daemon=True, name="djenerator-prefetch")
        self.thread.start()

    def _run(self, keys) -> None:
        import queue

        for key in keys:
            try:
                item = (key, self.make(*key), None)
                if self.pin:
                    item = (key, tuple(x.pin_memory() if isinstance(x, torch.Tensor) else x for x in item[1]), None)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                item = (key, None, e)
            while not self.stop.is_set():
                try:
                    self.q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self.stop.is_set() or item[2] is not None:
                return

    def get(self, key):
        got, value, err = self.q.get()
        if err is not None:
            raise err
        if got != key:
            raise RuntimeError(f"prefetcher out of order: wanted {key}, got {got}")
        return value

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
