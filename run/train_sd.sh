#!/usr/bin/env bash
# Method 2's model: LoRA fine-tuning of SD 2.1 on the captioned training banners -> outputs/lora_sd21/
#   (pytorch_lora_weights.safetensors, train_settings.json, losses.csv, validation/, checkpoints/).
# Needs $DATA_DIR/train/{info.csv,images/} and llava_caption.json (run/caption.sh; without it the ad copy is used).
# Knobs pass through: bash run/train_sd.sh --TRAIN_BATCH_SIZE=8 --RESOLUTION=768,400 ... (see --help).
# A rerun continues from the newest checkpoint. Launched with accelerate (pinned): one process unless
# `accelerate config` was run (several GPUs: "$PYTHON" -m accelerate.commands.launch --multi_gpu --num_processes=N \
#   -m training.train_lora ...). The launcher's OMP_NUM_THREADS=1 does not reach the LoRA: the trainer sets its CPU
#   thread count itself (CPU_THREADS), so this and the Method 2 chain (python -m) train byte-identical LoRAs.
source "$(dirname "$0")/_env.sh"
launch_accelerate training.train_lora "$@"
