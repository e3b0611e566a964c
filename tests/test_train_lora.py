"""LoRA training (training/train_lora.py) on the tiny random SD 2.1 (v-prediction) and SD 1.5 (epsilon) models, on
fixtures of 2-4 small banners, on the CPU: it learns, resumes bit-identically, saves a LoRA diffusers loads, is
independent of how the batch is split, and stops on bad input before any model loads."""
import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import smoke
from core import knobs
from core.knobs import InputError
from training import checkpoints, data, lora, train_lora

COLORS = ["red", "blue", "green", "yellow"]


def make_data(root, n):
    """A DATA_DIR of n small banners (a white disc on a plain colour) with VLM captions."""
    images = Path(root) / "train" / "images"
    images.mkdir(parents=True)
    rows = ["id,caption,description,moreInfo,bannerImage"]
    for i in range(n):
        im = Image.new("RGB", (128, 67), COLORS[i])
        ImageDraw.Draw(im).ellipse((10 + 20 * i, 8, 60 + 20 * i, 58), fill="white")
        im.save(images / f"{i}.jpg", quality=95)
        rows.append(f"{i},Khuyến mãi {i},Giảm giá {i}0%,,{i}.jpg")
    (images.parent / "info.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    captions = {f"{i}.jpg": f"a {COLORS[i]} advertising banner with a white circle" for i in range(n)}
    (images.parent / "llava_caption.json").write_text(json.dumps(captions), encoding="utf-8")
    return Path(root)


def train(data_dir, out_dir, model, *flags):
    return train_lora.main([f"--DATA_DIR={data_dir}", f"--OUT_DIR={out_dir}", f"--MODEL={model}", "--RESOLUTION=64,64",
                            "--VALIDATION=0", "--DATALOADER_WORKERS=0", "--PROGRESS=0", "--CHECKPOINT_EVERY=100",
                            "--CPU_THREADS=1", *flags])


def lora_weights(out_dir):
    from safetensors.torch import load_file

    return load_file(Path(out_dir) / lora.LORA_FILE)


def losses(out_dir):
    return (Path(out_dir) / "losses.csv").read_text().splitlines()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny models are faster on one thread, and the machine is shared
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sd21():
    return smoke.smoke_model("sd21")


def pipeline(model):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def fixed_loss(pipe, data_dir):
    """The training loss with fixed noise at 10 timesteps across the schedule: a deterministic measure of the fit."""
    from diffusers import DDPMScheduler

    items, _ = data.load_train_set(data_dir)
    dataset = data.BannerDataset(items, pipe.tokenizer, data.make_transform((64, 64), True, False), 0)
    pixels = torch.stack([dataset.pixels(i, 0) for i in range(len(items))])
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        mean, _ = lora.posterior_moments(pipe.vae, pixels)
        text = pipe.text_encoder(dataset.input_ids(range(len(items))))[0]
        total = []
        for k, t in enumerate(range(50, 1000, 100)):
            noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(k))
            timesteps = torch.full((len(items),), t)
            total.append(lora.diffusion_loss(pipe.unet, scheduler, mean * pipe.vae.config.scaling_factor, noise,
                                             timesteps, text).mean())
    return torch.stack(total).mean().item()


@pytest.fixture(scope="module")
def trained_sd21(tmp_path_factory, sd21):
    """30 steps of the seed's recipe (UNet + text-encoder LoRA) at a learning rate a tiny model moves with."""
    root = tmp_path_factory.mktemp("trained")
    data_dir = make_data(root / "data", 2)
    torch.set_num_threads(1)
    train(data_dir, root / "out", sd21, "--TRAIN_BATCH_SIZE=2", "--MAX_STEPS=30", "--LEARNING_RATE=2e-2",
          "--RANDOM_FLIP=0", "--RANDAUGMENT=0")
    return data_dir, root / "out"


@pytest.mark.parametrize("family,prediction_type", [("sd21", "v_prediction"), ("sd15", "epsilon")])
def test_training_lowers_the_loss(family, prediction_type, trained_sd21, tmp_path):
    model = smoke.smoke_model(family)
    if family == "sd21":
        data_dir, out_dir = trained_sd21
    else:
        data_dir, out_dir = make_data(tmp_path / "data", 2), tmp_path / "out"
        train(data_dir, out_dir, model, "--TRAIN_BATCH_SIZE=2", "--MAX_STEPS=30", "--LEARNING_RATE=2e-2",
              "--RANDOM_FLIP=0", "--RANDAUGMENT=0", "--NOISE_SCHEDULE=model")  # zero terminal SNR needs v-prediction
    pipe = pipeline(model)
    assert pipe.scheduler.config.prediction_type == prediction_type  # the target follows the base model
    before = fixed_loss(pipe, data_dir)
    pipe.load_lora_weights(out_dir)
    after = fixed_loss(pipe, data_dir)
    assert after < 0.92 * before, (before, after)  # measured: 0.80-0.87 of the base loss over seeds
    settings = json.loads((out_dir / lora.SETTINGS_FILE).read_text())
    assert settings["steps"] == 30 and settings["settings"]["images_sha256"]
    assert len(losses(out_dir)) == 31


def test_saved_lora_changes_a_fresh_pipeline_and_scale_zero_is_the_base(trained_sd21, sd21):
    _, out_dir = trained_sd21
    pipe = pipeline(sd21)
    kwargs = dict(prompt="a red advertising banner", num_inference_steps=2, height=64, width=64, output_type="np")
    base = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    pipe.load_lora_weights(out_dir)
    assert {"unet", "text_encoder"} <= set(pipe.get_list_adapters())
    tuned = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    off = pipe(**kwargs, generator=torch.Generator().manual_seed(0), cross_attention_kwargs={"scale": 0.0}).images
    assert np.abs(tuned - base).max() > 1e-3
    np.testing.assert_allclose(off, base, atol=1e-6)


def test_resume_is_bit_identical(tmp_path, sd21, capsys):
    """Stop at step 10 (mid-epoch, with flip + RandAugment and the text encoder) and resume: the LoRA at step 20 and
    every logged loss equal an uninterrupted run's, bit for bit."""
    data_dir = make_data(tmp_path / "data", 3)
    flags = ("--TRAIN_BATCH_SIZE=1", "--MAX_STEPS=20", "--LEARNING_RATE=1e-2", "--RESOLUTION=64,32")
    train(data_dir, tmp_path / "straight", sd21, *flags)
    assert train(data_dir, tmp_path / "resumed", sd21, *flags, "--STOP_AT_STEP=10") is None
    assert not (tmp_path / "resumed" / lora.LORA_FILE).exists()
    assert [s for s, _ in checkpoints.list_checkpoints(tmp_path / "resumed")] == [10]
    capsys.readouterr()
    train(data_dir, tmp_path / "resumed", sd21, *flags, "--RESUME=latest")
    # it really continued from the step-10 checkpoint (3 banners at batch 1: step 10 is in epoch 3)
    assert re.search(r"^resumed from \S*checkpoint_10 \(step 10, epoch 3\)$", capsys.readouterr().out, re.M)
    straight, resumed = lora_weights(tmp_path / "straight"), lora_weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys() and any(k.startswith("text_encoder.") for k in straight)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")
    # a checkpoint of other settings is refused, naming the knob
    with pytest.raises(InputError, match="LEARNING_RATE"):
        train(data_dir, tmp_path / "resumed", sd21, *flags[:2], "--MAX_STEPS=30", "--LEARNING_RATE=1e-3",
              "--RESOLUTION=64,32")


def test_batch_4x1_and_2x2_make_the_same_updates(tmp_path, sd21, monkeypatch):
    """Same samples, noise and timesteps per step whatever the split (no augmentation, frozen text: cached, fp32)."""
    from accelerate import Accelerator

    norms = []  # the gradient norm each step clips: AdamW would hide a gradient off by a constant factor, clipping not
    clip = Accelerator.clip_grad_norm_

    def recorded(self, *args, **kwargs):
        norms.append(clip(self, *args, **kwargs))
        return norms[-1]

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", recorded)
    data_dir = make_data(tmp_path / "data", 4)
    flags = ("--MAX_STEPS=2", "--LEARNING_RATE=1e-2", "--RANDOM_FLIP=0", "--RANDAUGMENT=0",
             "--TRAIN_TEXT_ENCODER=0")
    train(data_dir, tmp_path / "4x1", sd21, *flags, "--TRAIN_BATCH_SIZE=4", "--GRAD_ACCUM=1")
    train(data_dir, tmp_path / "2x2", sd21, *flags, "--TRAIN_BATCH_SIZE=2", "--GRAD_ACCUM=2")
    assert len(norms) == 4 and [n.item() for n in norms[:2]] == pytest.approx([n.item() for n in norms[2:]], rel=1e-4)
    a, b = lora_weights(tmp_path / "4x1"), lora_weights(tmp_path / "2x2")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)  # float sums, not lr-sized (1e-2)
    la, lb = ([float(line.split(",")[2]) for line in losses(tmp_path / d)[1:]] for d in ("4x1", "2x2"))
    assert la == pytest.approx(lb, rel=1e-5)


def test_latents_encoded_once_match_encoding_every_step(tmp_path, sd21):
    """With flip on and RandAugment off the VAE runs once per banner and mirror; training sees the same latents."""
    data_dir = make_data(tmp_path / "data", 2)
    assert {data.flips(1337, epoch, f"{i}.jpg") for epoch in range(2) for i in range(2)} == {True, False}
    flags = ("--MAX_STEPS=4", "--TRAIN_BATCH_SIZE=1", "--LEARNING_RATE=1e-2", "--RANDAUGMENT=0")
    train(data_dir, tmp_path / "every", sd21, *flags, "--CACHE_LATENTS=0")
    train(data_dir, tmp_path / "once", sd21, *flags, "--CACHE_LATENTS=1")
    a, b = lora_weights(tmp_path / "every"), lora_weights(tmp_path / "once")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    la, lb = ([float(line.split(",")[2]) for line in losses(tmp_path / d)[1:]] for d in ("every", "once"))
    assert la == pytest.approx(lb, rel=1e-5)


def test_gradient_checkpointing_trains_the_same_lora(tmp_path, sd21, monkeypatch):
    """Recomputing activations must not cut the gradient of the LoRA inside the recomputed blocks (text encoder too)."""
    data_dir = make_data(tmp_path / "data", 2)
    flags = ("--MAX_STEPS=2", "--TRAIN_BATCH_SIZE=2", "--LEARNING_RATE=1e-2", "--RANDAUGMENT=0")
    seen = []  # the models checkpoint_activations was given, and whether it switched them over
    real = lora.checkpoint_activations

    def recording(models):
        real(models)
        seen.append({name: on(models[name]) for name in ("unet", "text_encoder") if models.get(name) is not None})

    def on(model):  # transformers 5 renamed it: is_activation_checkpointing; diffusers keeps the old name
        renamed = hasattr(type(model), "is_activation_checkpointing")
        return model.is_activation_checkpointing if renamed else model.is_gradient_checkpointing

    monkeypatch.setattr(lora, "checkpoint_activations", recording)
    train(data_dir, tmp_path / "plain", sd21, *flags)
    assert seen == []  # off by default
    train(data_dir, tmp_path / "gc", sd21, *flags, "--GRADIENT_CHECKPOINTING=1")
    assert seen == [{"unet": True, "text_encoder": True}]  # the knob reached both trained models
    a, b = lora_weights(tmp_path / "plain"), lora_weights(tmp_path / "gc")
    ups = [k for k in b if k.startswith("text_encoder.") and ".up." in k]
    assert ups and all(b[k].abs().max() > 0 for k in ups)  # B starts at zero: the text encoder's LoRA moved
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path, sd21):
    """COMPILE=1 (torch.compile of the UNet, inductor's C++ backend on the CPU: about a minute of compiling) trains the
    LoRA eager trains, up to float rounding, and saves it under the same names (compiled in place: no _orig_mod.)."""
    data_dir = make_data(tmp_path / "data", 2)
    flags = ("--MAX_STEPS=2", "--TRAIN_BATCH_SIZE=2", "--LEARNING_RATE=1e-2", "--RANDAUGMENT=0")
    train(data_dir, tmp_path / "eager", sd21, *flags)
    train(data_dir, tmp_path / "compiled", sd21, *flags, "--COMPILE=1")
    a, b = lora_weights(tmp_path / "eager"), lora_weights(tmp_path / "compiled")
    assert a.keys() == b.keys()
    for key in a:  # Adam divides by the gradient's size: near-zero gradients turn rounding into ~1e-4 of an lr step
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=5e-4)
    la, lb = ([float(line.split(",")[2]) for line in losses(tmp_path / d)[1:]] for d in ("eager", "compiled"))
    assert la == pytest.approx(lb, rel=1e-4)


def test_bad_input_stops_before_the_model_loads(tmp_path):
    data_dir = make_data(tmp_path / "data", 2)
    images = data_dir / "train" / "images"
    missing_model = str(tmp_path / "no_such_model")  # reaching the model would fail differently
    (images / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"unreadable image: .*1\.jpg \(row id=1\)"):
        train(data_dir, tmp_path / "out", missing_model)
    (images / "1.jpg").unlink()
    with pytest.raises(InputError, match=r"image not found: .*1\.jpg \(row id=1\)"):
        train(data_dir, tmp_path / "out", missing_model)
    make_data(tmp_path / "data2", 2)
    (tmp_path / "data2" / "train" / "llava_caption.json").write_text("")
    with pytest.raises(InputError, match="llava_caption.json: empty caption file"):
        train(tmp_path / "data2", tmp_path / "out", missing_model)
    with pytest.raises(InputError, match="RESOLUTION"):
        train(data_dir, tmp_path / "out", missing_model, "--RESOLUTION=60,60")
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(InputError, match="bitsandbytes"):
            train(data_dir, tmp_path / "out", missing_model, "--USE_8BIT_ADAM=1")


def test_min_snr_weighting_is_finite_at_zero_terminal_snr(sd21):
    """SD 2.1-style schedules rescaled to zero terminal SNR have snr = 0 at t = 999: the weights must stay finite
    (v-prediction weighs that step min(snr, gamma) / (snr + 1) = 0; epsilon 1)."""
    from diffusers import DDPMScheduler

    # SD 2.1's own schedule is the standard one (model_facts.SD21_SCHEDULER): rescaled here, as zero-SNR training runs
    scheduler = DDPMScheduler.from_pretrained(sd21, subfolder="scheduler", rescale_betas_zero_snr=True)
    assert scheduler.alphas_cumprod[-1] == 0
    unet = lambda x, t, e, return_dict: (torch.zeros_like(x),)  # noqa: E731
    latents, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    timesteps = torch.tensor([0, 500, 999])
    for prediction_type in ("v_prediction", "epsilon"):
        scheduler.register_to_config(prediction_type=prediction_type)
        plain = lora.diffusion_loss(unet, scheduler, latents, noise, timesteps, None)
        weighted = lora.diffusion_loss(unet, scheduler, latents, noise, timesteps, None, snr_gamma=5.0)
        assert torch.isfinite(weighted).all() and (weighted <= plain + 1e-6).all() and (weighted >= 0).all()
        alphas = scheduler.alphas_cumprod[timesteps].double()
        snr = alphas / (1 - alphas)
        clipped = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64))
        expected = (clipped / (snr + 1) if prediction_type == "v_prediction"
                    else torch.where(snr > 0, clipped / snr, 1.0))
        torch.testing.assert_close(weighted.double(), plain.double() * expected, rtol=1e-4, atol=1e-6)


def test_the_target_follows_the_prediction_type(sd21):
    """A UNet that predicts exactly the noise has zero epsilon loss and a positive v-prediction loss; one that predicts
    exactly the velocity, the other way round."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_pretrained(sd21, subfolder="scheduler")
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    timesteps = torch.tensor([100, 600])
    says_noise = lambda x, t, e, return_dict: (noise,)  # noqa: E731
    says_velocity = lambda x, t, e, return_dict: (scheduler.get_velocity(latents, noise, timesteps),)  # noqa: E731
    for prediction_type, right, wrong in (("epsilon", says_noise, says_velocity),
                                          ("v_prediction", says_velocity, says_noise)):
        scheduler.register_to_config(prediction_type=prediction_type)
        assert lora.diffusion_loss(right, scheduler, latents, noise, timesteps, None).max() < 1e-10
        assert lora.diffusion_loss(wrong, scheduler, latents, noise, timesteps, None).min() > 1e-3


def test_captions_fall_back_to_the_copy_and_are_counted(tmp_path):
    data_dir = make_data(tmp_path / "data", 3)
    train_dir = data_dir / "train"
    (train_dir / "llava_caption.json").write_text(json.dumps({"0.jpg": "a red banner", "1.jpg": ""}))
    (train_dir / "info_trans.csv").write_text("id,caption,description,moreInfo,bannerImage\n"
                                              "1,Big sale,20% off,,1.jpg\n", encoding="utf-8")
    items, report = data.load_train_set(data_dir)
    assert [c for _, _, c in items] == ["a red banner", "Big sale, 20% off", "Khuyến mãi 2, Giảm giá 20%"]
    assert (report["vlm"], report["info_trans"], report["info"]) == (1, 1, 1)
    assert "2 banner(s) without one" in data.describe_captions(report, 3)
    with pytest.raises(InputError, match=r"row id=1 .*CAPTION_FALLBACK=0"):
        data.load_train_set(data_dir, fallback=False)


def test_smoke_run_on_the_sample(sample_dir, tmp_path, monkeypatch, capsys):
    """SMOKE=1 as run/train_sd.sh runs it on the embedded sample (no llava_caption.json there): LoRA, validation
    strips, settings; a rerun has nothing to do."""
    monkeypatch.setenv("SMOKE", "1")
    out_dir = tmp_path / "lora"
    args = [f"--DATA_DIR={sample_dir}", f"--OUT_DIR={out_dir}", "--PROGRESS=0", "--KEEP_CHECKPOINTS=2"]
    assert train_lora.main(args) == out_dir / lora.LORA_FILE
    assert sorted(p.name for p in (out_dir / "checkpoints").iterdir()) == ["checkpoint_4", "checkpoint_6"]
    assert "all 12 banners train on their ad copy" in capsys.readouterr().out
    assert sorted(p.name for p in (out_dir / "validation").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert Image.open(out_dir / "validation" / "epoch_002.png").size == (2 * 64, 32)
    settings = json.loads((out_dir / lora.SETTINGS_FILE).read_text())
    assert settings["captions"]["info"] == 12 and settings["settings"]["smoke"] is True
    speed = settings["speed_this_run"]  # timed after the first of the 6 steps (the warm-up); 2 strips
    assert speed["steps_timed"] == 5 and speed["images_per_s"] == pytest.approx(4 * speed["steps_per_s"], rel=1e-3)
    assert speed["seconds_per_strip"] > 0
    assert train_lora.measured_speed([10.0, 11.0, 13.0], 8, [1.0, 2.0]) == {
        "steps_per_s": 0.6667, "images_per_s": 5.333, "steps_timed": 2, "seconds_per_strip": 1.5}
    assert train_lora.measured_speed([10.0, 11.0], 8) is None
    train_lora.main(args)  # the same knobs and inputs: up to date
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(InputError, match=r"made with other settings or inputs \(differ: LORA_RANK\)"):
        train_lora.main([*args, "--LORA_RANK=8"])  # a knob that shapes the weights: not this run's, before any model


def test_the_launch_script_stops_on_one_line(tmp_path):
    """bash run/train_sd.sh goes through accelerate's launcher: bad input ends on the script's own one-line error, not
    on the launcher's traceback of its subprocess."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "OUT_DIR", "SMOKE")}
    out = subprocess.run(["bash", str(repo / "run" / "train_sd.sh"), f"--DATA_DIR={tmp_path / 'nowhere'}",
                          f"--OUT_DIR={tmp_path / 'out'}"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0
    missing = tmp_path / "nowhere" / "train" / "info.csv"
    assert out.stderr.strip().splitlines()[-1] == f"error: {missing}: file not found"
    assert "Traceback" not in out.stderr


# ----------------------------------------------------------------------------------------------------------------------
# bad folders and files: one line, no traceback, nothing left behind (issue 21)


def test_an_unwritable_output_folder_stops_in_one_line_before_the_model(tmp_path, capsys):
    """Checked before the lock and any model (root writes into a read-only folder anyway: a file where the folder
    should be stands in there); a run that fails leaves no empty output folder."""
    data_dir = make_data(tmp_path / "data", 2)
    missing_model = str(tmp_path / "no_such_model")  # reaching the model would fail differently
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    folders = [blocker / "out"]
    if os.geteuid() != 0:
        folders.append(tmp_path / "read_only")
        folders[-1].mkdir(mode=0o500)
    for out_dir in folders:
        with pytest.raises(SystemExit):
            knobs.run_main(train_lora.main, [f"--DATA_DIR={data_dir}", f"--OUT_DIR={out_dir}",
                                             f"--MODEL={missing_model}"])
        err = capsys.readouterr().err
        assert re.fullmatch(rf"error: output folder {re.escape(str(out_dir))} is not writable .*--OUT_DIR=\.\.\.\n",
                            err), err
    with pytest.raises(InputError, match="model folder not found"):
        train(data_dir, tmp_path / "new", missing_model, "--TRAIN_BATCH_SIZE=2")
    assert not (tmp_path / "new").exists()


def test_a_truncated_lora_file_is_one_line_naming_it_and_what_makes_it(trained_sd21, sd21, tmp_path):
    """The final LoRA (lora.read_lora_file, also Method 2's reader) and a checkpoint's on resume."""
    _, out_dir = trained_sd21
    cut = tmp_path / lora.LORA_FILE
    cut.write_bytes((out_dir / lora.LORA_FILE).read_bytes()[:1000])
    with pytest.raises(InputError, match=rf"^{re.escape(str(cut))}: unreadable LoRA file \(.*\); made by the "
                                         rf"training stage: rerun bash run/train_sd.sh$") as error:
        lora.read_lora_file(cut)
    assert "\n" not in str(error.value)
    data_dir = make_data(tmp_path / "data", 2)
    flags = ("--TRAIN_BATCH_SIZE=2", "--MAX_STEPS=2", "--RANDAUGMENT=0")
    assert train(data_dir, tmp_path / "out", sd21, *flags, "--STOP_AT_STEP=1") is None
    checkpoint = tmp_path / "out" / "checkpoints" / "checkpoint_1"
    (checkpoint / lora.LORA_FILE).write_bytes((checkpoint / lora.LORA_FILE).read_bytes()[:500])
    with pytest.raises(InputError, match=rf"^{re.escape(str(checkpoint / lora.LORA_FILE))}: unreadable LoRA file "
                                         rf".*made by a training checkpoint: delete {re.escape(str(checkpoint))} "):
        train(data_dir, tmp_path / "out", sd21, *flags)


def test_the_lora_file_has_the_mode_of_every_other_output(trained_sd21):
    _, out_dir = trained_sd21
    umask = os.umask(0)
    os.umask(umask)
    for name in (lora.LORA_FILE, lora.SETTINGS_FILE, "losses.csv"):
        assert (out_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask, name  # safetensors alone writes 0600


@pytest.mark.slow
def test_the_chain_and_the_stage_alone_train_byte_identical_loras(sample_dir, tmp_path):
    """run/method2.sh runs training as `python -m training.train_lora`, run/train_sd.sh through `accelerate launch`,
    which exports OMP_NUM_THREADS=1: the thread count changed the reductions' order and the LoRA by ~1e-7 until the
    trainer set it itself (CPU_THREADS)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**{k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "OUT_DIR")}, "SMOKE": "1"}
    run = dict(cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    alone = subprocess.run(["bash", "run/train_sd.sh", f"--DATA_DIR={sample_dir}", f"--OUT_DIR={tmp_path / 'alone'}",
                            "--PROGRESS=0", "--VALIDATION=0"], **run)
    assert alone.returncode == 0, alone.stderr[-2000:]
    chain = subprocess.run([sys.executable, "-m", "inference.method2_all", f"--DATA_DIR={sample_dir}", "--STEPS=train",
                            f"--train.OUT_DIR={tmp_path / 'chain'}", "--train.PROGRESS=0", "--train.VALIDATION=0"],
                           **run)
    assert chain.returncode == 0, chain.stderr[-2000:]
    assert (tmp_path / "alone" / lora.LORA_FILE).read_bytes() == (tmp_path / "chain" / lora.LORA_FILE).read_bytes()


def test_the_chain_sets_aside_a_training_folder_only_under_its_lock(tmp_path):
    """Setting aside stale training output takes the lock the running trainer holds: a live run is refused with its
    pid and its folder stays; a lock left by a dead run is taken over and the folder set aside without it."""
    import subprocess

    from core import files
    from inference import method2_all

    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "losses.csv").write_text("step,epoch,loss,lr\n")
    declared = train_lora.stage_files(knobs.configure(train_lora, [f"--OUT_DIR={folder}"], env={}))
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (folder / files.FolderLock(folder).path.name).write_text(str(holder.pid))
        with pytest.raises(InputError, match=rf"in use by another run: .* held by pid {holder.pid};"):
            method2_all.set_aside(declared)
        assert (folder / "losses.csv").is_file() and not (tmp_path / "lora.stale").exists()
    finally:
        holder.kill()
        holder.wait()
    method2_all.set_aside(declared)
    assert not folder.exists() and sorted(p.name for p in (tmp_path / "lora.stale").iterdir()) == ["losses.csv"]


# ----------------------------------------------------------------------------------------------------------------------
# the noise schedule (issue 19): one training knob, recorded for generation

def test_the_noise_schedule_is_a_training_knob_that_generation_can_follow(tmp_path, sd21):
    """The smoke sd21 keeps the real SD 2.1 scheduler config (model_facts.SD21_SCHEDULER: standard betas, leading
    steps): the knob turns it into zero terminal SNR with trailing steps, or leaves it as it is."""
    model = sd21
    cfg = knobs.configure(train_lora, [f"--MODEL={model}"])
    _, scheduler = train_lora.load_models(cfg, torch.float32, "cpu")
    assert scheduler.alphas_cumprod[-1] == 0 and scheduler.config.timestep_spacing == "trailing"  # the default
    pipe, as_is = train_lora.load_models(cfg.replace(NOISE_SCHEDULE="model"), torch.float32, "cpu")
    assert as_is.alphas_cumprod[-1] > 0 and as_is.config.timestep_spacing == "leading"
    assert pipe.scheduler.config.timestep_spacing == "leading"  # the validation strips sample as training noises
    with pytest.raises(InputError, match="needs v-prediction.*--NOISE_SCHEDULE=model"):
        train_lora.load_models(cfg.replace(PREDICTION_TYPE="epsilon"), torch.float32, "cpu")
    data_dir = make_data(tmp_path / "data", 2)
    flags = ("--TRAIN_BATCH_SIZE=2", "--MAX_STEPS=1", "--RANDAUGMENT=0")
    train(data_dir, tmp_path / "default", model, *flags)
    train(data_dir, tmp_path / "as_is", model, *flags, "--NOISE_SCHEDULE=model")
    assert lora.schedule_from_training(tmp_path / "default") == {"rescale_betas_zero_snr": True,
                                                                 "timestep_spacing": "trailing",
                                                                 "prediction_type": "v_prediction"}
    assert lora.schedule_from_training(tmp_path / "as_is" / lora.LORA_FILE) == {"rescale_betas_zero_snr": False,
                                                                                "timestep_spacing": "leading",
                                                                                "prediction_type": "v_prediction"}
    assert lora.schedule_from_training(tmp_path / "data") is None  # no train_settings.json: generation decides
    recorded = json.loads((tmp_path / "default" / lora.SETTINGS_FILE).read_text())
    assert recorded["settings"]["NOISE_SCHEDULE"] == "zero_snr_trailing"  # in the fingerprint: a change retrains
    assert lora_weights(tmp_path / "default").keys() == lora_weights(tmp_path / "as_is").keys()
    assert any(not torch.equal(lora_weights(tmp_path / "default")[k], lora_weights(tmp_path / "as_is")[k])
               for k in lora_weights(tmp_path / "default"))


# ----------------------------------------------------------------------------------------------------------------------
# half precision on the CPU (issue 19): autocast, the grad scaler, a resume after a skipped step


def straight_and_resumed(data_dir, tmp_path, model, flags, stop_at):
    train(data_dir, tmp_path / "straight", model, *flags)
    assert train(data_dir, tmp_path / "resumed", model, *flags, f"--STOP_AT_STEP={stop_at}") is None
    train(data_dir, tmp_path / "resumed", model, *flags)
    straight, resumed = lora_weights(tmp_path / "straight"), lora_weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")
    return json.loads((tmp_path / "straight" / lora.SETTINGS_FILE).read_text())


def test_bf16_autocast_on_the_cpu_trains_and_resumes_bit_identically(tmp_path, sd21, fresh_accelerate_state):
    data_dir = make_data(tmp_path / "data", 3)
    flags = ("--MIXED_PRECISION=bf16", "--TRAIN_BATCH_SIZE=1", "--MAX_STEPS=4", "--LEARNING_RATE=1e-2",
             "--RESOLUTION=64,32")
    settings = straight_and_resumed(data_dir, tmp_path, sd21, flags, stop_at=2)
    assert settings["settings"]["precision"] == "bf16"
    fp32 = make_data(tmp_path / "fp32" / "data", 3)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    train(fp32, tmp_path / "fp32" / "out", sd21, *flags[1:], "--MIXED_PRECISION=no")
    assert losses(tmp_path / "fp32" / "out") != losses(tmp_path / "straight")  # bf16 really ran


def test_the_fp16_grad_scaler_skips_a_step_and_resumes_bit_identically(tmp_path, sd21, monkeypatch,
                                                                        fresh_accelerate_state):
    """accelerate gives fp16 autocast and a GradScaler to accelerators only; torch has both on the CPU. The test grants
    them to the CPU as accelerate grants them to a GPU (the one patch: what only a GPU would get), with a first scale
    (2**24) far past fp16's range (65504), so step 1 overflows and is skipped, then 2**10."""
    from accelerate import Accelerator

    init = Accelerator.__init__

    def with_cpu_fp16(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.mixed_precision == "fp16" and self.device.type == "cpu":
            self.native_amp = True
            self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24, backoff_factor=2.0**-14)

    monkeypatch.setattr(Accelerator, "__init__", with_cpu_fp16)
    data_dir = make_data(tmp_path / "data", 3)
    flags = ("--MIXED_PRECISION=fp16", "--TRAIN_BATCH_SIZE=1", "--MAX_STEPS=4", "--LEARNING_RATE=1e-2",
             "--RESOLUTION=64,32", "--CHECKPOINT_EVERY=1")
    settings = straight_and_resumed(data_dir, tmp_path, sd21, flags, stop_at=2)
    assert settings["settings"]["precision"] == "fp16"
    lrs = [float(row.split(",")[3]) for row in losses(tmp_path / "straight")[1:]]
    assert lrs[0] == 1e-2 and lrs[1] < lrs[0]  # step 1 skipped: the LR schedule did not move; step 2 moved it
    scale = torch.load(tmp_path / "straight" / "checkpoints" / "checkpoint_2" / "scaler.pt", weights_only=True)
    assert scale["scale"] == 2.0**10  # the backed-off scale is in the checkpoint (2**24 again would skip step 3)


# ----------------------------------------------------------------------------------------------------------------------
# several processes for real (issue 22)


@pytest.mark.slow
def test_two_processes_train_a_lora_that_loads_and_resumes(tmp_path, sd21):
    """`accelerate launch --multi_gpu --num_processes=2` on the CPU: two gloo ranks, each half of every step (accelerate
    1.15's `--cpu --num_processes=2` starts one process). The LoRA equals one process's at the same images per step
    up to float sums, so both halves counted; it loads into a pipeline; a stop and resume under two processes is
    bit-identical."""
    import subprocess
    import sys

    data_dir = make_data(tmp_path / "data", 4)
    flags = [f"--DATA_DIR={data_dir}", f"--MODEL={sd21}", "--RESOLUTION=64,32", "--VALIDATION=0", "--PROGRESS=0",
             "--DATALOADER_WORKERS=0", "--CPU_THREADS=1", "--MAX_STEPS=4", "--LEARNING_RATE=1e-2", "--RANDAUGMENT=0"]
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "OUT_DIR", "SMOKE")}

    def launch(out_dir, *more):
        done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2",
                               "--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no",
                               "--main_process_port=0", "-m", "training.train_lora", *flags, f"--OUT_DIR={out_dir}",
                               "--TRAIN_BATCH_SIZE=1", *more], cwd=Path(__file__).resolve().parents[1], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    assert "2 steps/epoch of 1 x 1 x 2 process(es)" in launch(tmp_path / "two")
    assert json.loads((tmp_path / "two" / lora.SETTINGS_FILE).read_text())["settings"]["world_size"] == 2
    assert {p.name for p in (tmp_path / "two" / "checkpoints" / "checkpoint_4").glob("random_states_*")} == {
        "random_states_0.pkl", "random_states_1.pkl"}  # each rank saved its own RNG
    train_lora.main([*flags, f"--OUT_DIR={tmp_path / 'one'}", "--TRAIN_BATCH_SIZE=2"])
    two, one = lora_weights(tmp_path / "two"), lora_weights(tmp_path / "one")
    assert two.keys() == one.keys()
    for key in two:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
    pipe = pipeline(sd21)
    pipe.load_lora_weights(tmp_path / "two")
    assert {"unet", "text_encoder"} <= set(pipe.get_list_adapters())
    assert "stopped at step 2 of 4" in launch(tmp_path / "resumed", "--STOP_AT_STEP=2")
    assert re.search(r"^resumed from \S*checkpoint_2 \(step 2, epoch 1\)$", launch(tmp_path / "resumed"), re.M)
    resumed = lora_weights(tmp_path / "resumed")
    assert all(torch.equal(two[k], resumed[k]) for k in two)
    assert losses(tmp_path / "two") == losses(tmp_path / "resumed")
