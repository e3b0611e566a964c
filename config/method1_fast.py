# Method 1, few-step preset: bash run/inference.sh config/method1_fast.py [--NAME=value ...]
# LCM-LoRA (a consistency adapter distilled from SD 1.5; it works on fine-tunes such as Realistic Vision) with its own
# scheduler, no classifier-free guidance (the adapter has guidance folded in), and TAESD to encode and decode.
# UNet evaluations per banner: int(8 steps x 0.6 strength) = 4, one each (the seed's settings: int(30 x 0.6) x 2 = 36);
# they start from the seed's noise level, t=599 (LCM lays its steps below the strength: inference/pipelines.img2img_steps).
# Read as literals by core/knobs.py (never executed); flags after it still win.
ADAPTER = "latent-consistency/lcm-lora-sdv1-5"
SCHEDULER = "lcm"
STEPS = 8
STRENGTH = 0.6
GUIDANCE = 1.0
DECODER = "madebyollin/taesd"
