"""
Checkpoints of the LoRA trainers (train_lora.py, distill.py) through accelerate's own state saving: save_state writes
the optimizer, LR scheduler, grad scaler and RNG states into checkpoints/checkpoint_<step> (ProjectConfiguration's
automatic naming, its total_limit rotating the oldest away), and the hooks here put the LoRA in that folder as one
diffusers-format file instead of whole-model weights. A progress file written last marks a checkpoint complete:
a kill during a save leaves a folder that is ignored, never one that looks usable.
"""
import functools
import shutil
from pathlib import Path

from core import files
from training import lora

PROGRESS_FILE = "progress.json"  # written last into a checkpoint: {step, fingerprint, settings, ...}


def register_lora_hooks(accelerator, models, resume_hint, attention_only=True):
    """save_state writes the LoRA of `models` ({"unet": ..., "text_encoder": ...}) and load_state reads it back, every
    trained weight checked; `resume_hint` says what to do when a checkpoint's LoRA is unreadable."""
    accelerator.register_save_state_pre_hook(functools.partial(_save_lora, models, accelerator.is_main_process,
                                                               attention_only))
    accelerator.register_load_state_pre_hook(functools.partial(_load_lora, models, resume_hint))


def _save_lora(models, main_process, attention_only, _prepared, weights, folder):
    if main_process:
        lora.save_lora(folder, models, attention_only)
    weights.clear()  # accelerate writes no model file: the frozen base comes from MODEL


def _load_lora(models, resume_hint, prepared, folder):
    prepared.clear()  # accelerate reads no model file
    lora.load_lora(Path(folder) / lora.LORA_FILE, models,
                   made_by=f"a training checkpoint: delete {folder} to resume from the one before, or {resume_hint}")


def list_checkpoints(out_dir):
    """[(step, folder)] of the complete checkpoints in out_dir, oldest first. One a killed save left without its
    progress file is ignored, and replaced when the run reaches its step again."""
    found = [(int(p.name.split("_")[1]), p) for p in (Path(out_dir) / "checkpoints").glob("checkpoint_*")
             if p.name.split("_")[1].isdigit() and (p / PROGRESS_FILE).is_file()]
    return sorted(found)


def save_checkpoint(accelerator, out_dir, step, progress):
    """accelerate's save_state into checkpoints/checkpoint_<step> (it drops the oldest beyond total_limit; the LoRA
    goes through the hook), then the progress file ({"step": step, **progress}), which marks it complete."""
    folder = Path(out_dir) / "checkpoints" / f"checkpoint_{step}"
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)  # a checkpoint of this step from an earlier, stopped try
    accelerator.wait_for_everyone()
    accelerator.project_configuration.iteration = step  # the number accelerate names the folder after
    accelerator.save_state()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files.write_json(folder / PROGRESS_FILE, {"step": step, **progress})
    return folder
