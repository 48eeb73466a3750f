"""Training under torchrun: DistributedDataParallel over the trainable parameters.

`torchrun --nproc_per_node=N -m minprefix tune ...` starts N processes; each joins the group
(gloo on CPU, nccl on GPUs), trains on its own shard of every batch, and DDP averages the
gradients of the trainable parameters only (a frozen base has none). Rank 0 alone writes
checkpoints and artifacts and shows progress; every rank resumes from the same checkpoint.
"""

import datetime
import os

import torch
import torch.distributed as dist


JOIN_TIMEOUT = 120  # seconds every rank waits for the others to join: a lone process with torchrun's variables


def setup(device: str) -> str:
    """Join the process group torchrun describes, if any; returns the device this rank should use."""
    size = env_int("WORLD_SIZE", "1", 1, 1 << 16)
    if size == 1 or dist.is_initialized():
        return device
    rank = env_int("RANK", None, 0, size - 1)
    local = env_int("LOCAL_RANK", str(rank), 0, size - 1)
    env_int("MASTER_PORT", None, 1, 65535)
    if not os.environ.get("MASTER_ADDR"):
        raise ValueError(f"WORLD_SIZE is {size} but MASTER_ADDR is not set: {HOW}")
    if device.startswith("cuda"):
        device = f"cuda:{local}"  # one GPU per process
        torch.cuda.set_device(device)
    try:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                timeout=datetime.timedelta(seconds=JOIN_TIMEOUT))
    except (RuntimeError, ValueError) as e:  # DistStoreError, a refused connection: both RuntimeErrors
        raise ValueError(f"rank {rank} of WORLD_SIZE {size} could not join the others at "
                         f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within {JOIN_TIMEOUT} s "
                         f"({str(e).splitlines()[0][:120]!r}): {HOW}") from None
    return device


HOW = ("start every rank with `torchrun --nproc_per_node=N -m minprefix ...`, or unset WORLD_SIZE, RANK, "
       "LOCAL_RANK, MASTER_ADDR and MASTER_PORT to run one process")


def env_int(name: str, default: str | None, low: int, high: int) -> int:
    """The integer in environment variable `name` (torchrun's), checked: a one-line error naming it."""
    text = os.environ.get(name, default)
    if text is None:
        raise ValueError(f"{name} is not set, but WORLD_SIZE is: {HOW}")
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name}={text!r} is not an integer from {low} to {high}: {HOW}")
    return int(text)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def shard(*tensors):
    """This rank's rows of a batch that every rank drew alike: rows rank, rank + world, ..."""
    return tuple(t[rank()::world()] for t in tensors)


def global_loss(loss, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """(what to backpropagate, the global batch's mean loss) from this rank's mean loss over its shard.

    DDP averages gradients over ranks; scaling each rank's mean by n_here * world / n_all makes
    that average the gradient of the mean over every scored position of the global batch,
    whatever the shards' sizes, as in a single process.
    """
    n_here = (targets != -1).sum().float()
    total = torch.stack([loss.detach() * n_here, n_here])
    dist.all_reduce(total)  # (sum of losses, scored positions) over all ranks
    return loss * n_here * world() / total[1], total[0] / total[1]
