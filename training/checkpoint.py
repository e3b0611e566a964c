"""
Checkpoints that resume exactly: the LoRA weights (safetensors, by parameter name), the optimizer, LR scheduler and
fp16 grad-scaler states, step and epoch (torch.save, read back with weights_only=True), and every process's RNG states.

diffusers' train_text_to_image_lora.py resumed through accelerate's save_state hooks and silently dropped the trained
LoRA weights (diffusers issue 12689). Here loading checks that the checkpoint holds exactly the trainable parameters of
the model, by name and shape, and copies every one of them, or stops with one line.

    <OUT_DIR>/checkpoints/step_000500/  lora.safetensors  state.pt  rng_rank0.pt ...
A checkpoint is written under a hidden name and renamed when complete, so a kill never leaves one that looks usable.
"""
import random
import re
import shutil
from pathlib import Path

from core.knobs import InputError

PATTERN = re.compile(r"^step_(\d{6,})$")


def trainable(models):
    """{"unet.<param>": tensor} of the parameters being trained, in a stable order."""
    return {f"{prefix}.{name}": p for prefix, model in models.items() if model is not None
            for name, p in model.named_parameters() if p.requires_grad}


def rng_state():
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    import numpy as np
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(out_dir):
    """[(step, folder)] of the complete checkpoints in out_dir, oldest first."""
    root = Path(out_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in root.glob("step_*") if (m := PATTERN.match(p.name)) and p.is_dir()
             and (p / "state.pt").is_file()]
    return sorted(found)


def save(accelerator, out_dir, models, optimizer, lr_scheduler, state, keep):
    """Every process calls this; rank 0 writes the shared files, each rank its RNG state. Keeps the newest `keep`."""
    import torch
    from safetensors.torch import save_file

    root = Path(out_dir) / "checkpoints"
    final = root / f"step_{state['step']:06d}"
    partial = root / f".{final.name}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), partial / f"rng_rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        save_file({k: v.detach().float().contiguous().cpu() for k, v in trainable(models).items()},
                  partial / "lora.safetensors")
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        torch.save({**state, "optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
                    "scaler": scaler}, partial / "state.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)  # a checkpoint of this step from an earlier, stopped try
        partial.rename(final)
        for _, old in list_checkpoints(out_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_state(folder):
    import torch

    try:
        return torch.load(Path(folder) / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"{folder}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def load(folder, accelerator, models, optimizer, lr_scheduler):
    """Restore everything `save` wrote into the live objects; returns the state dict (step, epoch, ...)."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    state = read_state(folder)
    weights = load_file(folder / "lora.safetensors")
    params = trainable(models)
    missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
    if missing or extra:
        raise InputError(f"{folder}: LoRA weights do not match the model (missing {missing[:3]}, unexpected "
                         f"{extra[:3]}): was it made with other LORA_RANK / TRAIN_TEXT_ENCODER / MODEL?")
    with torch.no_grad():
        for name, p in params.items():
            if weights[name].shape != p.shape:
                raise InputError(f"{folder}: {name} has shape {tuple(weights[name].shape)}, the model {tuple(p.shape)}")
            p.copy_(weights[name].to(p.dtype))
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    if accelerator.scaler is not None and state.get("scaler"):
        accelerator.scaler.load_state_dict(state["scaler"])
    rng_file = folder / f"rng_rank{accelerator.process_index}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=True))
    return state
