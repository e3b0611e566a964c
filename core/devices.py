"""
Devices: the device and dtype to run on, and the processes of `accelerate launch` (each takes every world-th row).
A model knob becomes a folder or hub id in models.py, above this layer.
"""
import os

from core.knobs import InputError


def pick_device(prefer="auto"):
    """'cuda' when a GPU is there (or accelerate's process device), else 'cpu'; `prefer` forces one."""
    import torch

    if prefer and prefer != "auto":
        return prefer
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device, prefer="fp16"):
    """fp16/bf16 on CUDA as asked (bf16 falls back to fp16 where unsupported); fp32 on the CPU. A torch dtype is taken
    as is on any device: the stages' loaders pass it through, so tests run the half-precision paths on the CPU."""
    import torch

    if isinstance(prefer, torch.dtype):
        return prefer
    if prefer not in ("fp16", "bf16", "fp32"):
        raise InputError(f"DTYPE must be fp16, bf16 or fp32, got {prefer!r}")
    if str(device).startswith("cpu"):
        return torch.float32
    if prefer == "bf16":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if prefer == "fp16" else torch.float32


def process_info(prefer="auto"):
    """(rank, world_size, device) under `accelerate launch` (its process's device), or (0, 1, pick_device(prefer)) in
    a plain run."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "LOCAL_RANK" in os.environ:
        state = _partial_state()
        return state.process_index, state.num_processes, str(state.device)
    return 0, 1, pick_device(prefer)


def shard(items, rank, world_size):
    """This process's share of `items`: every world_size-th one from rank, so shards interleave and balance."""
    return items[rank::world_size]


def wait_for_everyone():
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _partial_state().wait_for_everyone()


def _partial_state():
    # accelerate starts a CPU process group (gloo) only when asked with cpu=True: without it a CPU run under
    # torchrun would report a single process and every rank would do all the work
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
