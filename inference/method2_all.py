"""
The whole of Method 2 in one command (run/method2.sh): captions -> training -> prompts -> generation.

Each step is the stage's own script with its own knobs; pass a step's flags with its name in front:

    bash run/method2.sh --caption.GREEDY=1 --train.NUM_EPOCHS=20 --prompts.K=3 --generate.STEPS=25

A step is SKIPPED, and says so, when its output exists and a stamp says it was made from the same inputs (content
hashes of the files it reads, the upstream steps' outputs included) and the same settings (the step's resolved knobs,
less those that cannot change the output: progress bars, threads, batch sizes of per-row-seeded stages). A changed
setting or input redoes that step, and through the hashes every step after it whose inputs changed, never less:
a new training knob retrains and regenerates, but the prompts (which read the captions, not the LoRA) stay.

A redone step does not mix old and new work: the captions and prompts files, and the training folder (LoRA and
checkpoints), are set aside (renamed *.stale, not deleted: they may be paid work); generation overwrites
(--OVERWRITE=1).

reads   what the four stages read (README: Method 2)
writes  what they write, and $DATA_DIR/.method2/<step>.json (the stamps)
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from core import files, knobs
from inference import method2

DATA_DIR = "data"  # the data folder (also from env DATA_DIR: the run/*.sh contract)
STEPS = ("caption", "train", "prompts", "generate")  # the steps to consider, in order (a subset: --STEPS=prompts,generate)
FORCE = ()  # steps to redo even when up to date (e.g. --FORCE=generate)
DRY_RUN = False  # only say which steps are up to date and which would run

STAGES = {  # step -> (module, knobs that cannot change its output)
    "caption": ("preprocessing.caption", ("PROGRESS", "CPU_THREADS", "DEVICE", "BATCH_SIZE", "SAVE_EVERY", "SKIP_BAD")),
    "train": ("training.train_lora", None),  # None: the stage's own list of knobs left out of its fingerprint
    "prompts": ("prompt_engineer.generate_prompts", ("PROGRESS", "CPU_THREADS", "DEVICE", "BATCH_SIZE")),
    "generate": ("inference.method2", ("DEVICE", "BATCH_SIZE", "OVERWRITE", "CACHE_DIR", "VAE_SLICING", "COMPILE",
                                       "CHANNELS_LAST")),
}


def split_flags(argv, steps):
    """`--step.NAME=value` flags per step, and the orchestrator's own flags."""
    per_step, own = {s: [] for s in steps}, []
    for arg in argv:
        head = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        if "." in head and head.split(".", 1)[0] in STAGES:
            step, rest = arg[2:].split(".", 1)
            per_step.setdefault(step, []).append("--" + rest)
        else:
            own.append(arg)
    return per_step, own


def step_paths(step, cfg):
    """(input files and folders, the output whose presence means done) of a step, from its resolved config."""
    data = Path(cfg.DATA_DIR)
    train, test = data / "train", data / "test"
    trans = [train / "info_trans.csv", test / "info_trans.csv"]
    if step == "caption":
        out = Path(cfg.OUTPUT) if cfg.OUTPUT else data / cfg.SPLIT / "llava_caption.json"
        return [data / cfg.SPLIT / "info.csv", data / cfg.SPLIT / "info_trans.csv", data / cfg.SPLIT / "images"], out
    if step == "train":
        captions = Path(cfg.CAPTIONS) if cfg.CAPTIONS else train / "llava_caption.json"
        return [train / "info.csv", *trans[:1], train / "images", captions], Path(cfg.OUT_DIR) / method2._LORA_FILE
    if step == "prompts":
        return [train / "info.csv", test / "info.csv", *trans, train / cfg.CAPTION_FILE], test / cfg.OUT_FILE
    if step == "generate":
        lora = Path(cfg.LORA)
        lora = lora / method2._LORA_FILE if cfg.LORA and lora.is_dir() else lora
        out = Path(cfg.SUBMISSION_DIR) / "submission1_manifest.csv" if cfg.SUBMISSION else \
            Path(cfg.OUT_DIR) / "manifest.csv"
        prompt_report = test / (Path(cfg.PROMPT_FILE).stem + "_report.json")
        return [test / "info.csv", test / cfg.INFO_FILE, test / cfg.PROMPT_FILE, prompt_report, train / "images",
                *([lora] if cfg.LORA else [])], out
    raise knobs.InputError(f"unknown step {step!r}; steps: {', '.join(STAGES)}")


def fingerprint(path):
    """Content hash of a file; for a folder, names + sizes + mtimes (banners are many and large); '' if absent."""
    path = Path(path)
    if path.is_file():
        return files.file_hash(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.iterdir()):
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()
    return ""


def stamp_of(step, cfg, ignored):
    inputs, _ = step_paths(step, cfg)
    settings = {k: v for k, v in cfg.as_dict().items() if k not in ignored}
    return {"settings": json.loads(json.dumps(settings, default=list)),
            "inputs": {str(p): fingerprint(p) for p in inputs}, "smoke": knobs.smoke_enabled()}


def set_aside(path):
    """Rename a file or folder to *.stale (then *.stale2, ...; never over an older one): redone work never mixes with
    the old, which is kept (it may be paid work)."""
    if not path.exists():
        return
    stem, suffix = (path.stem, path.suffix) if path.is_file() else (path.name, "")
    number = 1
    while (stale := path.with_name(f"{stem}.stale{number if number > 1 else ''}{suffix}")).exists():
        number += 1
    path.replace(stale)
    print(f"   {path} set aside as {stale}", flush=True)
    return stale


def set_aside_locked(folder):
    """set_aside for the training folder, under the lock its run holds: a live run there is refused (naming its pid),
    never moved. The lock taken moves with the folder and is removed there."""
    if not folder.exists():
        return
    with files.FolderLock(folder) as lock:
        stale = set_aside(folder)
    (stale / lock.path.name).unlink(missing_ok=True)


def run_step(step, module, flags, cfg, stale, redo):
    """Run the stage as its own process (exactly what bash run/<stage>.sh runs), with a clean restart if stale.
    `redo`: this run, or the unfinished one it resumes, replaces older work (generation then overwrites banners)."""
    _, out = step_paths(step, cfg)
    extra = []
    if stale and step in ("caption", "prompts"):
        set_aside(out)
    elif stale and step == "train":
        set_aside_locked(out.parent)  # the old LoRA, its checkpoints and logs: another run's, not to resume
    if redo and step == "generate":  # rows not yet redone still hold banners of the old settings
        extra = ["--OVERWRITE=1"]
    cmd = [sys.executable, "-m", module, *flags, *extra]
    print(f"   running: python -m {module} {' '.join(flags + extra)}", flush=True)
    done = subprocess.run(cmd, env=step_env())
    if done.returncode != 0:
        raise knobs.InputError(f"step {step} failed (exit {done.returncode}); fix it and rerun: finished steps are "
                               f"kept")


def step_env():
    """The environment of a step: OUT_DIR (the contract's "where a generation stage writes its images") is passed to
    the generation step as a flag instead, so that training does not write its LoRA into the banner folder."""
    return {k: v for k, v in os.environ.items() if k != "OUT_DIR"}


def main(argv=None):
    import importlib

    argv = sys.argv[1:] if argv is None else list(argv)
    per_step, own = split_flags(argv, STAGES)
    cfg = knobs.configure(globals(), own)
    if os.environ.get("OUT_DIR") and not any(f.startswith("--OUT_DIR") for f in per_step["generate"]):
        per_step["generate"].insert(0, f"--OUT_DIR={os.environ['OUT_DIR']}")
    unknown = [s for s in (*cfg.STEPS, *cfg.FORCE) if s not in STAGES]
    if unknown:
        raise knobs.InputError(f"unknown step(s) {unknown}; steps: {', '.join(STAGES)}")
    stamps = Path(cfg.DATA_DIR) / ".method2"
    for number, step in enumerate(STAGES, start=1):
        if step not in cfg.STEPS:
            continue
        module_name, ignored = STAGES[step]
        module = importlib.import_module(module_name)
        flags = [f"--DATA_DIR={cfg.DATA_DIR}", *per_step.get(step, [])]
        step_cfg = knobs.configure(module, flags, env=step_env())
        ignored = ignored if ignored is not None else tuple(module._NOT_FINGERPRINTED)
        stamp = stamp_of(step, step_cfg, ignored)
        saved = files.read_json(stamps / f"{step}.json")
        # a run of these settings that started but did not finish (killed): resume it, do not set it aside again
        pending = bool(saved and saved.pop("pending", False))
        was_redo = bool(saved and saved.pop("redo", False))  # ... and whether that run was replacing older work
        _, out = step_paths(step, step_cfg)
        print(f"== method 2, step {number}/4: {step} -> {out}", flush=True)
        if saved == stamp and not pending and out.exists() and step not in cfg.FORCE:
            print("   up to date (same inputs and settings): skipped", flush=True)
            continue
        why = ("forced" if step in cfg.FORCE else "no earlier run" if saved is None else
               "resuming an unfinished run" if pending and saved == stamp else
               "its output is missing" if not out.exists() else "changed: " + ", ".join(
                   [f"{k}" for k in stamp["settings"] if saved["settings"].get(k) != stamp["settings"][k]] +
                   [Path(p).name for p in stamp["inputs"] if saved["inputs"].get(p) != stamp["inputs"][p]])[:300])
        print(f"   to run ({why})", flush=True)
        if cfg.DRY_RUN:
            continue
        stale = saved is not None and saved != stamp
        files.write_json(stamps / f"{step}.json", {**stamp, "pending": True, "redo": stale or was_redo})
        run_step(step, module_name, flags, step_cfg, stale=stale, redo=stale or was_redo)
        files.write_json(stamps / f"{step}.json", stamp_of(step, step_cfg, ignored))  # outputs now exist: re-hash


if __name__ == "__main__":
    knobs.run_main(main)
