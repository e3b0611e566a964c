"""
Few-step generation: an acceleration LoRA (LCM-LoRA, TCD, Hyper-SD, or the banner model's own distilled consistency
LoRA from run/distill.sh) stacked on a loaded pipeline, and the decoder knob (the checkpoint's full VAE or TAESD).

- The adapter is loaded under its own adapter name beside any LoRA already there (Method 2's banner LoRA), and every
  loaded adapter stays active with its own weight. Its scheduler (LCM, TCD) is the method's SCHEDULER knob, set by
  inference/pipelines.py like any other.
- TAESD (diffusers' AutoencoderTiny) encodes and decodes SD 1.x/2.x latents (4 channels, 1/8 size) for a fraction
  of the full VAE's cost; img2img encodes the init banner with it too. Its scaling factor is 1.0 and the pipelines
  read it from its config, so nothing else changes.
"""
from pathlib import Path

import models
from core import files
from core.knobs import InputError
from training.lora import LORA_FILE

FULL_DECODER = ("", "full")  # DECODER values that keep the checkpoint's own VAE


def adapter_file(knob):
    """The LoRA file an ADAPTER knob names: a folder's LORA_FILE, or the file itself ("" = None; a hub id comes back as
    a path that is no file)."""
    if not knob:
        return None
    path = Path(knob).expanduser()
    return path / LORA_FILE if path.is_dir() else path


def adapter_key(knob, key=None, *, smoke):
    """ADAPTER as the banners' resume key holds it: a local LoRA by its file's content hash (first 16 hex digits), so
    an adapter distilled again into the same folder redoes the banners; a hub id, or the smoke stand-in that `key`
    swaps in under `smoke` (the run's cfg.SMOKE), as written."""
    path = local_file(knob, key, smoke=smoke)
    return files.file_hash(path)[:16] if path else knob


def local_file(knob, key=None, *, smoke):
    """The local LoRA file an ADAPTER knob names (a folder's or the file itself), or None: a hub id, or the smoke
    stand-in that `key` swaps in under `smoke`."""
    path = adapter_file(knob)
    return path if path is not None and path.is_file() and not (smoke and key and models.MODELS[key].smoke) else None


def add_adapter(pipe, adapter, weight=1.0, name="accel", key=None, *, smoke):
    """Load the LoRA `adapter` (hub id, folder, or a .safetensors file; "" = nothing) as `name`; every adapter loaded
    this way stays active with its own weight (pipe.adapter_weights). `key`: its models.py entry, whose stand-in
    `smoke` (the run's cfg.SMOKE) swaps in."""
    if not adapter:
        return pipe
    from core.progress import quiet_libraries, silenced

    try:
        local = local_file(adapter, key, smoke=smoke)  # a .safetensors file is no model folder: models.path refuses it
        # quiet: a UNet-only LoRA makes diffusers warn that the text encoder has no keys; and a LoRA of another shape
        # makes it log every size mismatch before raising (said below in one line)
        with quiet_libraries(), silenced("diffusers.loaders.peft"):
            if local is not None:
                pipe.load_lora_weights(str(local.parent), weight_name=local.name, adapter_name=name)
            else:  # a hub id (at its revision), the smoke stand-in, or a folder holding another file name. A hub
                # LoRA's file is named: the one download.sh fetches (offline, diffusers cannot list the repository to
                # guess it: "you must specify a weight_name")
                named = {} if models.resolve(adapter, key, smoke=smoke).kind == "folder" else {"weight_name": LORA_FILE}
                models.load(pipe.load_lora_weights, adapter, key, smoke=smoke, adapter_name=name, **named)
    except RuntimeError as e:  # torch's load_state_dict: "size mismatch for ..." once per layer
        if "size mismatch" not in str(e):
            raise  # another failure (e.g. out of memory) is not this one
        raise InputError(f"cannot load the LoRA {adapter!r} ({name}): its layers do not fit this model (made for "
                         f"another base model? SD 1.5 vs 2.1)") from None
    except (InputError, OSError, ValueError) as e:
        raise InputError(f"cannot load the LoRA {adapter!r} ({name}): "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    weights = dict(getattr(pipe, "adapter_weights", {}), **{name: weight})
    pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))
    pipe.adapter_weights = weights  # what set_adapters was told: the next adapter keeps these
    return pipe


def fuse_adapters(pipe):
    """Fuse every loaded adapter into the weights at its own weight and drop the LoRA layers: no cost per step."""
    if getattr(pipe, "adapter_weights", None):
        pipe.fuse_lora()
        pipe.unload_lora_weights()
        pipe.adapter_weights = {}
    return pipe


def set_decoder(pipe, decoder, dtype, *, smoke):
    """Swap the pipeline's VAE for TAESD (`decoder`: hub id or folder; "" or "full" keeps the full VAE; `smoke`, the
    run's cfg.SMOKE: the tiny TAESD)."""
    if decoder in FULL_DECODER:
        return pipe
    from diffusers import AutoencoderTiny

    pipe.vae = models.load(AutoencoderTiny.from_pretrained, decoder, "taesd", smoke=smoke, torch_dtype=dtype)
    return pipe
