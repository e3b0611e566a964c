"""Method 2 with the tiny random SD 2.1 smoke model (v-prediction) on the embedded sample, offline, on the CPU.

The LoRA here is made the way run/train_sd.sh saves one (peft adapters on the UNet attention projections, written with
`save_lora_weights`), with random non-zero weights so that it visibly changes the output; the training itself is tested
in test_train_lora.py. The LLM prompts are a small fixture in llava_prompt.json's format (run/prompts.sh is tested in
test_prompts.py).
"""
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.helpers import killed_on_call, recorded_settings
from core import dataset, files, images, knobs
from tests.test_method1 import write_fixtures

PROMPTS = {  # LLM prompts for 4 of the 6 sample test rows (bannerImage -> prompt); two rows fall back to their copy
    "1.jpg": "A black leather car seat cover on a red background, studio light, advertising photo",
    "3.jpg": "A cup of herbal tea beside a box of tea bags, calm evening light",
    "4.jpg": "A smiling woman holding clear dental aligners, clean white background " * 8,  # over the 77-token window
    "6.jpg": "A bottle of vitamin C serum with orange slices, bright product shot",
}


def make_lora(folder):
    """A diffusers-format LoRA for the smoke sd21 UNet with random weights (rank 4, attention projections)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    import smoke

    from core.progress import quiet_libraries

    with quiet_libraries():
        pipe = StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd21"))
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.manual_seed(0)
    for name, p in pipe.unet.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (no effect); a trained LoRA is not
            torch.nn.init.normal_(p, std=0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=layers, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory):
    return make_lora(tmp_path_factory.mktemp("lora"))


@pytest.fixture
def m2(sample_dir, monkeypatch):
    monkeypatch.setenv("SMOKE", "1")
    from inference import method2

    write_fixtures(sample_dir)
    files.write_json(sample_dir / "test" / "llava_prompt.json", PROMPTS)
    return method2


@pytest.fixture
def flags(m2, sample_dir, lora_dir, tmp_path_factory):
    """Method 2's flags on the sample: the test LoRA, the guard off unless a test turns it on."""
    cache = tmp_path_factory.getbasetemp() / "method2_cache"
    base = [f"--DATA_DIR={sample_dir}", f"--CACHE_DIR={cache}", "--DEVICE=cpu", "--DUP_GUARD=0", f"--LORA={lora_dir}"]
    return lambda *more: [*base, *more]


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_every_row_gets_a_banner_prompts_and_fallback_counted(m2, flags, sample_dir, tmp_path, capsys):
    out = tmp_path / "out"
    m2.main(flags(f"--OUT_DIR={out}"))
    info = dataset.read_info(sample_dir / "test" / "info.csv")
    for name in info["bannerImage"]:
        assert images.is_banner_jpeg(out / name)
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert list(manifest["id"]) == list(info["id"])
    assert manifest["init_bannerImage"].eq("").all() and manifest["strength"].astype(float).eq(1.0).all()
    err = capsys.readouterr().err
    assert "4 from the LLM (1 cut to the 75-token window), 2 rows without one use their fitted copy" in err
    by_name = dict(zip(manifest["bannerImage"], manifest["prompt"]))
    assert by_name["1.jpg"] == PROMPTS["1.jpg"]
    assert by_name["5.jpg"].startswith("Seaside land lots")  # a row without an LLM prompt: its fitted English copy
    # a rerun redoes nothing
    before = {p.name: p.read_bytes() for p in out.glob("*.jpg")}
    m2.main(flags(f"--OUT_DIR={out}"))
    assert "6 already done, 0 to generate" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.glob("*.jpg")} == before


def test_a_prompt_file_whose_values_are_not_text_is_refused_naming_the_rows(m2, flags, sample_dir):
    files.write_json(sample_dir / "test" / "llava_prompt.json", {"1.jpg": "a red car", "3.jpg": 7, "4.jpg": None})
    with pytest.raises(knobs.InputError, match=r"llava_prompt\.json.*2 row\(s\) hold no text.*3\.jpg.*4\.jpg"):
        m2.read_inputs(knobs.configure(m2, flags(), env={"SMOKE": "1"}))


def test_lora_is_applied_and_scale_zero_is_the_base_model(m2, flags, lora_dir, tmp_path):
    cfg = knobs.configure(m2, flags("--LIMIT=1"), env={"SMOKE": "1"})
    rows, llm = m2.read_inputs(cfg)
    calls = [(llm[rows[0].id], None, 123)]
    with_adapter = m2.load_pipeline(cfg, "cpu")
    assert "banners" in with_adapter.get_list_adapters().get("unet", [])  # an adapter, scaled at run time
    lora = np.asarray(m2.generate(with_adapter, cfg, calls)[0], dtype=np.int16)
    del with_adapter
    base = np.asarray(m2.generate(m2.load_pipeline(cfg.replace(LORA=""), "cpu"), cfg, calls)[0], dtype=np.int16)
    zero = np.asarray(m2.generate(m2.load_pipeline(cfg.replace(LORA_SCALE=0.0), "cpu"), cfg, calls)[0],
                      dtype=np.int16)
    half = np.asarray(m2.generate(m2.load_pipeline(cfg.replace(LORA_SCALE=0.5), "cpu"), cfg, calls)[0],
                      dtype=np.int16)
    fused_pipe = m2.load_pipeline(cfg.replace(FUSE_LORA=True, LORA_SCALE=0.5), "cpu")
    assert fused_pipe.get_list_adapters() == {}  # fused into the weights, no adapter left to apply it twice
    fused = np.asarray(m2.generate(fused_pipe, cfg, calls)[0], dtype=np.int16)
    del fused_pipe
    assert np.abs(lora - base).mean() > 2  # the LoRA changes the picture
    assert np.abs(zero - base).max() <= 1  # scale 0 gives the base model back
    assert np.abs(half - lora).mean() > 1 and np.abs(half - base).mean() > 1  # half the LoRA: neither
    assert np.abs(fused - half).max() <= 3  # fusing (at its scale) changes speed, not the picture
    with pytest.raises(knobs.InputError, match="LoRA not found"):
        m2.load_pipeline(cfg.replace(LORA=str(tmp_path / "nope")), "cpu")
    truncated = tmp_path / "truncated.safetensors"  # e.g. a copy cut short
    truncated.write_bytes((lora_dir / "pytorch_lora_weights.safetensors").read_bytes()[:300])
    with pytest.raises(knobs.InputError, match=r"truncated\.safetensors: unreadable LoRA file .*run/train_sd\.sh"):
        m2.load_pipeline(cfg.replace(LORA=str(truncated)), "cpu")


def test_kill_and_resume_keeps_finished_banners(m2, flags, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = m2.generate
    monkeypatch.setattr(m2, "generate", killed_on_call(real, 2))
    with pytest.raises(KeyboardInterrupt):
        m2.main(flags(f"--OUT_DIR={out}"))
    finished = {p.name: p.read_bytes() for p in out.glob("*.jpg")}
    assert len(finished) == 2
    monkeypatch.setattr(m2, "generate", real)
    m2.main(flags(f"--OUT_DIR={out}"))
    assert len(list(out.glob("*.jpg"))) == 6
    for name, data in finished.items():
        assert (out / name).read_bytes() == data  # finished banners untouched


def test_submission_mode_and_guard_retry_changes_only_the_seed(m2, flags, tmp_path, monkeypatch):
    m2.main(flags("--SUBMISSION", f"--SUBMISSION_DIR={tmp_path}", "--LIMIT=2", "--SEEDS=1,2"))
    for k in (1, 2):
        assert sorted(p.name for p in (tmp_path / f"submission{k}").iterdir()) == ["1.jpg", "3.jpg"]
        times = pd.read_csv(tmp_path / f"time_submission{k}.csv")
        assert list(times.columns) == ["fname", "time"] and (times["time"] > 0).all()
    assert np.abs(pixels(tmp_path / "submission1" / "1.jpg") - pixels(tmp_path / "submission2" / "1.jpg")).max() > 2
    real, seen = m2.generate, []

    def spy(pipe, cfg, calls):
        seen.append([(p, s) for p, _, s in calls])
        return real(pipe, cfg, calls)

    monkeypatch.setattr(m2, "generate", spy)
    m2.main(flags(f"--OUT_DIR={tmp_path / 'guarded'}", "--LIMIT=1", "--DUP_GUARD=1", "--DUP_MAX=-1",
                     "--DUP_MAX_TRIES=2"))
    assert len(seen) == 2 and seen[0][0][0] == seen[1][0][0] and seen[0][0][1] != seen[1][0][1]
    manifest = pd.read_csv(tmp_path / "guarded" / "manifest.csv")
    assert manifest["tries"].eq(2).all() and manifest["dup_similarity"].between(-1, 1).all()


def test_jpeg_on_disk_is_what_the_manifest_describes(m2, flags, tmp_path):
    m2.main(flags(f"--OUT_DIR={tmp_path / 'o'}", "--LIMIT=1", "--POSTPROCESS"))
    data = (tmp_path / "o" / "1.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.size) == ("JPEG", (1024, 533))
    manifest = pd.read_csv(tmp_path / "o" / "manifest.csv")
    assert manifest["bannerImage"].tolist() == ["1.jpg"] == sorted(p.name for p in (tmp_path / "o").glob("*.jpg"))


def test_text_layer_knobs_are_method2_knobs_too(m2, flags, tmp_path):
    """--DISCLAIMER=0 (a knob of the text layer) leaves the "không phải là thuốc" line off the row that has one (row 2)
    and changes nothing on a row without one (row 1)."""
    from inference import text_layer

    m2.main(flags(f"--OUT_DIR={tmp_path / 'with'}", "--LIMIT=2", "--TEXT_LAYER"))
    m2.main(flags(f"--OUT_DIR={tmp_path / 'without'}", "--LIMIT=2", "--TEXT_LAYER", "--DISCLAIMER=0"))
    assert (tmp_path / "with" / "1.jpg").read_bytes() == (tmp_path / "without" / "1.jpg").read_bytes()  # none there
    assert np.abs(pixels(tmp_path / "with" / "3.jpg") - pixels(tmp_path / "without" / "3.jpg")).mean() > 1
    assert recorded_settings(tmp_path / "without")["TEXT_LAYER"] == text_layer.recipe(
        text_layer.default_config(DISCLAIMER=False))


@pytest.mark.slow
def test_method2_sh_skips_what_is_up_to_date_and_redoes_what_changed(sample_dir, tmp_path):
    """The whole method in one command: a rerun redoes nothing; a new training knob retrains and regenerates, while
    the captions and the prompts (which do not read the LoRA) stay."""
    import os
    import subprocess
    import sys

    from core import REPO_ROOT

    write_fixtures(sample_dir)
    # the training rows' English copy (the translation stage's output; its own tests are in test_translation.py)
    train = dataset.read_info(sample_dir / "train" / "info.csv")
    files.write_csv(sample_dir / "train" / "info_trans.csv", train.assign(caption="an advertising banner " + train.id))
    env = {**os.environ, "SMOKE": "1", "DATA_DIR": str(sample_dir), "PYTHON": sys.executable}
    flags = [f"--train.OUT_DIR={tmp_path / 'lora'}", f"--generate.LORA={tmp_path / 'lora'}",
             f"--generate.OUT_DIR={tmp_path / 'out'}", "--generate.DUP_GUARD=0"]

    def run(*more):
        done = subprocess.run(["bash", str(REPO_ROOT / "run" / "method2.sh"), *flags, *more], env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    first = run()
    assert first.count("running: python -m") == 4
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 6
    captions = (sample_dir / "train" / "llava_caption.json").read_bytes()
    prompts_file = (sample_dir / "test" / "llava_prompt.json").read_bytes()
    second = run()
    assert second.count("up to date (same inputs and settings): skipped") == 4 and "running:" not in second
    third = run("--train.NUM_EPOCHS=1")
    steps = third.split("== method 2, step")[1:]
    assert "skipped" in steps[0] and "skipped" in steps[2]  # captions and prompts stay
    assert "changed: NUM_EPOCHS" in steps[1] and "running:" in steps[1]  # retrained
    assert "running:" in steps[3] and "--OVERWRITE=1" in steps[3]  # the new LoRA: banners regenerated
    assert (sample_dir / "train" / "llava_caption.json").read_bytes() == captions
    assert (sample_dir / "test" / "llava_prompt.json").read_bytes() == prompts_file
    assert (tmp_path / "lora.stale" / "pytorch_lora_weights.safetensors").is_file()  # the old LoRA is kept aside
    # a knob that cannot change the LoRA (validation strips) redoes nothing
    fourth = run("--train.NUM_EPOCHS=1", "--train.VALIDATION=0")
    assert fourth.count("up to date (same inputs and settings): skipped") == 4, fourth
    # a redo killed half-way is resumed by the next run, not set aside once more
    stamp = files.read_json(sample_dir / ".method2" / "generate.json")
    files.write_json(sample_dir / ".method2" / "generate.json", {**stamp, "pending": True})
    fifth = run("--train.NUM_EPOCHS=1")
    assert "resuming an unfinished run" in fifth and "set aside" not in fifth and "--OVERWRITE=1" not in fifth
    # a killed redo of generation: rows not yet redone hold the old banners, so the resume overwrites too
    files.write_json(sample_dir / ".method2" / "generate.json", {**stamp, "pending": True, "redo": True})
    sixth = run("--train.NUM_EPOCHS=1")
    assert "resuming an unfinished run" in sixth and "set aside" not in sixth and "--OVERWRITE=1" in sixth
