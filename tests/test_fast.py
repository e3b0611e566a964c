"""Few-step generation (inference/accel.py, config/method1_fast.py) with the smoke models, offline, on the CPU.

The stand-ins are built offline like every smoke model: a LoRA of random weights in the smoke SD 1.5 UNet's shape for
latent-consistency/lcm-lora-sdv1-5 and a narrow AutoencoderTiny for madebyollin/taesd. Their outputs are noise; what is
checked is the plumbing a real run goes through: the UNet evaluations each preset costs (counted at the UNet), the
adapters that are active, and banners of the right size from either decoder.
"""
from pathlib import Path

import numpy as np
import pytest

from core import files, images, knobs

REPO = Path(__file__).resolve().parents[1]
FAST = str(REPO / "config" / "method1_fast.py")


@pytest.fixture
def m1(monkeypatch):
    monkeypatch.setenv("SMOKE", "1")
    from inference import method1

    return method1


def banner_calls(tmp_path, n=2):
    from PIL import Image

    init = tmp_path / "init.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (136, 256, 3), dtype=np.uint8)).save(init)
    return [("a red sale banner with a phone", init, 7 + i) for i in range(n)]


def unet_evaluations(pipe, cfg, calls, strength):
    from inference import method1

    before = pipe.unet_calls[0]
    out = method1.generate(pipe, cfg, calls, strength)
    return (pipe.unet_calls[0] - before) / len(calls), out


def test_fast_preset_costs_4_unet_evaluations_per_banner_against_36_at_the_seeds_settings(m1, tmp_path):
    calls = banner_calls(tmp_path)
    seed_cfg = knobs.configure(m1, ["--DEVICE=cpu", "--STEPS=30", "--GEN_SIZE=64,64"], env={"SMOKE": "1"})
    fast_cfg = knobs.configure(m1, [FAST, "--DEVICE=cpu", "--GEN_SIZE=64,64"], env={"SMOKE": "1"})
    seed_pipe, fast_pipe = m1.load_pipeline(seed_cfg, "cpu"), m1.load_pipeline(fast_cfg, "cpu")
    seen = {}  # the timesteps each UNet is called at
    for name, pipe in (("seed", seed_pipe), ("fast", fast_pipe)):
        pipe.unet.register_forward_pre_hook(lambda _, args, name=name: seen.setdefault(name, []).append(int(args[1])))
    seed_evals, _ = unet_evaluations(seed_pipe, seed_cfg, calls, seed_cfg.STRENGTH)
    fast_evals, fast_out = unet_evaluations(fast_pipe, fast_cfg, calls, fast_cfg.STRENGTH)
    assert seed_evals == 36 and fast_evals == 4
    # the same strength, the same noise level to start from (within one of the seed's 30 steps): the init banner is
    # kept as much, not more (8 LCM steps cut to their last 4 would start at t=499)
    assert seen["fast"][0] == 599 and abs(seen["fast"][0] - seen["seed"][0]) < 1000 / 30, seen
    assert len(set(seen["fast"])) == 4
    assert type(fast_pipe.scheduler).__name__ == "LCMScheduler"
    assert type(fast_pipe.vae).__name__ == "AutoencoderTiny" and type(seed_pipe.vae).__name__ == "AutoencoderKL"
    assert all(im.size == (64, 64) for im in fast_out)


def test_adapter_and_decoder_each_change_the_banner_and_both_decoders_give_banners(m1, tmp_path):
    calls = banner_calls(tmp_path, n=1)
    base = ["--DEVICE=cpu", "--GEN_SIZE=256,136", "--SCHEDULER=lcm", "--STEPS=4", "--STRENGTH=1.0", "--GUIDANCE=1.0"]
    outs = {}
    for name, flags in {"plain": [], "adapter": ["--ADAPTER=lcm-lora"], "taesd": ["--DECODER=taesd"]}.items():
        cfg = knobs.configure(m1, base + flags, env={"SMOKE": "1"})
        outs[name] = m1.generate(m1.load_pipeline(cfg, "cpu"), cfg, calls, cfg.STRENGTH)[0]
    arrays = {k: np.asarray(v, dtype=np.int16) for k, v in outs.items()}
    assert np.abs(arrays["adapter"] - arrays["plain"]).max() > 0
    assert np.abs(arrays["taesd"] - arrays["plain"]).max() > 0
    for im in outs.values():
        assert im.size == (256, 136) and images.to_banner(im).size == (1024, 533)


def test_two_adapters_are_active_at_once_each_with_its_own_weight(tmp_path):
    """Method 2's case: the banner LoRA (by its folder) and an acceleration LoRA (by its file) on one SD 2.1
    pipeline."""
    import torch
    from diffusers import StableDiffusionPipeline

    import smoke
    from inference import accel

    for name, seed in (("banners", 1), ("accel", 2)):
        torch.manual_seed(seed)
        smoke.random_lora(StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd21")).unet, tmp_path / name)
    pipe = StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd21"))
    unet_in = (torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500]),
               torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1)))

    def unet_out():
        with torch.no_grad():
            return pipe.unet(*unet_in).sample

    plain = unet_out()
    accel.add_adapter(pipe, str(tmp_path / "banners"), 0.8, name="banners", smoke=False)
    one = unet_out()
    accel.add_adapter(pipe, str(tmp_path / "accel" / "pytorch_lora_weights.safetensors"), 0.5, name="accel", smoke=False)
    both = unet_out()
    assert sorted(pipe.get_active_adapters()) == ["accel", "banners"]
    assert pipe.adapter_weights == {"banners": 0.8, "accel": 0.5}
    assert not torch.allclose(plain, one) and not torch.allclose(one, both)
    pipe.set_adapters(["banners", "accel"], adapter_weights=[0.8, 0.0])  # the second at weight 0: back to the first
    assert torch.allclose(unet_out(), one, atol=1e-6)


def test_a_missing_adapter_fails_in_one_line_naming_it():
    from inference import accel

    with pytest.raises(knobs.InputError, match=r"cannot load the LoRA './no/such/lora' \(accel\)"):
        accel.add_adapter(object(), "./no/such/lora", smoke=False)


def test_method_2_samples_on_the_noise_schedule_its_lora_was_trained_with(tmp_path, monkeypatch):
    """Training and generation share one decision (issue 19): the LoRA's train_settings.json, unless overridden."""
    import json

    from diffusers import StableDiffusionPipeline

    import smoke
    from inference import method2

    monkeypatch.setenv("SMOKE", "1")
    lora_dir = tmp_path / "lora"
    lora_dir.mkdir()
    (lora_dir / "pytorch_lora_weights.safetensors").write_bytes(b"")  # not read here: only its folder's record
    def pipe():
        return StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd21"))

    assert not pipe().scheduler.config.rescale_betas_zero_snr  # the stand-in keeps SD 2.1's standard schedule

    def sampler(record, *flags):
        (lora_dir / "train_settings.json").write_text(json.dumps(record))
        cfg = knobs.configure(method2, [f"--LORA={lora_dir}", *flags], env={"SMOKE": "1"})
        return method2.set_scheduler(pipe(), cfg).scheduler.config

    trained = {"noise_schedule": {"rescale_betas_zero_snr": False, "timestep_spacing": "leading"}}
    assert (sampler(trained).rescale_betas_zero_snr, sampler(trained).timestep_spacing) == (False, "leading")
    zero = {"noise_schedule": {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}}
    assert (sampler(zero).rescale_betas_zero_snr, sampler(zero).timestep_spacing) == (True, "trailing")
    assert sampler({}).rescale_betas_zero_snr  # no record: the seed's zero-terminal-SNR
    assert not sampler(zero, "--NOISE_SCHEDULE=model").rescale_betas_zero_snr  # told otherwise
    with pytest.raises(knobs.InputError, match="SCHEDULER=pndm cannot sample on this noise schedule"):
        sampler(zero, "--SCHEDULER=pndm")  # PNDM has no zero-SNR rescale: refused, not silently dropped
    with pytest.raises(knobs.InputError, match="choose one of dpmpp, ddim, euler_a, lcm, tcd, or NOISE_SCHEDULE"):
        sampler(zero, "--SCHEDULER=pndm")  # the samplers named are those that keep the schedule, tcd included
    assert type(method2.set_scheduler(pipe(), knobs.configure(method2, [f"--LORA={lora_dir}", "--SCHEDULER=lcm"],
                                                           env={"SMOKE": "1"})).scheduler).__name__ == "LCMScheduler"


def test_the_fast_preset_run_records_4_unet_evaluations_per_banner_in_its_manifest(m1, sample_dir, tmp_path):
    import pandas as pd

    from tests.test_method1 import write_fixtures

    write_fixtures(sample_dir)
    out = tmp_path / "fast"
    m1.main([FAST, f"--DATA_DIR={sample_dir}", f"--OUT_DIR={out}", "--DUP_GUARD=0", "--DEVICE=cpu",
             "--GEN_SIZE=128,64", f"--CACHE_DIR={tmp_path / 'cache'}"])
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 6 and (manifest["unet_evals"] == 4).all()
    # fast and full banners never mix in one folder: the seed's settings are refused there
    with pytest.raises(knobs.InputError, match="ADAPTER"):
        m1.main([f"--DATA_DIR={sample_dir}", f"--OUT_DIR={out}", "--DUP_GUARD=0", "--DEVICE=cpu", "--GEN_SIZE=128,64",
                 f"--CACHE_DIR={tmp_path / 'cache'}"])


def test_an_adapter_distilled_again_into_the_same_folder_redoes_the_banners(sample_dir, tmp_path, monkeypatch):
    """ADAPTER is in the resume key by its LoRA file's hash, not by its folder's name: after run/distill.sh writes a
    new adapter into the same folder, the banners made with the old one are another run's (refused naming ADAPTER,
    redone with --OVERWRITE=1), never counted as done."""
    import torch
    from diffusers import StableDiffusionPipeline

    import smoke
    from inference import accel, method2
    from tests.helpers import recorded_settings
    from tests.test_method1 import write_fixtures

    monkeypatch.setenv("SMOKE", "1")
    write_fixtures(sample_dir)
    adapter, out = tmp_path / "adapter", tmp_path / "out"

    def distil(seed):  # a consistency LoRA of the smoke SD 2.1 (random weights), written where distill.sh writes
        torch.manual_seed(seed)
        smoke.random_lora(StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd21")).unet, adapter)
        return files.file_hash(adapter / "pytorch_lora_weights.safetensors")[:16]

    run = [f"--DATA_DIR={sample_dir}", f"--OUT_DIR={out}", "--LORA=", f"--ADAPTER={adapter}", "--DUP_GUARD=0",
           "--DEVICE=cpu", "--LIMIT=2", "--GEN_SIZE=64,64", "--STEPS=2", f"--CACHE_DIR={tmp_path / 'cache'}"]
    first = distil(1)
    method2.main(run)
    assert recorded_settings(out)["ADAPTER"] == first
    method2.main(run)  # the same adapter: done, nothing refused
    second = distil(2)
    assert second != first and accel.adapter_key(str(adapter), smoke=True) == second
    with pytest.raises(knobs.InputError, match=f"ADAPTER '{first}' -> '{second}'"):
        method2.main(run)
    method2.main([*run, "--OVERWRITE=1"])
    assert recorded_settings(out)["ADAPTER"] == second
    # a hub id, and method 1's smoke stand-in whatever the knob names, stay as written
    assert accel.adapter_key("org/lcm-lora", smoke=False) == "org/lcm-lora"
    assert accel.adapter_key(str(adapter), "lcm_lora_sd15", smoke=True) == str(adapter)


def test_a_lora_for_another_base_model_is_refused_in_one_line(capfd):
    """The smoke LCM-LoRA of SD 1.5 onto the smoke SD 2.1 (whose transformer blocks project linearly, not by 1x1
    convolution, as the real ones do): torch's dozens of "size mismatch" lines become one line naming the LoRA."""
    from diffusers import StableDiffusionPipeline

    import smoke
    from inference import accel

    pipe = StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd21"))
    capfd.readouterr()
    lcm_sd15 = smoke.smoke_model("lcm_lora_sd15")
    with pytest.raises(knobs.InputError) as refused:
        accel.add_adapter(pipe, lcm_sd15, name="accel", smoke=False)
    assert str(refused.value) == (f"cannot load the LoRA {lcm_sd15!r} (accel): its layers do not fit this model (made "
                                  f"for another base model? SD 1.5 vs 2.1)")
    assert "size mismatch" not in capfd.readouterr().err  # diffusers' own log of every layer is silenced too
    assert not getattr(pipe, "adapter_weights", None) and not any(pipe.get_list_adapters().values())  # none half-loaded


def test_the_lcm_lora_stand_in_has_the_published_files_key_layout_and_every_layer_of_it_loads():
    """latent-consistency/lcm-lora-sdv1-5's file names its layers kohya's way (lora_unet_<layer>.lora_down.weight,
    .lora_up.weight, .alpha), which load_lora_weights converts on loading; the stand-in is written the same way, so
    Method 1's fast preset goes through that conversion here too, and every layer of the file is adapted."""
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    import smoke
    from inference import accel

    with safe_open(Path(smoke.smoke_model("lcm_lora_sd15")) / "pytorch_lora_weights.safetensors", "pt") as f:
        keys = list(f.keys())
    layers = {k.split(".", 1)[0] for k in keys}
    assert all(k.startswith("lora_unet_") for k in keys)
    assert sorted(keys) == sorted(f"{layer}.{part}" for layer in layers
                                  for part in ("lora_down.weight", "lora_up.weight", "alpha"))
    pipe = accel.add_adapter(StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd15")),
                             "latent-consistency/lcm-lora-sdv1-5", key="lcm_lora_sd15", smoke=True)
    adapted = {name for name, module in pipe.unet.named_modules() if "accel" in getattr(module, "lora_A", {})}
    assert {"lora_unet_" + name.replace(".", "_") for name in adapted} == layers
