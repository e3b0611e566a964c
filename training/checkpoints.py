"""
accelerate for the LoRA trainers (train_lora.py, distill.py): one Accelerator setup (checkpoint naming and rotation,
accumulation, the losses.csv tracker, the CPU thread count), the precision it really runs, and checkpoints through
accelerate's own state saving: save_state writes the optimizer, LR scheduler, grad scaler and RNG states into
checkpoints/checkpoint_<step> (ProjectConfiguration's automatic naming; save_checkpoint rotates the oldest away once
the new one is complete), and the hooks here put the LoRA in that folder as one diffusers-format file instead of
whole-model weights. A progress file written last marks a checkpoint complete:
a kill during a save leaves a folder that is ignored, never one that looks usable.
"""
import os
import shutil
from pathlib import Path

from core import files
from training import lora

PROGRESS_FILE = "progress.json"  # written last into a checkpoint: {step, fingerprint, settings, ...}
LOSSES_FILE = "losses.csv"  # step, epoch, loss, lr: the tracker's file in OUT_DIR


def make_accelerator(out_dir, mixed_precision, grad_accum=1, cpu_threads=0):
    """accelerate with automatic checkpoint naming (checkpoints/checkpoint_<step>: the step is set before each save),
    gradient accumulation and the loss log as its tracker. Rotation is save_checkpoint's, not accelerate's
    total_limit: that one deletes the oldest before the new checkpoint exists (a kill in between would leave none)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    from training import loss_log  # here: importing accelerate's tracker base takes seconds (--help need not)

    project = ProjectConfiguration(project_dir=str(out_dir), automatic_checkpoint_naming=True)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available(),
                              gradient_accumulation_steps=grad_accum, project_config=project,
                              log_with=[loss_log.LossCsv(Path(out_dir) / LOSSES_FILE)])
    if accelerator.device.type == "cpu":
        # set, never inherited: accelerate launch exports OMP_NUM_THREADS=1, a plain python run uses every core, and
        # the reductions' order (so the LoRA's last bits) follows the thread count
        torch.set_num_threads(cpu_threads or max(1, (os.cpu_count() or 1) // accelerator.num_processes))
    return accelerator


def precision_of(accelerator):
    """The precision accelerate really runs: it autocasts fp16 only on an accelerator (a CPU then runs fp32)."""
    return accelerator.mixed_precision if accelerator.native_amp else "no"


def weight_dtype(accelerator):
    """The frozen weights' dtype: the precision accelerate really autocasts to, else fp32."""
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision_of(accelerator), torch.float32)


def save_strip(images, path):
    """Validation images side by side (diffusers' make_image_grid), written atomically as one PNG."""
    from diffusers.utils import make_image_grid

    with files.atomic_open(path) as f:
        make_image_grid(images, rows=1, cols=len(images)).save(f, format="PNG")


def register_lora_hooks(accelerator, models, resume_hint, attention_only=True):
    """save_state writes the LoRA of `models` ({"unet": ..., "text_encoder": ...}) and load_state reads it back, every
    trained weight checked; `resume_hint` says what to do when a checkpoint's LoRA is unreadable."""
    def save(_prepared, weights, folder):
        if accelerator.is_main_process:
            lora.save_lora(folder, models, attention_only)
        weights.clear()  # accelerate writes no model file: the frozen base comes from MODEL

    def load(prepared, folder):
        prepared.clear()  # accelerate reads no model file
        lora.load_lora(Path(folder) / lora.LORA_FILE, models, made_by=f"a training checkpoint: delete {folder} to "
                       f"resume from the one before, or {resume_hint}")

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def list_checkpoints(out_dir):
    """[(step, folder)] of the complete checkpoints in out_dir, oldest first. One a killed save left without its
    progress file is ignored, and replaced when the run reaches its step again."""
    return sorted((int(p.name.split("_")[1]), p) for p in (Path(out_dir) / "checkpoints").glob("checkpoint_*")
                  if p.name.split("_")[1].isdigit() and (p / PROGRESS_FILE).is_file())


def save_checkpoint(accelerator, out_dir, step, progress, keep):
    """accelerate's save_state into checkpoints/checkpoint_<step> (the LoRA through the hook), then the progress file
    ({"step": step, **progress}), which marks it complete; only then are complete ones beyond the newest `keep`
    (0 = all kept) removed."""
    folder = Path(out_dir) / "checkpoints" / f"checkpoint_{step}"
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)  # a checkpoint of this step from an earlier, stopped try
    accelerator.wait_for_everyone()
    accelerator.project_configuration.iteration = step  # the number accelerate names the folder after
    accelerator.save_state()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files.write_json(folder / PROGRESS_FILE, {"step": step, **progress})
        for _, old in list_checkpoints(out_dir)[:-keep] if keep else []:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def is_up_to_date(out_dir, settings_file, digest):
    """out_dir holds a finished LoRA whose settings file carries this fingerprint: a rerun has nothing to do."""
    saved = files.read_json(Path(out_dir) / settings_file, {})
    return isinstance(saved, dict) and saved.get("fingerprint") == digest and (Path(out_dir) / lora.LORA_FILE).is_file()


def fingerprint(cfg, inputs, world_size, precision, left_out):
    """(settings that shape the weights, their sha256): the knobs but `left_out`, input hashes, process count (the
    batch per step), the precision really run, SMOKE."""
    import hashlib
    import json

    settings = {k: v for k, v in cfg.as_dict().items() if k not in left_out}
    settings.update(inputs, world_size=world_size, precision=precision, smoke=cfg.SMOKE)
    text = json.dumps(settings, sort_keys=True, default=list)
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()
