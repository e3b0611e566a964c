"""
The trainer itself, end to end, at the real SD 2.1 size with random weights: what bench/training.py leaves out
(decoding the banners and RandAugment in the DataLoader workers, the per-sample draws, the loss log, the fp16 grad
scaler's per-step check, an epoch's new loader) counted in.

Writes into WORK_DIR a random-weight SD 2.1 folder (bench/training.py's configs, fp16 safetensors; SD 2.1's DDIM
scheduler config; the CLIP tokenizer from TOKENIZER) and N_BANNERS synthetic 1024x533 banners with captions, runs
`training.train_lora` on them for STEPS steps, one epoch (its defaults: the seed's recipe at 8 x 1, and the epoch's
validation strip), and prints the speed the trainer measured after its first step, the strip's time, the peak GPU
memory and the projected time of the seed's recipe (68,100 images and 50 strips). On the CPU it runs the CPU_*
settings instead: a check that it works, not a figure.

    python -m bench.trainer [--TRAIN_FLAGS=--COMPILE=1] [--TOKENIZER=<CLIP tokenizer folder>]
"""
import shutil
import time
from pathlib import Path

from core import files, knobs

WORK_DIR = "outputs/benchmark_trainer"  # the random model, the banners and the run (the model is reused when there)
TOKENIZER = ""  # a CLIP tokenizer folder; "" = the smoke sd21's (the real CLIP vocab; building it needs open_clip)
N_BANNERS = 480  # synthetic banners: 60 steps of 8 is one epoch
STEPS = 60  # optimizer steps (the first is warm-up and not timed)
TRAIN_FLAGS = ()  # more trainer flags, e.g. --TRAIN_FLAGS=--COMPILE=1,--RANDAUGMENT=0
IMAGES = 68_100  # the seed's recipe: 50 epochs of 1362 banners
EPOCHS = 50  # ... and so 50 validation strips (the trainer's default: one per epoch)
SEED = 0  # the banners' and the random weights' seed
CPU_N_BANNERS = 4  # on the CPU
CPU_STEPS = 4  # on the CPU (one epoch: its validation strip runs too, at 2 steps)
CPU_RESOLUTION = (64, 64)  # on the CPU: the real architecture at a small size, batch 1, no workers


def build_model(folder, tokenizer_dir, seed):
    """A random-weight SD 2.1 folder that the trainer loads like the real one (tokenizer, text_encoder, vae, unet,
    scheduler subfolders), written once: a folder with its marker is reused."""
    folder = Path(folder)
    if (folder / ".complete").is_file():
        return folder
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from core.sd_configs import SD21_TEXT, SD21_UNET, SD21_VAE

    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(seed)
    CLIPTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder / "tokenizer")
    for sub, model in (("unet", UNet2DConditionModel(**SD21_UNET)), ("vae", AutoencoderKL(**SD21_VAE)),
                       ("text_encoder", CLIPTextModel(CLIPTextConfig(**SD21_TEXT)))):
        model.to(torch.float16).save_pretrained(folder / sub)
        del model
    # stabilityai/stable-diffusion-2-1's scheduler/scheduler_config.json
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction").save_pretrained(
        folder / "scheduler")
    (folder / ".complete").write_text("")
    return folder


def make_banners(data_dir, n, seed):
    """n banners 1024x533 (a gradient, shapes, a caption band: real JPEG sizes), info.csv and llava_caption.json."""
    import random

    from PIL import Image, ImageDraw

    images = Path(data_dir) / "train" / "images"
    done = images.parent / "llava_caption.json"  # written last: a killed build is made again
    if done.is_file() and len(list(images.glob("*.jpg"))) == n:
        return Path(data_dir)
    shutil.rmtree(Path(data_dir) / "train", ignore_errors=True)
    images.mkdir(parents=True)
    rng = random.Random(seed)
    rows, captions = ["id,caption,description,moreInfo,bannerImage"], {}
    for i in range(n):
        top, bottom = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(2)]
        image = Image.linear_gradient("L").resize((1024, 533)).convert("RGB")
        image = Image.composite(Image.new("RGB", image.size, top), Image.new("RGB", image.size, bottom),
                                image.convert("L"))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y, w, h = rng.randrange(900), rng.randrange(450), rng.randrange(40, 300), rng.randrange(40, 200)
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x, y, x + w, y + h), fill=tuple(rng.randrange(256) for _ in range(3)))
        draw.rectangle((0, 430, 1024, 533), fill=(20, 20, 20))
        draw.text((40, 460), f"KHUYEN MAI {i} - GIAM GIA {rng.randrange(10, 90)}%", fill="white", font_size=40)
        image.save(images / f"{i}.jpg", quality=90)
        rows.append(f"{i},Khuyến mãi {i},Giảm giá,,{i}.jpg")
        captions[f"{i}.jpg"] = (f"an advertising banner with a {top} to {bottom} gradient background, colourful "
                                f"shapes and a dark band at the bottom with white text announcing a sale number {i}")
    files.atomic_write(images.parent / "info.csv", "\n".join(rows) + "\n")
    files.write_json(done, captions)
    return Path(data_dir)


def tokenizer_dir(cfg):
    if cfg.TOKENIZER:
        return cfg.TOKENIZER
    import smoke

    return str(Path(smoke.smoke_model("sd21")) / "tokenizer")


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    from core.progress import quiet_libraries

    with quiet_libraries():  # the libraries' save/load bars and per-call logs would bury the figures
        run(cfg)


def run(cfg):
    import torch

    from training import lora, train_lora
    from bench.training import rss_gib

    cuda = torch.cuda.is_available()
    work = Path(cfg.WORK_DIR)
    n, steps = (cfg.N_BANNERS, cfg.STEPS) if cuda else (cfg.CPU_N_BANNERS, cfg.CPU_STEPS)
    started = time.perf_counter()
    model = build_model(work / "sd21_random", tokenizer_dir(cfg), cfg.SEED)
    data_dir = make_banners(work / "data", n, cfg.SEED)
    print(f"random SD 2.1 in {model}, {n} banners in {data_dir} ({time.perf_counter() - started:.0f} s)", flush=True)
    flags = [f"--MODEL={model}", f"--DATA_DIR={data_dir}", f"--OUT_DIR={work / 'run'}", f"--MAX_STEPS={steps}",
             "--RESUME=no", "--PROGRESS=0", f"--CHECKPOINT_EVERY={steps}", "--KEEP_CHECKPOINTS=1"]
    if not cuda:
        width, height = cfg.CPU_RESOLUTION
        flags += [f"--RESOLUTION={width},{height}", "--TRAIN_BATCH_SIZE=1", "--DATALOADER_WORKERS=0",
                  "--VALIDATION_STEPS=2"]
    flags += list(cfg.TRAIN_FLAGS)
    shutil.rmtree(work / "run", ignore_errors=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    train_lora.main(flags)
    settings = files.read_json(work / "run" / lora.SETTINGS_FILE, {})
    speed = settings.get("speed_this_run") or {}
    if not speed:
        raise knobs.InputError(f"{work / 'run' / lora.SETTINGS_FILE}: no speed recorded (STEPS must be at least 3)")
    knobs_used = settings["knobs"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else rss_gib()  # CPU: the process's resident peak
    name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"trainer end to end on {name}: {knobs_used['TRAIN_BATCH_SIZE']} x {knobs_used['GRAD_ACCUM']} at "
          f"{knobs_used['RESOLUTION'][0]}x{knobs_used['RESOLUTION'][1]}, RandAugment {knobs_used['RANDAUGMENT']}, "
          f"text encoder {knobs_used['TRAIN_TEXT_ENCODER']}, COMPILE {knobs_used['COMPILE']}, "
          f"{knobs_used['MIXED_PRECISION'] if cuda else 'fp32'}")
    strip = speed.get("seconds_per_strip", 0.0)
    minutes = (cfg.IMAGES / speed["images_per_s"] + cfg.EPOCHS * strip) / 60
    print(f"{speed['steps_timed']} steps timed: {speed['steps_per_s']:.2f} steps/s, {speed['images_per_s']:.1f} "
          f"images/s, a validation strip {strip:.1f} s, peak {peak:.1f} GiB; {cfg.IMAGES:,} images + {cfg.EPOCHS} "
          f"strips: {minutes:.1f} min" + (" (CPU, small size: a check that it runs)" if not cuda else ""), flush=True)


if __name__ == "__main__":
    knobs.run_main(main)
