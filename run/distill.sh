#!/usr/bin/env bash
# Method 2's fast preset: latent-consistency distillation of the banner model (SD 2.1 + run/train_sd.sh's LoRA) into a
# consistency LoRA -> outputs/lcm_lora_sd21/ (pytorch_lora_weights.safetensors, distill_settings.json, losses.csv,
# validation/, checkpoints/). Then: bash run/inference_sd.sh config/method2_fast.py
# Knobs pass through: bash run/distill.sh --MAX_STEPS=4000 --TRAIN_BATCH_SIZE=8 ... (see --help). A rerun continues from
# the newest checkpoint. Launched with accelerate like run/train_sd.sh (several GPUs: accelerate config first).
source "$(dirname "$0")/_env.sh"
launch_accelerate training.distill "$@"
