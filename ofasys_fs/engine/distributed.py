"""Many processes and many machines (docs/design.md §9): the process group from torchrun's environment, the few
collectives the trainer needs, the shared-save_dir check, and the data-parallel strategies
(DDP, manual all-reduce, FSDP2) behind one interface so that the training loop has one code path.

One process (no torchrun) is a world of size 1: every collective is then the identity and nothing is
wrapped. Checkpoints have one format whatever the strategy: full tensors, the optimizer state keyed by
parameter index as `torch.optim.Optimizer.state_dict()` writes it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
import secrets
import socket
import time
from typing import Any, Iterator, Mapping, Optional

import torch
import torch.distributed as dist
from torch import nn

from ..errors import CheckpointError, ConfigError, TrainingError
from ..rng import stable_hash

SHARED_CHECK_SECONDS = 3.0  # how long other ranks look for rank 0's token file (network file systems lag)
ALL_REDUCE_BUCKET = 2**24  # gradient elements per all-reduce of the no_c10d strategy


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among all training processes (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Global rank 0: the only process that writes checkpoints, logs and TensorBoard."""
        return self.rank == 0


def env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} must be an integer (torchrun sets it)") from None


def world_from_env(environ: Optional[Mapping[str, str]] = None) -> World:
    """The World torchrun describes in the environment (a single process without it)."""
    environ = os.environ if environ is None else environ
    world = World(env_int(environ, "RANK", 0), env_int(environ, "WORLD_SIZE", 1), env_int(environ, "LOCAL_RANK", 0))
    if world.world_size < 1 or not 0 <= world.rank < world.world_size:
        raise ConfigError(f"RANK={world.rank} and WORLD_SIZE={world.world_size} from the environment do not fit: "
                         f"need 0 <= RANK < WORLD_SIZE")
    return world


def is_main_process() -> bool:
    """True unless this process is a torchrun worker of global rank > 0 (for output before the Trainer starts)."""
    return world_from_env().is_main


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def place_device(device: torch.device, world: World) -> torch.device:
    """CUDA without an index means this process's GPU, cuda:LOCAL_RANK (made current for NCCL)."""
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


class RankFailure(TrainingError):
    """A collective failed on this rank: another rank died, hung for longer than distributed_timeout, or lost its
    network connection."""


# Marks of the process group's errors: gloo and NCCL raise plain RuntimeErrors, some without naming themselves.
COMMUNICATION_ERRORS = ("gloo", "NCCL", "c10d", "pair closure", "Connection closed by peer", "Connection reset by peer",
                        "Timed out waiting")


def is_communication_failure(err: BaseException) -> bool:
    """Whether `err` comes from the process group (gloo, NCCL, the rendezvous store), not from the model or data."""
    return isinstance(err, dist.DistError) or any(mark in str(err) for mark in COMMUNICATION_ERRORS)


def rank_failure(err: BaseException, world: World, timeout_s: int) -> RankFailure:
    """The one clear line for a collective that failed on this rank (the gloo/NCCL message without its source path)."""
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    reason = re.sub(r"^\[[^\]]*\]\s*", "", first)[:300]
    return RankFailure(
        f"rank {world.rank} of {world.world_size} lost contact with the other ranks ({reason}): another rank died, "
        f"hung for longer than distributed_timeout ({timeout_s} s) or lost its network; its output says which. "
        f"The same command resumes from checkpoint_last.pt"
    )


class Distributed:
    """The process group of a training run and its collectives (identities in a world of size 1).

    `start` joins the group torchrun describes (gloo on CPU, NCCL on CUDA, with the configured timeout)
    unless the caller already initialised one, which is then used and left open at `close`.
    """

    def __init__(self, world: World, device: torch.device, owns_group: bool):
        self.world, self.device, self.owns_group = world, device, owns_group

    @classmethod
    def start(cls, device: torch.device, timeout_s: int, needs_group: bool = False) -> "Distributed":
        """Join (or create, when the world is bigger than one or `needs_group`) the default process group."""
        if dist.is_available() and dist.is_initialized():
            world = World(dist.get_rank(), dist.get_world_size(), world_from_env().local_rank)
            return cls(world, place_device(device, world), owns_group=False)
        world = world_from_env()
        device = place_device(device, world)
        if world.world_size == 1 and not needs_group:
            return cls(world, device, owns_group=False)
        init_method = None if "MASTER_ADDR" in os.environ else f"tcp://127.0.0.1:{free_port()}"
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", init_method=init_method, rank=world.rank,
            world_size=world.world_size, timeout=datetime.timedelta(seconds=timeout_s),
        )
        return cls(world, device, owns_group=True)

    @property
    def active(self) -> bool:
        return dist.is_available() and dist.is_initialized() and self.world.world_size > 1

    def close(self) -> None:
        """Leave the process group when `start` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def all_gather_object(self, value: Any) -> list:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.active:
            return [value]
        gathered = [None] * self.world.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if not self.active:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather_to_main(self, value: Any) -> list:
        """Every rank's `value` on rank 0 (in rank order); other ranks get [] (for inference.evaluate's gather)."""
        if not self.active:
            return [value]
        gathered = [None] * self.world.world_size if self.world.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered if self.world.is_main else []

    def check_shared_dir(self, save_dir: str) -> None:
        """Rank 0 writes a token file into save_dir; every other rank must read it back. Raises on every rank
        when one cannot: checkpoints are written by rank 0 and read by all ranks when a run resumes."""
        if not self.active:
            return
        name = self.broadcast_object(f".ofasys_fs_shared_check_{secrets.token_hex(8)}")
        path = os.path.join(save_dir, name)
        token = f"{socket.gethostname()} {name}"
        if self.world.is_main:
            os.makedirs(save_dir, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(token)
        self.barrier()
        seen = self.world.is_main or wait_for_file(path, token, SHARED_CHECK_SECONDS)
        verdicts = self.all_gather_object((self.world.rank, socket.gethostname(), seen))
        if self.world.is_main:
            os.remove(path)
        blind = [(rank, host) for rank, host, ok in verdicts if not ok]
        if blind:
            raise CheckpointError(
                f"save_dir {save_dir!r} is not shared by all ranks: rank(s) {[rank for rank, _ in blind]} on host(s) "
                f"{sorted({host for _, host in blind})} do not see the file rank 0 (host {verdicts[0][1]}) wrote "
                f"there. Put save_dir on storage that every node mounts at the same path (rank 0 writes the "
                f"checkpoints, every rank reads checkpoint_last.pt to resume)"
            )


def wait_for_file(path: str, content: str, seconds: float) -> bool:
    """Whether `path` holds `content` within `seconds` (polling: a network file system may show it late)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with open(path, encoding="utf-8") as handle:
                if handle.read() == content:
                    return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


# ----------------------------------------------------------------------------- strategies


class Strategy:
    """How gradients meet across ranks. The base class is one process: no wrapper, no communication."""

    averages_gradients = False  # DDP and FSDP divide the summed gradients by the world size

    def __init__(self, dist_: Distributed):
        self.dist = dist_

    def describe(self) -> str:
        return "one process"

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module that training forwards go through (the model itself, a wrapper, or the model sharded)."""
        return model

    @contextlib.contextmanager
    def gradient_sync(self, sync: bool) -> Iterator[None]:
        """Around one micro-batch's forward and backward: `sync` only for the update's last one."""
        yield

    def finish_gradients(self, model: nn.Module) -> None:
        """After the update's last backward: make the gradients the same on every rank (when not done yet)."""

    def gradient_divisor(self, sample_size: float) -> float:
        """What the gradients are divided by so that they are the sum over all ranks / the total sample size."""
        return max(sample_size, 1) / (self.dist.world.world_size if self.averages_gradients else 1)

    def validation_shard(self) -> dict[str, int]:
        """The rows this rank decodes in validation, as inference.evaluate's rank/world_size (the model
        is not wrapped there, so ranks may decode different numbers of rows)."""
        return {"rank": self.dist.world.rank, "world_size": self.dist.world.world_size}

    def model_state(self, model: nn.Module) -> dict:
        """The model's full state dict (a collective with FSDP: call on every rank)."""
        return model.state_dict()

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """The optimizer's state dict with full tensors (a collective with FSDP: call on every rank)."""
        return optimizer.state_dict()

    def local_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict) -> dict:
        """A checkpoint's optimizer state made loadable into this rank's optimizer."""
        return state


class DDPStrategy(Strategy):
    """torch DistributedDataParallel (`ddp_backend: c10d`): gradients averaged in buckets during backward."""

    averages_gradients = True

    def __init__(self, dist_: Distributed, find_unused_parameters: bool):
        super().__init__(dist_)
        self.find_unused_parameters = find_unused_parameters
        self.wrapper: Optional[nn.parallel.DistributedDataParallel] = None

    def describe(self) -> str:
        return (f"DDP (c10d) over {self.dist.world.world_size} ranks, find_unused_parameters "
                f"{self.find_unused_parameters}")

    def wrap(self, model: nn.Module) -> nn.Module:
        device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
        self.wrapper = nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=self.find_unused_parameters,
        )
        return self.wrapper

    @contextlib.contextmanager
    def gradient_sync(self, sync: bool) -> Iterator[None]:
        with (contextlib.nullcontext() if sync else self.wrapper.no_sync()):
            try:
                yield
            except RuntimeError as err:
                if "finished reduction in the prior iteration" not in str(err):
                    raise
                raise RuntimeError(
                    "DDP: some parameters got no gradient in an update (a task does not use every adaptor?), but "
                    "find_unused_parameters is off; set distributed.find_unused_parameters=true "
                    "(--find-unused-parameters) or ddp_backend=no_c10d"
                ) from err


class AllReduceStrategy(Strategy):
    """`ddp_backend: no_c10d`: no wrapper; after the last backward, the gradients are summed over the ranks
    in a few flat all-reduces. A parameter without a gradient on every rank keeps none (as in one process)."""

    def describe(self) -> str:
        return f"{self.dist.world.world_size} ranks, gradients all-reduced after the backward passes (no_c10d)"

    def finish_gradients(self, model: nn.Module) -> None:
        if not self.dist.active:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        for bucket in parameter_buckets(params, ALL_REDUCE_BUCKET):
            all_reduce_bucket(bucket)


def parameter_buckets(params: list, max_elements: int) -> list[list]:
    """Consecutive groups of parameters of one dtype and device, each at most max_elements (or one parameter)."""
    buckets, current, size = [], [], 0
    for param in params:
        if current and (size + param.numel() > max_elements or param.dtype != current[0].dtype
                        or param.device != current[0].device):
            buckets.append(current)
            current, size = [], 0
        current.append(param)
        size += param.numel()
    return buckets + ([current] if current else [])


def all_reduce_bucket(params: list) -> None:
    """Sum the gradients of `params` over all ranks in one flat tensor, with a used-flag per parameter."""
    flat = torch.cat([
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params
    ] + [torch.tensor([float(p.grad is not None) for p in params], dtype=params[0].dtype, device=params[0].device)])
    dist.all_reduce(flat)
    offset = 0
    used = flat[-len(params):].tolist()
    for param, ranks_using in zip(params, used):
        values = flat[offset:offset + param.numel()].view_as(param)
        offset += param.numel()
        if ranks_using > 0:
            if param.grad is None:
                param.grad = values.clone()
            else:
                param.grad.copy_(values)


class FullyShardedStrategy(Strategy):
    """FSDP2 (`ddp_backend: fully_sharded`): torch.distributed.fsdp.fully_shard on every encoder and decoder
    layer and on the whole model; parameters, gradients and optimizer state are sharded over the ranks.

    Sharded forwards are collectives, so validation decodes every row on every rank (lockstep).
    """

    averages_gradients = True

    def __init__(self, dist_: Distributed):
        super().__init__(dist_)
        self.root: Optional[nn.Module] = None

    def describe(self) -> str:
        return f"FSDP2 (fully_sharded) over {self.dist.world.world_size} ranks"

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import fully_shard

        with torch.no_grad():  # a model passed to fit may have been initialised differently on each rank
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, src=0)
        for stack in (model.encoder.layers, model.decoder.layers, model.decoder.continuous_layers or ()):
            for layer in stack:
                fully_shard(layer)
        fully_shard(model)
        self.root = model
        return model

    @contextlib.contextmanager
    def gradient_sync(self, sync: bool) -> Iterator[None]:
        self.root.set_requires_gradient_sync(sync)
        yield

    def validation_shard(self) -> dict[str, int]:
        return {"rank": 0, "world_size": 1}  # every rank decodes every row, in lockstep

    def model_state(self, model: nn.Module) -> dict:
        return full_tensors(model.state_dict(), keep=self.dist.world.is_main)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        return full_tensors(optimizer.state_dict(), keep=self.dist.world.is_main)

    def local_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict) -> dict:
        from torch.distributed.tensor import DTensor, distribute_tensor

        params = [param for group in optimizer.param_groups for param in group["params"]]
        local = {}
        for index, values in state["state"].items():
            param = params[int(index)] if int(index) < len(params) else None  # else load_state_dict explains
            if isinstance(param, DTensor):
                values = {key: distribute_tensor(value.to(param.device), param.device_mesh, param.placements,
                                                 src_data_rank=None)
                          if isinstance(value, torch.Tensor) and value.shape == param.shape else value
                          for key, value in values.items()}
            local[index] = values
        return {**state, "state": local}


def full_tensors(value: Any, keep: bool = True, cache: Optional[dict] = None) -> Any:
    """`value` with every DTensor replaced by its full tensor on the CPU (tied tensors gathered once). Every
    rank must call it (each gather is a collective); with keep=False (ranks that write nothing) the gathered
    tensors are dropped at once and None stands in their place."""
    from torch.distributed.tensor import DTensor

    cache = {} if cache is None else cache
    if isinstance(value, DTensor):
        if id(value) not in cache:
            full = value.full_tensor()
            cache[id(value)] = full.cpu() if keep else None
        return cache[id(value)]
    if isinstance(value, dict):
        return type(value)((key, full_tensors(item, keep, cache)) for key, item in value.items())
    if isinstance(value, list):
        return [full_tensors(item, keep, cache) for item in value]
    return value


def check_backend(backend: str, fp16: bool, ema_decay: Optional[float]) -> None:
    """Refuse the combinations that ddp_backend does not support (yet)."""
    if backend == "fully_sharded" and (fp16 or ema_decay):
        raise ConfigError("ddp_backend fully_sharded does not support fp16 or ema_decay yet; use bf16, or "
                         "ddp_backend c10d (docs/distributed.md)")


def make_strategy(dist_: Distributed, backend: str, find_unused_parameters: bool) -> Strategy:
    """The strategy of `distributed.ddp_backend` (one process: always the plain one, except FSDP2)."""
    if backend == "fully_sharded":
        return FullyShardedStrategy(dist_)
    if dist_.world.world_size == 1:
        return Strategy(dist_)
    if backend == "no_c10d":
        return AllReduceStrategy(dist_)
    return DDPStrategy(dist_, find_unused_parameters)



def rank_seed(seed: int, rank: int, *salt: Any) -> int:
    """The torch seed of one rank's model randomness (dropout, drop-path): distinct per rank, reproducible."""
    return stable_hash(seed, "model-rng", rank, *salt) % 2**63


Output = tuple  # (task, sample size, logging output or None for a dummy batch, rows of a non-finite loss or None)


def merge_rank_outputs(per_rank: list[list[Output]]) -> tuple[float, list[tuple[str, dict]], str]:
    """Every rank's micro-batch outputs of one update (same tasks in the same order on every rank) ->
    (total sample size, per micro-batch the logging outputs summed over the ranks, which batches had a
    non-finite loss: "" when none)."""
    sample_size = sum(size for outputs in per_rank for _, size, _, _ in outputs)
    logs = []
    for position, (task, _, _, _) in enumerate(per_rank[0]):
        summed: dict = {}
        for outputs in per_rank:
            for key, value in (outputs[position][2] or {}).items():
                summed[key] = summed.get(key, 0) + value
        logs.append((task, summed))
    where = (lambda rank: f" on rank {rank}") if len(per_rank) > 1 else (lambda rank: "")
    non_finite = "; ".join(f"task {task!r}, rows {rows}{where(rank)}" for rank, outputs in enumerate(per_rank)
                           for task, _, _, rows in outputs if rows is not None)
    return sample_size, logs, non_finite
