"""Consistency distillation of the banner model (training/distill.py) with the tiny random SD 2.1, offline, on the CPU.

The teacher is the smoke SD 2.1 with a banner LoRA of random weights (smoke.random_lora, standing in for
run/train_sd.sh's output); the fixture is the embedded sample's 12 training banners at 32x32. What is checked: the
loss falls, a stopped run resumes to a bit-identical adapter, a retrained teacher is not mistaken for the old one, and
the adapter loads into a fresh Method 2 pipeline beside the banner LoRA and changes its banners, and Method 2
refuses it beside another banner LoRA or on another noise schedule. The consistency loss's wiring (teacher with the
adapters off, guidance, the DDIM step, the student's own target) is checked on an exact oracle in place of the UNet.
"""
import csv

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core import REPO_ROOT as REPO, knobs

FLAGS = ["--RESOLUTION=32,32", "--TRAIN_BATCH_SIZE=4", "--LORA_RANK=4", "--PROGRESS=0", "--VALIDATION_EVERY=0"]


@pytest.fixture
def distill(monkeypatch):
    monkeypatch.setenv("SMOKE", "1")
    from training import distill

    return distill


@pytest.fixture
def teacher(tmp_path, distill):
    """A banner LoRA of random weights for the smoke SD 2.1: what run/train_sd.sh would have written."""
    from diffusers import StableDiffusionPipeline

    import smoke

    torch.manual_seed(3)
    smoke.random_lora(StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd21")).unet, tmp_path / "banner_lora")
    return tmp_path / "banner_lora"


def run(distill, sample_dir, out_dir, teacher, *flags):
    return distill.main([f"--DATA_DIR={sample_dir}", f"--OUT_DIR={out_dir}", f"--TEACHER_LORA={teacher}", *FLAGS,
                         *flags])


def losses(out_dir):
    return [float(r["loss"]) for r in csv.DictReader(open(out_dir / "losses.csv"))]


def test_the_consistency_loss_falls(distill, sample_dir, teacher, tmp_path):
    run(distill, sample_dir, tmp_path / "out", teacher, "--MAX_STEPS=30", "--LEARNING_RATE=1e-3",
        "--CHECKPOINT_EVERY=100")
    loss = losses(tmp_path / "out")
    assert len(loss) == 30 and np.mean(loss[-10:]) < np.mean(loss[:10])


def test_a_stopped_distillation_resumes_to_a_bit_identical_adapter(distill, sample_dir, teacher, tmp_path, capsys,
                                                                     monkeypatch):
    straight, sliced = tmp_path / "straight", tmp_path / "sliced"
    run(distill, sample_dir, straight, teacher, "--MAX_STEPS=4", "--CHECKPOINT_EVERY=2")
    assert run(distill, sample_dir, sliced, teacher, "--MAX_STEPS=4", "--CHECKPOINT_EVERY=2", "--STOP_AT_STEP=2") is None
    assert not (sliced / "pytorch_lora_weights.safetensors").exists()
    run(distill, sample_dir, sliced, teacher, "--MAX_STEPS=4", "--CHECKPOINT_EVERY=2")
    a, b = load_file(straight / "pytorch_lora_weights.safetensors"), load_file(sliced / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(straight) == losses(sliced)
    first = load_file(straight / "checkpoints" / "checkpoint_2" / "pytorch_lora_weights.safetensors")
    assert any(not torch.equal(first[k], a[k]) for k in a)  # step 4 is not step 2: the resume really trained on
    # up to date: a rerun does nothing; another teacher is another distillation, refused over the old checkpoints;
    # neither loads the teacher
    monkeypatch.setattr(distill, "load_teacher", lambda *a: pytest.fail("the teacher loaded for nothing to do or a "
                                                                         "refused run"))
    written = (straight / "pytorch_lora_weights.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert run(distill, sample_dir, straight, teacher, "--MAX_STEPS=4", "--CHECKPOINT_EVERY=2").is_file()
    assert "nothing to do" in capsys.readouterr().out
    assert (straight / "pytorch_lora_weights.safetensors").stat().st_mtime_ns == written
    with pytest.raises(knobs.InputError, match="other settings or inputs"):
        run(distill, sample_dir, sliced, teacher, "--MAX_STEPS=6", "--CHECKPOINT_EVERY=2")
    # a retrained banner LoRA (the teacher) is another distillation too, with the very same flags
    from diffusers import StableDiffusionPipeline

    import smoke

    torch.manual_seed(4)
    smoke.random_lora(StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd21")).unet, teacher)
    with pytest.raises(knobs.InputError, match="other settings or inputs"):
        run(distill, sample_dir, sliced, teacher, "--MAX_STEPS=4", "--CHECKPOINT_EVERY=2")


def test_mixed_precision_distils_and_draws_its_validation_strip(distill, sample_dir, teacher, tmp_path,
                                                                fresh_accelerate_state):
    """bf16 autocast (a GPU's default is fp16: the same accelerate path): the frozen teacher and VAE in bf16, the
    prepared UNet handing back fp32 latents; the validation strip samples under autocast, so it decodes."""
    out = tmp_path / "bf16"
    assert run(distill, sample_dir, out, teacher, "--MAX_STEPS=2", "--MIXED_PRECISION=bf16").is_file()
    assert (out / "validation" / "step_000002.png").is_file()


@pytest.mark.slow
def test_two_processes_distil_resume_and_write_the_adapter(sample_dir, teacher, tmp_path):
    """`accelerate launch --multi_gpu --num_processes=2` on the CPU (two gloo ranks): a run stopped at step 2 and the
    rerun that finishes it both end cleanly (the process group outlives the last barrier), and the adapter and its
    record are written; a third run has nothing to do."""
    import os
    import subprocess

    from tests.helpers import two_cpu_processes

    out = tmp_path / "two"
    command = [*two_cpu_processes(), "-m", "training.distill", f"--DATA_DIR={sample_dir}", f"--OUT_DIR={out}",
               f"--TEACHER_LORA={teacher}", *FLAGS, "--TRAIN_BATCH_SIZE=2", "--MAX_STEPS=4", "--CHECKPOINT_EVERY=2"]
    env = {**{k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "OUT_DIR")}, "SMOKE": "1"}

    def launch(*more):
        done = subprocess.run([*command, *more], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    assert "stopped at step 2 of 4" in launch("--STOP_AT_STEP=2")
    assert "resumed from" in launch()
    assert (out / "pytorch_lora_weights.safetensors").is_file() and (out / "distill_settings.json").is_file()
    assert "nothing to do" in launch()


def test_the_consistency_arithmetic(distill):
    """The boundary conditions and the parametrisations the loss rests on, on known tensors."""
    skip, out = distill.boundary_scalings(torch.tensor([0, 999]))
    assert (skip[0].item(), out[0].item()) == (1.0, 0.0)  # at t = 0 the consistency function is the identity
    assert skip[1].item() < 1e-6 and out[1].item() > 0.999  # at the end it is the model's clean estimate
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    alpha, sigma = torch.full((2, 1, 1, 1), 0.6), torch.full((2, 1, 1, 1), 0.8)
    noisy = alpha * x0 + sigma * noise
    for kind, target in (("v_prediction", alpha * noise - sigma * x0), ("epsilon", noise)):
        clean, eps = distill.x0_and_eps(target, noisy, alpha, sigma, kind)
        assert torch.allclose(clean, x0, atol=1e-5) and torch.allclose(eps, noise, atol=1e-5), kind
    with pytest.raises(knobs.InputError, match="sample"):
        distill.x0_and_eps(noise, noisy, alpha, sigma, "sample")


def test_the_adapter_loads_beside_the_banner_lora_and_changes_method_2s_banners(distill, sample_dir, teacher,
                                                                                   tmp_path, monkeypatch):
    from inference import method2

    run(distill, sample_dir, tmp_path / "lcm", teacher, "--MAX_STEPS=2", "--LEARNING_RATE=1e-2",
        "--NUM_DDIM_TIMESTEPS=25")  # solver timesteps 39, 79, ..., 999 (LCMScheduler's default grid is 50's)
    base = ["--DEVICE=cpu", f"--LORA={teacher}", "--GEN_SIZE=64,64", "--BATCH_SIZE=1"]
    calls = [("a red sale banner", None, 5)]
    outs = {}
    for name, flags in {"full": [], "fast": [f"--ADAPTER={tmp_path / 'lcm'}", "--SCHEDULER=lcm", "--STEPS=4",
                                             "--GUIDANCE=1.0"]}.items():
        cfg = knobs.configure(method2, base + flags, env={"SMOKE": "1"})
        pipe = method2.load_pipeline(cfg, "cpu")
        outs[name] = np.asarray(method2.generate(pipe, cfg, calls)[0], dtype=np.int16)
        if name == "fast":
            assert sorted(pipe.get_active_adapters()) == ["accel", "banners"]
            assert set(pipe.scheduler.timesteps.tolist()) <= set(range(39, 1000, 40))  # on the distilled timesteps
            saved = load_file(tmp_path / "lcm" / "pytorch_lora_weights.safetensors")
            loaded = [n for n, _ in pipe.unet.named_parameters() if ".lora_A.accel." in n]
            assert len(loaded) == len(saved) // 2  # every layer of the file, attention included
            pipe.set_adapters(["banners", "accel"], adapter_weights=[1.0, 0.0])  # the consistency LoRA off
            off = np.asarray(method2.generate(pipe, cfg, calls)[0], dtype=np.int16)
            assert np.abs(off - outs["fast"]).max() > 0  # the distilled adapter changes the banner
    assert outs["fast"].shape == outs["full"].shape == (64, 64, 3)
    # the adapter knows its banner LoRA and noise schedule: stacked on another, or sampled on another, it is refused
    fast = base + [f"--ADAPTER={tmp_path / 'lcm'}", "--SCHEDULER=lcm"]
    method2.check_adapter(knobs.configure(method2, fast, env={"SMOKE": "1"}))
    for other, refusal in (("--LORA=", "another banner LoRA"), ("--NOISE_SCHEDULE=model", "on the noise schedule")):
        with pytest.raises(knobs.InputError, match=refusal):
            method2.check_adapter(knobs.configure(method2, [*fast, other], env={"SMOKE": "1"}))


def test_the_noise_schedule_knob_speaks_method_2s_words(distill, sample_dir, tmp_path, monkeypatch):
    """NOISE_SCHEDULE=trained (the default) is the banner LoRA's own schedule, as in Method 2; another word is refused
    in one line before any data or model loads."""
    monkeypatch.setattr(distill, "load_teacher", lambda *a: pytest.fail("the teacher loaded before the refusal"))
    monkeypatch.setattr(distill.data, "load_train_set", lambda *a: pytest.fail("the data loaded before the refusal"))
    with pytest.raises(knobs.InputError, match="NOISE_SCHEDULE='teacher': choose trained, zero_snr_trailing, model"):
        run(distill, sample_dir, tmp_path / "out", "", "--NOISE_SCHEDULE=teacher")
    assert not (tmp_path / "out" / "pytorch_lora_weights.safetensors").exists()


class OracleUNet:
    """Stands in for the UNet inside consistency_loss (a tiny random UNet cannot know the clean latents): it predicts v
    exactly for known clean latents. With its adapters off (the teacher) those are the conditional `x0_cond` for the
    caption embeddings and `x0_free` for the empty prompt's; with them on (the student), `x0_student`. It records the
    adapter state of every call."""

    def __init__(self, schedule, text, x0_cond, x0_free, x0_student):
        self.schedule, self.text, self.x0_cond, self.x0_free, self.x0_student = schedule, text, x0_cond, x0_free, \
            x0_student
        self.adapters_on, self.calls = True, []

    def disable_adapters(self):
        self.adapters_on = False

    def enable_adapters(self):
        self.adapters_on = True

    def __call__(self, noisy, timesteps, text):
        from types import SimpleNamespace

        self.calls.append(self.adapters_on)
        x0 = self.x0_student if self.adapters_on else self.x0_cond if torch.equal(text, self.text) else self.x0_free
        alpha, sigma = self.schedule.at(timesteps)
        eps = (noisy - alpha * x0) / sigma
        return SimpleNamespace(sample=alpha * eps - sigma * x0)


def test_the_consistency_loss_anchors_the_student_to_the_guided_teacher(distill):
    """The loss's wiring on an exact oracle. Away from t = 0 the target is the student's own estimate one DDIM step
    earlier; at the first solver timestep it is the teacher's DDIM step itself (c_skip = 1, c_out = 0 at t = 0): the
    teacher running with the adapters off, on the caption and on the empty prompt, its two estimates mixed with the
    guidance scale w. So a student predicting the guided image x0_cond + w (x0_cond - x0_free) has (next to) no loss,
    and one predicting the unguided image, or guided the wrong way, a large one."""
    from diffusers import DDPMScheduler

    from training import lora

    schedule = distill.Schedule(DDPMScheduler(prediction_type="v_prediction").config,
                                lora.NOISE_SCHEDULES["zero_snr_trailing"], 50, "cpu")
    g = torch.Generator().manual_seed(0)
    x0_cond, x0_free, text = (torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g),
                              torch.randn(3, 7, 16, generator=g))
    draws = {"ddim_index": torch.tensor([0, 20, 49]), "noise": torch.randn(3, 4, 8, 8, generator=g),
             "w": torch.tensor([3.0, 7.5, 15.0])}
    w = draws["w"].view(-1, 1, 1, 1)
    guided = x0_cond + w * (x0_cond - x0_free)
    inputs = (guided, text, torch.zeros(1, 7, 16))  # latents on the guided teacher's path, captions, empty prompt

    def loss(student_x0):
        oracle = OracleUNet(schedule, text, x0_cond, x0_free, student_x0)
        value = distill.consistency_loss(oracle, oracle, schedule, inputs, draws, distill.HUBER_C).item()
        assert oracle.calls == [True, False, False, True]  # student, teacher on caption and empty prompt, target
        return value

    right, unguided, backwards = loss(guided), loss(x0_cond), loss(x0_cond - w * (x0_cond - x0_free))
    assert right < 0.02 and min(unguided, backwards) > 0.5, (right, unguided, backwards)
