"""
The whole of Method 2 in one command (run/method2.sh): captions -> training -> [distillation] -> prompts -> generation.
The distillation step (run/distill.sh: the consistency LoRA of the fast preset) is off by default: add it to STEPS.

Each step is the stage's own script with its own knobs; pass a step's flags with its name in front, and a config file
for one step as --<step>=FILE (its flags after it still win, as for the stage's own script):

    bash run/method2.sh --caption.GREEDY=1 --train.NUM_EPOCHS=20 --prompts.K=3 --generate.STEPS=25
    bash run/method2.sh --STEPS=caption,train,distill,prompts,generate --generate=config/method2_fast.py

Each stage declares what it reads and writes (its `stage_files(cfg)`: inputs, the file that means done, the settings
that change its output, what a redo sets aside, its lock); nothing here repeats a stage's paths or knobs. A step is
SKIPPED, and says so, when its output exists and a stamp says it was made from the same inputs (content hashes of the
files it reads, the upstream steps' outputs included) and the same settings. A changed setting or input redoes that
step, and through the hashes every step after it whose inputs changed, never less: a new training knob retrains and
regenerates, but the prompts (which read the captions, not the LoRA) stay.

A redone step does not mix old and new work: the captions and prompts files (with their records), and the training
folder (LoRA and checkpoints), are set aside (renamed *.stale, not deleted: they may be paid work) under the stage's
own lock, so work that another live run holds is never moved (the refusal names its pid); generation overwrites
(--OVERWRITE=1).

reads   what the four stages read (README: Method 2)
writes  what they write, and $DATA_DIR/.method2/<step>.json (the stamps)
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import models
from core import files, knobs

DATA_DIR = "data"  # the data folder (also from env DATA_DIR: the run/*.sh contract)
STEPS = ("caption", "train", "prompts", "generate")  # the steps to consider, in order (a subset: --STEPS=prompts,generate;
# the fast preset adds distill: --STEPS=caption,train,distill,prompts,generate)
FORCE = ()  # steps to redo even when up to date (e.g. --FORCE=generate)
DRY_RUN = False  # only say which steps are up to date and which would run

STAGES = {"caption": "preprocessing.caption", "train": "training.train_lora", "distill": "training.distill",
          "prompts": "prompt_engineer.generate_prompts", "generate": "inference.method2"}  # step -> its module


def split_flags(argv, steps):
    """`--step.NAME=value` flags and `--step=FILE` config files per step (in the order given), and the orchestrator's
    own flags."""
    per_step, own = {s: [] for s in steps}, []
    for arg in argv:
        head, _, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if "." in head and head.split(".", 1)[0] in STAGES:
            step, rest = arg[2:].split(".", 1)
            per_step.setdefault(step, []).append("--" + rest)
        elif head in STAGES:
            if not value.endswith((".py", ".cfg")):
                raise knobs.InputError(f"{arg}: --{head}= takes a config file for that step (NAME.py or NAME.cfg); "
                                       f"its knobs are --{head}.NAME=value")
            per_step.setdefault(head, []).append(value)
        else:
            own.append(arg)
    return per_step, own


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


def stamp_of(declared, smoke):
    return {"settings": files.as_json(declared.settings),
            "inputs": {str(p): fingerprint(p) for p in declared.inputs}, "smoke": smoke}


def set_aside(declared):
    """Rename what a redo replaces to *.stale (then *.stale2, ...; never over an older one), holding the stage's own
    lock: redone work never mixes with the old, which is kept (it may be paid work), and a live run's is never
    moved (refused, naming its pid)."""
    present = [Path(p) for p in declared.set_aside if Path(p).exists()]
    if not present:
        return
    with declared.lock:
        for path in present:
            stem, suffix = (path.stem, path.suffix) if path.is_file() else (path.name, "")
            number = 1
            while (stale := path.with_name(f"{stem}.stale{number if number > 1 else ''}{suffix}")).exists():
                number += 1
            path.replace(stale)
            if declared.lock.path.parent == path:  # the lock went along with its folder: not the set-aside's
                (stale / declared.lock.path.name).unlink(missing_ok=True)
            print(f"   {path} set aside as {stale}", flush=True)


def run_step(step, module, flags):
    """Run the stage as its own process (exactly what bash run/<stage>.sh runs)."""
    print(f"   running: python -m {module} {' '.join(flags)}", flush=True)
    done = subprocess.run([sys.executable, "-m", module, *flags], env=step_env())
    if done.returncode != 0:
        raise knobs.InputError(f"step {step} failed (exit {done.returncode}); fix it and rerun: finished steps are "
                               f"kept")


def step_env():
    """The environment of a step: OUT_DIR (the contract's "where a generation stage writes its images") is passed to
    the generation step as a flag instead, so that training does not write its LoRA into the banner folder."""
    return {k: v for k, v in os.environ.items() if k != "OUT_DIR"}


def why_run(step, cfg, stamp, saved, pending, done):
    """Why a step runs, in a few words (None: it is up to date and skipped)."""
    if saved == stamp and not pending and done.exists() and step not in cfg.FORCE:
        return None
    if step in cfg.FORCE:
        return "forced"
    if saved is None:
        return "no earlier run"
    if pending and saved == stamp:
        return "resuming an unfinished run"
    if not done.exists():
        return "its output is missing"
    changed = [k for k in stamp["settings"] if saved["settings"].get(k) != stamp["settings"][k]]
    changed += [k for k in saved["settings"] if k not in stamp["settings"]]
    changed += [Path(p).name for p in stamp["inputs"] if saved["inputs"].get(p) != stamp["inputs"][p]]
    changed += ["SMOKE"] if saved.get("smoke") != stamp["smoke"] else []
    return "changed: " + ", ".join(changed)[:300]


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
    chosen = [step for step in STAGES if step in cfg.STEPS]  # in the chain's order, whatever order STEPS lists
    modules = {step: importlib.import_module(STAGES[step]) for step in chosen}
    flags = {step: [f"--DATA_DIR={cfg.DATA_DIR}", *per_step.get(step, [])] for step in chosen}
    step_cfgs = {step: knobs.configure(modules[step], flags[step], env=step_env()) for step in chosen}
    if not cfg.DRY_RUN:  # every model of the chain resolves before captions are paid for
        models.check(models.method2_entries(step_cfgs), knobs.configure(models, []))
    for number, step in enumerate(chosen, start=1):
        module, step_cfg = modules[step], step_cfgs[step]
        declared = module.stage_files(step_cfg)
        stamp = stamp_of(declared, step_cfg.SMOKE)
        saved = files.read_json(stamps / f"{step}.json")
        # a run of these settings that started but did not finish (killed): resume it, do not set it aside again
        pending = bool(saved and saved.pop("pending", False))
        was_redo = bool(saved and saved.pop("redo", False))  # ... and whether that run was replacing older work
        print(f"== method 2, step {number}/{len(chosen)}: {step} -> {declared.done}", flush=True)
        why = why_run(step, cfg, stamp, saved, pending, declared.done)
        if why is None:
            print("   up to date (same inputs and settings): skipped", flush=True)
            continue
        print(f"   to run ({why})", flush=True)
        if cfg.DRY_RUN:
            continue
        stale = saved is not None and saved != stamp
        if stale:
            set_aside(declared)  # before the stamp says this run is under way: a refusal leaves no trace
        redo = stale or was_redo  # this run, or the unfinished one it resumes, replaces older work
        files.write_json(stamps / f"{step}.json", {**stamp, "pending": True, "redo": redo})
        run_step(step, STAGES[step], flags[step] + list(declared.redo_flags if redo else ()))
        # outputs now exist: re-hash
        files.write_json(stamps / f"{step}.json", stamp_of(module.stage_files(step_cfg), step_cfg.SMOKE))


if __name__ == "__main__":
    knobs.run_main(main)
