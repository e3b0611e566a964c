# Method 2, few-step preset: bash run/inference_sd.sh config/method2_fast.py [--NAME=value ...]
# The banner LoRA plus the consistency LoRA that run/distill.sh distilled from it (teacher: SD 2.1 + the banner LoRA),
# both fused, sampled with LCM in 4 steps without classifier-free guidance (the distillation folded it into the
# target), and TAESD to decode. UNet evaluations per banner: 4 (the seed's settings: 30 steps x 2 = 60).
# With SMOKE=1 the distilled adapter is run/distill.sh's smoke output: add --ADAPTER=outputs/smoke/lcm_lora_sd21.
# Read as literals by core/knobs.py (never executed); flags after it still win.
ADAPTER = "outputs/lcm_lora_sd21"
SCHEDULER = "lcm"  # on the noise schedule the banner LoRA was trained with (and distilled on)
STEPS = 4
GUIDANCE = 1.0
GUIDANCE_RESCALE = 0.0
FUSE_LORA = True
DECODER = "madebyollin/taesd"
