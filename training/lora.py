"""
The LoRA itself and the training loss, shared by the trainer (train_lora.py) and its benchmark: peft LoRA on the UNet
attention projections (and optionally the text encoder's), the denoising loss for epsilon and v-prediction targets, and
the final LoRA file in diffusers' format.
"""
import os
from pathlib import Path

from core.knobs import InputError
from training import checkpoint

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' default name: pipe.load_lora_weights(folder) finds it
SETTINGS_FILE = "train_settings.json"  # beside it: knobs, input hashes, fingerprint


def add_lora(unet, text_encoder, rank):
    """peft LoRA (gaussian A, zero B: the model starts as the base) on the UNet attention projections and, when
    text_encoder is given, on its attention projections. Trainable weights are fp32 whatever the base dtype."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=UNET_TARGETS))
    models = {"unet": unet}
    if text_encoder is not None:
        # peft directly: transformers' add_adapter insists on peft >= 0.22, the pinned peft is 0.21
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                           target_modules=TEXT_TARGETS), text_encoder)
        models["text_encoder"] = text_encoder
    for p in checkpoint.trainable(models).values():
        p.data = p.data.to(torch.float32)
    return models


def checkpoint_activations(models):
    """Gradient checkpointing on the models being trained: less memory, about half the speed."""
    models["unet"].enable_gradient_checkpointing()
    text_encoder = models.get("text_encoder")
    if text_encoder is not None:  # transformers 5 renamed it
        getattr(text_encoder, "activation_checkpointing_enable", text_encoder.gradient_checkpointing_enable)()


def compile_models(unet, vae=None):
    """torch.compile the UNet (and the VAE encoder when given) in place: the modules keep their parameter names, so
    checkpoints, the LoRA file and the validation pipeline see the same objects. The first steps compile (minutes at
    the real size); the later ones run faster. The text encoder is left eager: it is a few percent of a step."""
    unet.compile()
    if vae is not None:
        vae.encoder.compile()


def save_lora(out_dir, models, attention_only=True):
    """The final LoRA in diffusers' format, written atomically: pipe.load_lora_weights(out_dir) reads it. A LoRA on
    more than the attention projections (the consistency LoRA) keeps peft's key names: diffusers' conversion renames
    only the attention keys, and a file of mixed names loads without its attention layers."""
    import tempfile

    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    convert = convert_state_dict_to_diffusers if attention_only else dict
    layers = {f"{name}_lora_layers": convert(get_peft_model_state_dict(model)) for name, model in models.items()}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".lora.") as tmp:
        StableDiffusionPipeline.save_lora_weights(tmp, **layers, weight_name=LORA_FILE)
        os.replace(Path(tmp) / LORA_FILE, Path(out_dir) / LORA_FILE)
    return Path(out_dir) / LORA_FILE


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
