"""Training under torchrun: DistributedDataParallel over the trainable parameters.

`torchrun --nproc_per_node=N -m minprefix tune ...` starts N processes; each joins the group
(gloo on CPU, nccl on GPUs), trains on its own shard of every batch, and DDP averages the
gradients of the trainable parameters only (a frozen base has none). Rank 0 alone writes
checkpoints and artifacts and shows progress; every rank resumes from the same checkpoint.
"""

import os

import torch
import torch.distributed as dist


def setup(device: str) -> str:
    """Join the process group torchrun describes, if any; returns the device this rank should use."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or dist.is_initialized():
        return device
    if device.startswith("cuda"):
        device = f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per process
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


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
