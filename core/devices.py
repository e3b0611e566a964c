"""
Devices and models: the device and dtype to run on, a model knob taken as a local folder or a hub id and loaded with a
one-line error (the SMOKE stand-ins are model_loading.py's, above core), and the processes of `accelerate launch`
(each takes every world-th row).
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
    """fp16/bf16 on CUDA as asked (bf16 falls back to fp16 where unsupported); always fp32 on the CPU."""
    import torch

    if prefer not in ("fp16", "bf16", "fp32"):
        raise InputError(f"DTYPE must be fp16, bf16 or fp32, got {prefer!r}")
    if str(device).startswith("cpu"):
        return torch.float32
    if prefer == "bf16":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if prefer == "fp16" else torch.float32


def local_or_hub(name):
    """A model knob as it is: a local folder, or a hub id ("org/name"); anything path-like that is not a folder is a
    user error. Offline (HF_HUB_OFFLINE=1) a hub id that is not in the local cache fails later with the library's own
    error, which `call_loader` turns into a line naming the knob's value."""
    expanded = os.path.expanduser(str(name))
    if os.path.isdir(expanded):
        return expanded
    if expanded.startswith((".", "/")) or expanded.count("/") > 1 or os.path.exists(expanded):
        raise InputError(f"model folder not found: {name}")
    return str(name)


def call_loader(loader, path, name=None, quiet=False, **kwargs):
    """`loader(path, **kwargs)` (e.g. SomeModel.from_pretrained), with one clear line naming the model knob `name`
    when the model can't be had; `quiet`: no library progress bars or info logs (a tiny model's say nothing)."""
    from core.progress import quiet_libraries

    try:
        with quiet_libraries(quiet):
            return loader(path, **kwargs)
    except (OSError, ValueError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1: only local folders and cached hub models work)" if offline else ""
        raise InputError(f"cannot load model {name or path!r}{hint}: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def process_info():
    """(rank, world_size, device) under `accelerate launch`, or (0, 1, pick_device()) in a plain run."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "LOCAL_RANK" in os.environ:
        state = _partial_state()
        return state.process_index, state.num_processes, str(state.device)
    return 0, 1, pick_device()


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
