"""Every tiny model from smoke.py loads through its library's standard loader and runs once, and keeps the real
model's scheduler config, chat template, generation config, processor settings and tokenizer type (model_facts.py)."""
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import model_facts  # noqa: E402
import models  # noqa: E402
import smoke  # noqa: E402

VI = "Giảm giá 50% – trà sữa trân châu 🧋🎉 ngon tuyệt!"


@pytest.fixture(scope="session")
def model(tmp_path_factory):
    """model(family) -> folder; all tests share one cache, so each family is built once."""
    old = os.environ.get("SMOKE_CACHE")
    os.environ["SMOKE_CACHE"] = str(tmp_path_factory.mktemp("smoke_cache"))
    yield smoke.smoke_model
    if old is None:
        os.environ.pop("SMOKE_CACHE")
    else:
        os.environ["SMOKE_CACHE"] = old


def image(size=64):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------- diffusion

def test_clip_tokenizer_is_real_clip(model):
    import open_clip
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(model("sd15"), subfolder="tokenizer")
    assert len(tok) == 49408 and tok.model_max_length == 77
    a = tok("a red banner", padding="max_length", truncation=True).input_ids
    b = tok("a bowl of pho", padding="max_length", truncation=True).input_ids
    assert len(a) == len(b) == 77 and a != b
    # same ids as open_clip's own tokenizer (which pads with 0 instead of eos)
    ref = open_clip.tokenize(["a red banner"])[0].tolist()
    n = ref.index(0)
    assert a[:n] == ref[:n] and (ref[0], ref[n - 1]) == (49406, 49407)
    assert (Path(model("sd15")) / "tokenizer" / "vocab.json").exists()


def test_sd15_txt2img_and_img2img(model):
    from diffusers import PNDMScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(model("sd15"))
    assert pipe.vae_scale_factor == 8 and isinstance(pipe.scheduler, PNDMScheduler)
    assert pipe.scheduler.config.prediction_type == "epsilon" and pipe.safety_checker is None
    # Realistic Vision's betas; its DEIS scheduler is NOT mirrored (the Method 1 demo banners stay as they are)
    real = model_facts.REALISTIC_VISION_SCHEDULER
    assert {k: pipe.scheduler.config[k] for k in ("beta_start", "beta_end", "beta_schedule", "steps_offset")} == \
        {k: real[k] for k in ("beta_start", "beta_end", "beta_schedule", "steps_offset")}
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red banner", height=64, width=64, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="np").images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()

    i2i = StableDiffusionImg2ImgPipeline.from_pretrained(model("sd15"))
    i2i.set_progress_bar_config(disable=True)
    out = i2i("a red banner", image=image(), strength=0.5, num_inference_steps=2,
              generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (1, 64, 64, 3)


def test_sd21_v_prediction_with_the_real_schedule(model):
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(model("sd21"))
    s, u = pipe.scheduler, pipe.unet.config
    assert type(s).__name__ == model_facts.SD21_SCHEDULER["_class_name"] and isinstance(s, DDIMScheduler)
    # SD 2.1's own: the standard schedule with leading timesteps, no zero-terminal-SNR rescale
    for key, value in model_facts.SD21_SCHEDULER.items():
        if key in s.config:
            assert s.config[key] == value, key
    assert s.config.prediction_type == "v_prediction" and not s.config.rescale_betas_zero_snr
    assert u.use_linear_projection and list(u.attention_head_dim) == [2, 4]
    assert pipe.tokenizer.pad_token == "!"
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red banner", height=64, width=64, num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()


# ---------------------------------------------------------------------------- encoders

def test_sentence_encoder(model):
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(model("sentence"), device="cpu")
    emb = st.encode([VI, "Big sale this weekend"])
    assert emb.shape == (2, 32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)  # the Normalize module smoke.py adds
    assert not np.allclose(emb[0], emb[1])


def test_open_clip_local_dir(model):
    import open_clip
    name = "local-dir:" + model("open_clip")
    clip, _, preprocess = open_clip.create_model_and_transforms(name)
    tokenizer = open_clip.get_tokenizer(name)
    # the saved weights were loaded, not a fresh random init
    saved = load_file(os.path.join(model("open_clip"), "open_clip_model.safetensors"))
    assert torch.equal(clip.state_dict()["token_embedding.weight"], saved["token_embedding.weight"])
    clip.eval()
    with torch.no_grad():
        img = clip.encode_image(preprocess(image()).unsqueeze(0))
        txt = clip.encode_text(tokenizer(["a red banner", "a bowl of pho"]))
    assert img.shape == (1, 32) and txt.shape == (2, 32)
    assert not torch.allclose(txt[0], txt[1])


# ---------------------------------------------------------------------------- generators

def test_llava_generates(model):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    processor = AutoProcessor.from_pretrained(model("llava"))
    vlm = AutoModelForImageTextToText.from_pretrained(model("llava")).eval()
    assert not vlm.config.tie_word_embeddings
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == "USER: <image>\nDescribe the image. ASSISTANT:"  # llava-hf's template
    inputs = processor(images=image(), text=prompt, return_tensors="pt")
    assert inputs.input_ids[0, 0] == processor.tokenizer.bos_token_id  # the Llama tokenizer adds <s>, as the real
    # (32 / 8)^2 = 16 patch tokens, CLS dropped by the "default" strategy
    assert (inputs.input_ids == vlm.config.image_token_id).sum() == 16
    out = vlm.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    new = out[0, inputs.input_ids.shape[1]:]
    assert len(new) == 6 and processor.decode(new, skip_special_tokens=True).strip()


def test_llava_mirrors_the_real_processor_tokenizer_and_generation_config(model):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    processor = AutoProcessor.from_pretrained(model("llava"))
    vlm = AutoModelForImageTextToText.from_pretrained(model("llava"))
    real, ours = model_facts.LLAVA_IMAGE_PROCESSOR, processor.image_processor
    for key in ("do_resize", "resample", "do_center_crop", "do_rescale", "rescale_factor", "do_normalize",
                "image_mean", "image_std", "do_convert_rgb"):
        assert (list(getattr(ours, key)) if isinstance(real[key], list) else getattr(ours, key)) == real[key], key
    side = vlm.config.vision_config.image_size  # scaled down: 336 -> 32, the same shortest-edge resize + crop
    assert ours.size == {"shortest_edge": side} and ours.crop_size == {"height": side, "width": side}
    assert processor.chat_template == model_facts.LLAVA_CHAT_TEMPLATE
    for key, value in model_facts.LLAVA_PROCESSOR.items():
        assert getattr(processor, key) == value, key
    tok, facts = processor.tokenizer, model_facts.LLAVA_TOKENIZER
    # the file names LlamaTokenizer; transformers 5 loads llava's tokenizer.json generically (TokenizersBackend),
    # for the real model as for this one: what matters is the behaviour checked below
    saved = json.loads((Path(model("llava")) / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == facts["tokenizer_class"] and tok.padding_side == facts["padding_side"]
    assert tok.convert_ids_to_tokens([0, 1, 2]) == facts["special"]
    assert tok.convert_ids_to_tokens([len(tok) - 2, len(tok) - 1]) == facts["added"]  # after the vocabulary
    assert tok(VI).input_ids[0] == tok.bos_token_id and tok(VI).input_ids[-1] != tok.eos_token_id
    assert tok.decode(tok(VI, add_special_tokens=False).input_ids) == VI  # byte fallback: nothing is <unk>
    generation = vlm.generation_config
    assert {k: getattr(generation, k) for k in model_facts.LLAVA_GENERATION} == \
        {k: tok.convert_tokens_to_ids(v) for k, v in model_facts.LLAVA_GENERATION.items()}
    assert generation.do_sample in (None, False) and generation.repetition_penalty in (None, 1.0)
    for key, value in model_facts.LLAVA_CONFIG.items():
        assert getattr(vlm.config, key) == value, key


def test_causal_lm_mirrors_qwen(model):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model("causal_lm"))
    lm = AutoModelForCausalLM.from_pretrained(model("causal_lm"))
    facts = model_facts.QWEN_TOKENIZER
    assert type(tok).__name__ == facts["tokenizer_class"] and lm.config.model_type == "qwen2"
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (facts["bos_token"], facts["eos_token"], facts["pad_token"])
    assert tok.padding_side == "right"  # not set by Qwen: the stage pads on the left itself
    assert tok.chat_template == model_facts.QWEN_CHAT_TEMPLATE
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                        "<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert tok.convert_ids_to_tokens(tok("<|im_start|>user", add_special_tokens=False).input_ids)[0] == "<|im_start|>"
    generation = {k: getattr(lm.generation_config, k) for k in model_facts.QWEN_GENERATION}
    expected = {k: ([tok.convert_tokens_to_ids(x) for x in v] if isinstance(v, list) else tok.convert_tokens_to_ids(v))
                if k.endswith("token_id") else v for k, v in model_facts.QWEN_GENERATION.items()}
    assert generation == expected


def test_causal_lm_generates_batched(model):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model("causal_lm"), padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(model("causal_lm")).eval()
    assert tok.padding_side == "left" and tok.pad_token is not None and tok.chat_template
    assert not lm.config.tie_word_embeddings
    assert tok.decode(tok(VI, add_special_tokens=False).input_ids) == VI  # byte-level: lossless
    prompts = [tok.apply_chat_template([{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True)
               for c in (VI, "Write a banner prompt for coffee, please.")]
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = lm.generate(**batch, max_new_tokens=5, min_new_tokens=5, do_sample=False, repetition_penalty=1.0)
    texts = tok.batch_decode(out[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
    assert all(t.strip() for t in texts)
    one = tok(prompts[:1], return_tensors="pt", add_special_tokens=False)
    alone = lm.generate(**one, max_new_tokens=5, min_new_tokens=5, do_sample=False, repetition_penalty=1.0)
    assert tok.decode(alone[0, one.input_ids.shape[1]:], skip_special_tokens=True) == texts[0]


def test_seq2seq_generates(model):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model("seq2seq"))
    mt = AutoModelForSeq2SeqLM.from_pretrained(model("seq2seq")).eval()
    ids = tok(VI).input_ids
    assert tok.unk_token_id not in ids and tok.decode(ids, skip_special_tokens=True) == VI
    batch = tok([VI, "Cà phê sữa đá"], return_tensors="pt", padding=True)
    out = mt.generate(**batch, max_new_tokens=6, min_new_tokens=3, do_sample=False)
    assert out.shape[0] == 2
    assert all(t.strip() for t in tok.batch_decode(out, skip_special_tokens=True))


# ---------------------------------------------------------------------------- the cache

def test_half_built_folder_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOKE_CACHE", str(tmp_path))
    half = tmp_path / "causal_lm"
    half.mkdir()
    (half / "config.json").write_text("{ truncated")  # a killed build, no completion marker
    assert smoke.smoke_model("causal_lm") == str(half)
    assert (half / smoke.MARKER).exists() and (half / "model.safetensors").exists()
    assert not list(tmp_path.glob(".*building*"))  # no temp folders left behind


def test_concurrent_callers_share_one_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOKE_CACHE", str(tmp_path))
    with ThreadPoolExecutor(3) as pool:
        paths = set(pool.map(smoke.smoke_model, ["seq2seq"] * 3))
    assert paths == {str(tmp_path / "seq2seq")}
    assert [p.name for p in tmp_path.iterdir()] == ["seq2seq"]


@pytest.mark.slow
@pytest.mark.parametrize("family", smoke.FAMILIES)
def test_build_is_deterministic(family, tmp_path):
    smoke.build(family, tmp_path / "a")
    smoke.build(family, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.safetensors"))
    assert files
    for f in files:
        a, b = load_file(tmp_path / "a" / f), load_file(tmp_path / "b" / f)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f


def test_cli_prints_paths(model, capsys):
    smoke.main(["open_clip"])
    assert capsys.readouterr().out.split() == ["open_clip", model("open_clip")]


def test_build_leaves_caller_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    smoke.build("causal_lm", tmp_path)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_models_build_and_load_without_progress_bars(tmp_path, monkeypatch, capfd):
    """No "Writing model shards" / "Loading weights" bars (nor their escape codes) for tiny models: a log captured
    without a terminal stays readable."""
    from transformers import AutoModelForSeq2SeqLM

    monkeypatch.setenv("SMOKE_CACHE", str(tmp_path))
    models.load(AutoModelForSeq2SeqLM.from_pretrained, "org/not-downloaded", "translator", smoke=True)
    out = "".join(capfd.readouterr())
    assert "Writing model shards" not in out and "Loading weights" not in out and "\x1b[" not in out, out
    from transformers.utils import logging

    assert logging.is_progress_bar_enabled()  # restored after the build and the load
