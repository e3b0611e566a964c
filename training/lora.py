"""
The LoRA itself and the training loss, shared by the trainer (train_lora.py), its benchmark and Method 2's generation:
peft LoRA on the UNet attention projections (and optionally the text encoder's), the denoising loss for epsilon and
v-prediction targets, the LoRA file in diffusers' format (written, read with one line on a bad file, and copied back
into the live adapters on a resume), and the noise schedule a LoRA was trained with.
"""
from pathlib import Path

from core import files
from core.knobs import InputError

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' default name: pipe.load_lora_weights(folder) finds it
SETTINGS_FILE = "train_settings.json"  # beside it: knobs, input hashes, fingerprint, noise schedule
MADE_BY = "the training stage: rerun bash run/train_sd.sh"  # what read_lora_file says makes a LoRA file
# NOISE_SCHEDULE -> the scheduler config it sets; "model" keeps the base model's (SD 2.1: no rescale, leading steps)
NOISE_SCHEDULES = {"zero_snr_trailing": {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"},
                   "model": {}}


def add_lora(unet, text_encoder, rank, targets=UNET_TARGETS):
    """peft LoRA (gaussian A, zero B: the model starts as the base) on the UNet's `targets` layers (the attention
    projections) and, when text_encoder is given, on its attention projections. Trainable weights are fp32 whatever
    the base dtype."""
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig, inject_adapter_in_model

    lora_args = dict(r=rank, lora_alpha=rank, init_lora_weights="gaussian")
    unet.add_adapter(LoraConfig(**lora_args, target_modules=list(targets)))
    models = {"unet": unet}
    if text_encoder is not None:
        # peft directly: transformers' add_adapter insists on peft >= 0.22, the pinned peft is 0.21
        inject_adapter_in_model(LoraConfig(**lora_args, target_modules=TEXT_TARGETS), text_encoder)
        models["text_encoder"] = text_encoder
    cast_training_params(list(models.values()))
    return models


def trainable(models):
    """{"unet.<param>": tensor} of the parameters being trained, in a stable order."""
    return {f"{prefix}.{name}": p for prefix, model in models.items()
            for name, p in model.named_parameters() if p.requires_grad}


def checkpoint_activations(models):
    """Gradient checkpointing on the models being trained: less memory, about half the speed."""
    models["unet"].enable_gradient_checkpointing()
    if "text_encoder" in models:  # transformers 5's name (gradient_checkpointing_enable is its deprecated alias)
        models["text_encoder"].activation_checkpointing_enable()


def compile_models(unet, vae=None):
    """torch.compile the UNet (and the VAE encoder when given) in place: the modules keep their parameter names, so
    checkpoints, the LoRA file and the validation pipeline see the same objects. The first steps compile (minutes at
    the real size); the later ones run faster. The text encoder is left eager: it is a few percent of a step."""
    unet.compile()
    if vae is not None:
        vae.encoder.compile()


# ----------------------------------------------------------------------------------------------------------------------
# the LoRA file


def save_lora(folder, models, attention_only=True):
    """The LoRA in diffusers' format (StableDiffusionPipeline.save_lora_weights), written atomically with the mode of
    every other output (safetensors alone writes 0600): pipe.load_lora_weights(folder) reads it. A LoRA on more than
    the attention projections (the consistency LoRA, attention_only=False) keeps peft's key names: diffusers'
    conversion renames only the attention keys, and a file of mixed names loads without its attention layers."""
    import tempfile

    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    convert = convert_state_dict_to_diffusers if attention_only else dict
    layers = {f"{name}_lora_layers": convert(get_peft_model_state_dict(model)) for name, model in models.items()}
    Path(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".lora.") as tmp:
        StableDiffusionPipeline.save_lora_weights(tmp, **layers, weight_name=LORA_FILE)
        files.atomic_write(Path(folder) / LORA_FILE, (Path(tmp) / LORA_FILE).read_bytes())
    return Path(folder) / LORA_FILE


def read_lora_file(path, made_by=MADE_BY):
    """{key: tensor} of a LoRA file in diffusers' format (what pipe.load_lora_weights also takes), or one line naming
    the file and the stage that makes it when it is missing, truncated or not safetensors."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"LoRA not found: {path} (made by {made_by})")
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error for a truncated header, OSError for I/O
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: unreadable LoRA file ({reason}); made by {made_by}") from None


def load_lora(path, models, made_by=MADE_BY):
    """Copy a LoRA file into the live peft adapters of `models` (a resume). Every trained weight must be in the file
    with its shape and nothing else: diffusers issue 12689 resumed with the LoRA silently dropped."""
    from diffusers.training_utils import cast_training_params
    from diffusers.utils import convert_state_dict_to_peft, convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict

    weights = read_lora_file(path, made_by)
    for name, model in models.items():
        part = {k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")}
        convert = convert_unet_state_dict_to_peft if name == "unet" else convert_state_dict_to_peft
        try:
            result = set_peft_model_state_dict(model, convert(part) if part else {}, adapter_name="default")
        except (RuntimeError, ValueError) as e:  # a shape that differs
            raise InputError(f"{path}: does not fit the {name} ({str(e).splitlines()[0][:200]}): was it made with "
                             f"other LORA_RANK / MODEL?") from None
        missing = [k for k in result.missing_keys if ".lora_" in k]
        if missing or result.unexpected_keys:
            raise InputError(f"{path}: LoRA weights do not match the {name} (missing {missing[:2]}, unexpected "
                             f"{result.unexpected_keys[:2]}): was it made with other LORA_RANK / TRAIN_TEXT_ENCODER?")
    cast_training_params(list(models.values()))


def schedule_from_training(lora_dir):
    """The noise schedule a LoRA was trained with, as scheduler config values ({"rescale_betas_zero_snr": ...,
    "timestep_spacing": ..., "prediction_type": ...}: a PREDICTION_TYPE override included) for generation to sample with; None when lora_dir (or the LoRA file's folder) has no
    train_settings.json that records one."""
    folder = Path(lora_dir)
    folder = folder.parent if folder.is_file() else folder
    record = (files.read_json(folder / SETTINGS_FILE, {}) or {}).get("noise_schedule")
    if not isinstance(record, dict):
        return None
    return {k: record[k] for k in ("rescale_betas_zero_snr", "timestep_spacing", "prediction_type") if k in record}


def schedule_for(choice, lora_path):
    """(scheduler config values, why) of the noise schedule to sample or distil on: `choice` "trained" = what the LoRA
    at `lora_path` (file or folder) was trained with, by its train_settings.json (no record, or no LoRA: the training
    default zero_snr_trailing, also the seed's sampler); else a NOISE_SCHEDULES name. Training and generation share
    this one decision."""
    if choice != "trained":
        if choice not in NOISE_SCHEDULES:
            raise InputError(f"NOISE_SCHEDULE={choice!r}: choose trained, {', '.join(NOISE_SCHEDULES)}")
        return NOISE_SCHEDULES[choice], f"NOISE_SCHEDULE={choice}"
    trained = schedule_from_training(lora_path) if lora_path else None
    if trained is None:
        return NOISE_SCHEDULES["zero_snr_trailing"], "no training record: the seed's zero_snr_trailing"
    folder = Path(lora_path).parent if Path(lora_path).is_file() else Path(lora_path)
    return trained, f"what {folder / SETTINGS_FILE} says the LoRA was trained with"


# ----------------------------------------------------------------------------------------------------------------------
# the loss


def posterior_moments(vae, pixels):
    """Mean and std of the VAE's latent distribution (the sample is drawn later from the sample's own seed)."""
    dist = vae.encode(pixels.to(vae.dtype)).latent_dist
    return dist.mean, dist.std


def diffusion_loss(unet, scheduler, latents, noise, timesteps, text_embeddings, snr_gamma=0.0):
    """Per-sample MSE between the UNet's prediction and the target of the scheduler's prediction_type (epsilon: the
    noise; v_prediction: the velocity), Min-SNR weighted when snr_gamma > 0."""
    import torch
    import torch.nn.functional as F

    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise InputError(f"the scheduler's prediction_type {prediction_type!r} is not supported")
    pred = unet(noisy, timesteps, text_embeddings, return_dict=False)[0]
    loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma > 0:
        from diffusers.training_utils import compute_snr

        snr = compute_snr(scheduler, timesteps).float()
        clipped = torch.minimum(snr, torch.full_like(snr, snr_gamma))
        # epsilon: min(snr, g) / snr; v-prediction: min(snr, g) / (snr + 1) (zero-terminal-SNR safe)
        weight = clipped / (snr + 1) if prediction_type == "v_prediction" else torch.where(snr > 0, clipped / snr, 1.0)
        loss = loss * weight
    return loss
