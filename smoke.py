"""Tiny random stand-ins for every model family the pipeline uses.

The real checkpoints (Stable Diffusion, CLIP, LLaVA, translators...) are gigabytes and live on
a model hub we cannot reach in tests or CI. Each builder here makes a model with the same
architecture family, a few thousand times smaller and with random weights, and saves it with
working tokenizer/processor files, so the library's standard loader runs on the folder:

    import smoke
    pipe = StableDiffusionPipeline.from_pretrained(smoke.smoke_model("sd15"))

Outputs are noise, of course; the point is to exercise the code paths end to end, offline.

    python -m smoke [--all | family ...]    # build (if missing) and print the cached paths
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import model_facts

FAMILIES = ("sd15", "sd21", "sentence", "open_clip", "llava", "causal_lm", "seq2seq", "lcm_lora_sd15", "taesd")
ROOT = Path(__file__).resolve().parent
MARKER = ".complete"  # written last: a folder without it is a half build
SEED = 0
_lock = threading.Lock()  # builds seed torch's global RNG: one at a time per process

# Small Vietnamese + English ad-copy corpus to train the tokenizers on.
_CORPUS = (
    "Giảm giá 50% cho tất cả sản phẩm trong tuần này!",
    "Mua một tặng một, chỉ có tại cửa hàng của chúng tôi.",
    "Cà phê sữa đá thơm ngon, đậm đà hương vị Việt Nam.",
    "Khuyến mãi mùa hè: miễn phí vận chuyển toàn quốc.",
    "Điện thoại thông minh mới nhất với camera siêu nét.",
    "Ưu đãi đặc biệt dành cho khách hàng thân thiết.",
    "Trà sữa trân châu đường đen, uống là ghiền.",
    "Nhanh tay đặt hàng ngay hôm nay để nhận quà tặng hấp dẫn.",
    "Thời trang công sở thanh lịch, phong cách hiện đại.",
    "Khóa học tiếng Anh trực tuyến cho người mới bắt đầu.",
    "Bánh mì nóng giòn, nhân thịt nướng thơm lừng.",
    "Du lịch Đà Nẵng, Hội An, Phú Quốc với giá cực sốc.",
    "Mỹ phẩm thiên nhiên, an toàn cho làn da nhạy cảm.",
    "Xe máy điện tiết kiệm, thân thiện với môi trường.",
    "Căn hộ cao cấp view sông, thanh toán chỉ 30% nhận nhà.",
    "Siêu sale cuối năm, hàng ngàn deal giá sốc đang chờ bạn.",
    "Big sale this weekend: up to 70% off everything!",
    "Buy one, get one free at all our stores.",
    "Fresh iced coffee with condensed milk, the taste of Vietnam.",
    "Free nationwide shipping on all summer orders.",
    "The newest smartphone with an ultra sharp camera.",
    "Exclusive offers for our loyal customers.",
    "Order today and get an attractive gift.",
    "Elegant office fashion with a modern style.",
    "Online English courses for beginners.",
    "A colorful advertising banner with a bright red background and bold white text.",
    "A bowl of pho with fresh herbs on a wooden table, product photo, studio lighting.",
    "A smiling young woman holding a cup of milk tea, pastel colors, clean layout.",
    "A modern electric scooter on a city street at sunset, high quality, 4k.",
    "Describe the image in detail.",
    "Translate the following Vietnamese text into English.",
    "Write a short prompt for a banner advertising this product.",
)


def smoke_dir():
    """Cache root: $SMOKE_CACHE, else <repo>/.cache/smoke_models (git-ignored)."""
    return os.environ.get("SMOKE_CACHE") or str(ROOT / ".cache" / "smoke_models")


def _build_key():
    # The marker stores a hash of this file, of the real models' facts it copies (model_facts.py), and of the libraries
    # that save the folders, so changing a recipe or upgrading transformers/diffusers invalidates old caches.
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256(Path(__file__).read_bytes() + (ROOT / "model_facts.py").read_bytes())
    for package in ("torch", "transformers", "diffusers", "tokenizers", "open_clip_torch", "sentence-transformers"):
        try:
            h.update(f"{package}={version(package)}".encode())
        except PackageNotFoundError:
            pass
    return h.hexdigest()[:16]


def _is_complete(folder):
    try:
        return (Path(folder) / MARKER).read_text().strip() == _build_key()
    except OSError:
        return False


def smoke_model(family):
    """Path of the cached tiny model for `family`, building it first if needed."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    final = Path(smoke_dir()) / family
    if _is_complete(final):
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the final folder (same filesystem) and rename it into place only when
    # complete, so an interrupted build never looks cached.
    tmp = Path(tempfile.mkdtemp(prefix=f".{family}.building-", dir=final.parent))
    try:
        build(family, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        (tmp / MARKER).write_text(_build_key() + "\n")
        if final.exists() and not _is_complete(final):
            shutil.rmtree(final, ignore_errors=True)  # half-built or stale leftovers
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final):  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(final)


def build(family, folder):
    """Build the tiny model `family` into `folder` (same weights every time)."""
    import torch
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    Path(folder).mkdir(parents=True, exist_ok=True)
    from core.progress import quiet_libraries

    # fork_rng: seeding must not change the caller's random stream; no "Writing model shards" bars for tiny models
    with _lock, torch.random.fork_rng(devices=[]), quiet_libraries():
        torch.manual_seed(SEED)
        globals()["_build_" + family](str(folder))


# ---------------------------------------------------------------------------- tokenizers

def _clip_vocab():
    """The real CLIP BPE vocab (49408 tokens) and merges, rebuilt from the file open_clip ships."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]  # CLIP keeps the first 48894
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def _bpe(special, vocab_size=600):
    """Byte-level BPE trained on _CORPUS: encodes any text (Vietnamese, emoji) without unk."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer)
    return tok


def _fast(tok, model_max_length=256, **kw):
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, **kw)


# ---------------------------------------------------------------------------- families

def _sd_unet(v_prediction):
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        # SD 2.x: per-block head dims and linear projections in the transformer blocks
        attention_head_dim=(2, 4) if v_prediction else 8,
        use_linear_projection=v_prediction, upcast_attention=v_prediction,
    )


def _sd(folder, v_prediction):
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    unet = _sd_unet(v_prediction)
    # 4 blocks -> 3 downsamples -> latents are 1/8 of the image, as in the real VAE
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        block_out_channels=(32, 32, 64, 64), norm_num_groups=32, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407 if not v_prediction else 0,
        hidden_act="gelu" if v_prediction else "quick_gelu",  # OpenCLIP-H vs OpenAI CLIP-L
    ))
    betas = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                 beta_schedule="scaled_linear", set_alpha_to_one=False, steps_offset=1)
    if v_prediction:  # SD 2.1's own: the standard schedule, leading timesteps (zero-SNR is a sampling choice)
        scheduler = DDIMScheduler.from_config(model_facts.SD21_SCHEDULER)
    else:  # the SD 1.5 reference's PNDM (not Realistic Vision's DEIS: see model_facts.REALISTIC_VISION_SCHEDULER)
        scheduler = PNDMScheduler(**betas, skip_prk_steps=True, prediction_type="epsilon")
    vocab, merges = _clip_vocab()
    # transformers 5: vocab/merges (not vocab_file/merges_file, which are silently ignored);
    # model_max_length must be set or padding to max_length overflows.
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77,
                              pad_token="!" if v_prediction else "<|endoftext|>")  # SD2 pads with "!"
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    # transformers saves only tokenizer.json; add the classic files for other readers
    with open(os.path.join(folder, "tokenizer", "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "tokenizer", "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


def _build_sd15(folder):
    _sd(folder, v_prediction=False)


def _build_sd21(folder):
    _sd(folder, v_prediction=True)


ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


def random_lora(unet, folder, rank=4, scale=0.02, targets=ATTENTION, kohya=False):
    """A LoRA of random weights for `unet` on the `targets` layers, saved as `pipe.load_lora_weights(folder)` reads
    it. Both factors are random (peft would start B at zero: a LoRA that does nothing), so loading it changes the
    pipeline's output. Used for the smoke acceleration adapter and by the benchmarks (an adapter of the real one's
    shape). `kohya`: the keys as the published LCM-LoRA file has them (lora_unet_<layer>.lora_down/lora_up/alpha,
    diffusers' convert_state_dict_to_kohya), which load_lora_weights converts on loading."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets)))
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn_like(param) * scale)
    layers = get_peft_model_state_dict(unet)
    if kohya:
        Path(folder).mkdir(parents=True, exist_ok=True)
        save_file(convert_state_dict_to_kohya({f"unet.{k}": v for k, v in layers.items()}),
                  Path(folder) / "pytorch_lora_weights.safetensors")
    else:
        if list(targets) == ATTENTION:  # diffusers' names; its conversion renames only attention keys, so a wider
            layers = convert_state_dict_to_diffusers(layers)  # LoRA keeps peft's (as training/lora.save_lora does)
        StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
    unet.delete_adapters(["default"])  # the caller's UNet as it was


def _build_lcm_lora_sd15(folder):
    # stand-in for latent-consistency/lcm-lora-sdv1-5: a LoRA on its layers (model_facts) of the smoke SD 1.5 UNet, in
    # its file's key layout (kohya: lora_unet_up_blocks_2_attentions_0_proj_in.lora_up.weight, ...)
    import model_facts
    random_lora(_sd_unet(v_prediction=False), folder, targets=model_facts.LCM_LORA_TARGETS, kohya=True)


def _build_taesd(folder):
    # stand-in for madebyollin/taesd: AutoencoderTiny with TAESD's layout (4 latent channels, 1/8 size), narrower
    from diffusers import AutoencoderTiny
    AutoencoderTiny(encoder_block_out_channels=(16,) * 4, decoder_block_out_channels=(16,) * 4,
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)).save_pretrained(folder)


def _build_sentence(folder):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer
    from sentence_transformers import SentenceTransformer

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # A fixed vocabulary (whole corpus words + single characters) instead of WordPieceTrainer, whose
    # tie-breaking varies from run to run (seen: 709 or 710 tokens), which made the weights differ.
    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)  # keep Vietnamese tones
    splitter = pre_tokenizers.BertPreTokenizer()
    words = sorted({w for s in _CORPUS for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(s))})
    chars = sorted({c for w in words for c in w})
    vocab = list(dict.fromkeys(special + chars + ["##" + c for c in chars] + words))
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = splitter
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    hf_tok = _fast(tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)

    bert = BertModel(BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=128, pad_token_id=tok.token_to_id("[PAD]")))
    # Transformer() loads from a folder, so stage the BERT files first.
    with tempfile.TemporaryDirectory() as stage:
        bert.save_pretrained(stage)
        hf_tok.save_pretrained(stage)
        model = SentenceTransformer(modules=[Transformer(stage), Pooling(32, "mean"), Normalize()],
                                    device="cpu")
        model.save(folder)


def _build_open_clip(folder):
    import open_clip
    from safetensors.torch import save_file
    model_cfg = {
        "embed_dim": 32,
        # head_width defaults to 64, which would give 0 heads at width 32
        "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 2, "width": 32, "head_width": 16},
        # vocab/context as real CLIP so open_clip's own SimpleTokenizer fits the model
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(folder, "open_clip_model.safetensors"))
    preprocess_cfg = {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, f, indent=2)


def _trained(tok):
    """(vocab, merges) of a trained tokenizers BPE, to build a transformers tokenizer class from."""
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]


def _ids(tokenizer, facts):
    """A generation config's token fields, written in the facts as token strings, as this tokenizer's ids."""
    def one(v):
        return [one(x) for x in v] if isinstance(v, list) else tokenizer.convert_tokens_to_ids(v)
    return {k: one(v) if k.endswith("token_id") else v for k, v in facts.items()}


def _qwen_tokenizer():
    """Qwen2.5's tokenizer class, special tokens and chat template over a tiny byte-level BPE trained on _CORPUS with
    Qwen's own pre-tokenizer; the special tokens come after the vocabulary, as in the real one."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    facts = model_facts.QWEN_TOKENIZER
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.train_from_iterator(_CORPUS, trainers.BpeTrainer(vocab_size=600, show_progress=False,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    vocab, merges = _trained(tok)
    for token in facts["special"]:
        vocab[token] = len(vocab)
    hf_tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=facts["bos_token"],
                            eos_token=facts["eos_token"], pad_token=facts["pad_token"], errors=facts["errors"],
                            model_max_length=131072, extra_special_tokens=facts["special"][1:])
    hf_tok.chat_template = model_facts.QWEN_CHAT_TEMPLATE
    return hf_tok


def _llava_tokenizer():
    """LLaVA-1.5's Llama tokenizer type (Metaspace BPE with byte fallback, <s> added to every text) trained on
    _CORPUS: <unk> <s> </s> and the 256 byte tokens first, then the BPE, then <image> and <pad>, as in the real one."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    facts = model_facts.LLAVA_TOKENIZER
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    special = facts["special"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(_CORPUS, trainers.BpeTrainer(vocab_size=600, special_tokens=special, show_progress=False))
    vocab, merges = _trained(tok)
    hf_tok = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=facts["add_bos_token"],
                            add_eos_token=facts["add_eos_token"], legacy=facts["legacy"],
                            padding_side=facts["padding_side"])
    image, pad = facts["added"]
    hf_tok.add_tokens([AddedToken(image, special=True, normalized=False)], special_tokens=True)
    hf_tok.add_special_tokens({"pad_token": pad})
    return hf_tok


def _build_causal_lm(folder):
    """Qwen2.5-7B-Instruct in miniature: a Qwen2 model with its tokenizer, chat template and generation config."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = _qwen_tokenizer()
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.eos_token_id, tie_word_embeddings=model_facts.QWEN_CONFIG["tie_word_embeddings"])
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(**_ids(tok, model_facts.QWEN_GENERATION))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def _build_llava(folder):
    """LLaVA-1.5 in miniature: its tokenizer type, chat template, generation config and image processor (resize
    the short side, center crop, the CLIP mean and std) with 32 px where the real one has 336."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = _llava_tokenizer()
    image_size, patch = 32, 8
    # initializer_range 0.3, not 0.02: at that scale a random 2-layer model answers every question alike (the
    # caption tests need each row's own answer)
    text_cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False, initializer_range=0.3)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=image_size, patch_size=patch,
                                       projection_dim=32),
        text_config=text_cfg, image_token_id=tok.convert_tokens_to_ids(model_facts.LLAVA_PROCESSOR["image_token"]),
        **model_facts.LLAVA_CONFIG)
    model = LlavaForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(**_ids(tok, model_facts.LLAVA_GENERATION))
    real = {k: v for k, v in model_facts.LLAVA_IMAGE_PROCESSOR.items() if k != "image_processor_type"}
    image_processor = CLIPImageProcessor(**{**real, "size": {"shortest_edge": image_size},
                                            "crop_size": {"height": image_size, "width": image_size}})
    # "default" drops the CLS token: (32/8)^2 = 16 image tokens; +1 tells the processor about CLS
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                               chat_template=model_facts.LLAVA_CHAT_TEMPLATE, **model_facts.LLAVA_PROCESSOR)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def _build_seq2seq(folder):
    from tokenizers import processors
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig
    tok = _bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # BART's special ids 0..4
    bos, pad, eos = 0, 1, 2
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    hf_tok = _fast(tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                   mask_token="<mask>")
    cfg = BartConfig(
        vocab_size=tok.get_vocab_size(), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=256, bos_token_id=bos, pad_token_id=pad, eos_token_id=eos,
        decoder_start_token_id=eos, forced_eos_token_id=eos, tie_word_embeddings=False)
    model = BartForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=bos, pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=eos,
        forced_eos_token_id=eos, max_new_tokens=16)
    model.save_pretrained(folder)
    hf_tok.save_pretrained(folder)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m smoke", description="Build tiny random models offline.")
    p.add_argument("families", nargs="*", metavar="family", help=f"any of {', '.join(FAMILIES)}")
    p.add_argument("--all", action="store_true", help="build every family (the default)")
    args = p.parse_args(argv)
    for family in (FAMILIES if args.all or not args.families else args.families):
        print(family, smoke_model(family), flush=True)


if __name__ == "__main__":
    sys.exit(main())
