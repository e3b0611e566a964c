"""run/method2.sh (inference/method2_all.py) with other runs around it, and the file helpers it relies on: locks that
name their pid, a stale step never set aside while a live run holds that stage's lock, each stage declaring its own
files. Real processes hold the locks (a `python -c` that takes core.files.FolderLock and sleeps)."""
import os
import subprocess
import sys

import pytest

from core import REPO_ROOT, files, knobs
from inference import method2_all
from preprocessing import caption
from prompt_engineer import generate_prompts
from training import train_lora
from training.lora import LORA_FILE


def test_lock_names_the_pid_holding_it_and_a_dead_runs_lock_is_taken_over(tmp_path, lock_holder):
    holder = lock_holder(tmp_path / "out")
    assert (tmp_path / "out" / ".lock").read_text().split()[0] == str(holder.pid)
    with pytest.raises(knobs.InputError) as refused:
        with files.FolderLock(tmp_path / "out"):
            pass
    assert f"held by pid {holder.pid}" in str(refused.value) and "\n" not in str(refused.value)
    holder.kill()
    holder.wait()
    with files.FolderLock(tmp_path / "out") as lock:  # its run is gone: taken over, with our pid in it
        assert lock.owner() == os.getpid()
    assert not (tmp_path / "out" / ".lock").exists()


def test_a_lock_where_none_can_be_written_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(knobs.InputError, match=r"cannot write the lock file .*a_file/out/\.lock"):
        with files.FolderLock(tmp_path / "a_file" / "out"):
            pass
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(knobs.InputError, match=r"cannot write the lock file .*ro/\.lock"):
            with files.FolderLock(tmp_path / "ro"):
                pass


def write_train_stamp(data_dir, out_dir, *flags):
    """The stamp an earlier chain run (run A) left for its training step."""
    cfg = knobs.configure(train_lora, [f"--DATA_DIR={data_dir}", f"--OUT_DIR={out_dir}", *flags])
    stamp = method2_all.stamp_of(train_lora.stage_files(cfg), cfg.SMOKE)
    files.write_json(data_dir / ".method2" / "train.json", {**stamp, "pending": True, "redo": False})
    return stamp


def test_a_second_chain_never_sets_aside_a_folder_that_a_live_run_holds(sample_dir, tmp_path, lock_holder,
                                                                         monkeypatch):
    """Run A trains into lora/ (its trainer holds lora/.lock); run B, with another training knob, finds A's step
    stale: it refuses naming A's pid, and A's folder, files and stamp are untouched."""
    monkeypatch.setenv("SMOKE", "1")
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / LORA_FILE).write_bytes(b"run A's LoRA")
    (lora / "losses.csv").write_text("step,loss\n1,0.5\n")
    stamp_a = write_train_stamp(sample_dir, lora, "--NUM_EPOCHS=1")
    holder = lock_holder(lora)
    before = sorted(p.name for p in lora.iterdir())
    with pytest.raises(knobs.InputError) as refused:
        method2_all.main([f"--DATA_DIR={sample_dir}", "--STEPS=train", f"--train.OUT_DIR={lora}",
                          "--train.NUM_EPOCHS=3"])
    assert f"held by pid {holder.pid}" in str(refused.value)
    assert sorted(p.name for p in lora.iterdir()) == before and (lora / LORA_FILE).read_bytes() == b"run A's LoRA"
    assert not list(tmp_path.glob("lora.stale*"))
    assert files.read_json(sample_dir / ".method2" / "train.json") == {**stamp_a, "pending": True, "redo": False}


def test_set_aside_moves_a_dead_runs_work_without_its_lock(sample_dir, tmp_path, monkeypatch):
    """The same stale step once run A is gone: its folder is set aside whole, and no lock file travels with it."""
    monkeypatch.setenv("SMOKE", "1")
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / LORA_FILE).write_bytes(b"run A's LoRA")
    cfg = knobs.configure(train_lora, [f"--DATA_DIR={sample_dir}", f"--OUT_DIR={lora}"])
    method2_all.set_aside(train_lora.stage_files(cfg))
    assert not lora.exists() and (tmp_path / "lora.stale" / LORA_FILE).read_bytes() == b"run A's LoRA"
    assert sorted(p.name for p in (tmp_path / "lora.stale").iterdir()) == [LORA_FILE]


def test_each_stage_declares_its_files_and_the_settings_its_resume_is_keyed_on(sample_dir):
    env = {"SMOKE": "1"}
    cap = knobs.configure(caption, [f"--DATA_DIR={sample_dir}", "--GREEDY=1"], env=env)
    declared = caption.stage_files(cap)
    assert declared.done == sample_dir / "train" / "llava_caption.json"
    assert declared.done in declared.set_aside and sample_dir / "train" / "images" in declared.inputs
    assert declared.settings["GREEDY"] is True and "SEED" not in declared.settings  # greedy: the seed is unused
    assert declared.lock.path.parent == declared.done.parent
    slower = caption.stage_files(cap.replace(BATCH_SIZE=1, PROGRESS=False, CPU_THREADS=1))
    assert slower.settings == declared.settings  # speed knobs never redo a step
    prm = knobs.configure(generate_prompts, [f"--DATA_DIR={sample_dir}", "--K=0"], env=env)
    declared = generate_prompts.stage_files(prm)
    assert declared.done == sample_dir / "test" / "llava_prompt.json"
    assert generate_prompts.report_path(prm) in declared.set_aside and declared.settings["K"] == 0


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_atomic_writes_remove_what_a_killed_writer_left_and_share_one_file_mode(tmp_path, lock_holder):
    orphan = tmp_path / f".out.json.{dead_pid()}-0a1b2c3d.tmp"  # what a kill during a write leaves
    orphan.write_text("{half")
    live = lock_holder(tmp_path / "elsewhere")  # a live writer's temporary file is not an orphan
    in_flight = tmp_path / f".out.json.{live.pid}-0a1b2c3d.tmp"
    in_flight.write_text("{")
    other = tmp_path / f".other.json.{dead_pid()}-0a1b2c3d.tmp"
    other.write_text("{")
    files.write_json(tmp_path / "out.json", {"a": "b"})
    assert not orphan.exists() and in_flight.exists() and other.exists()  # only the file being written is looked at
    with files.FolderLock(tmp_path):  # a run that takes the folder cleans all of it
        assert not other.exists() and in_flight.exists()
    mode = files.file_mode()  # the user's ordinary mode (0644 under umask 022), read without changing the umask
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == mode == files.file_mode()
    # a file a library wrote 0600 (safetensors does) gets the same mode when it is moved into place
    written = tmp_path / "lib.bin"
    written.write_bytes(b"x")
    written.chmod(0o600)
    files.move_into_place(written, tmp_path / "final.bin")
    assert (tmp_path / "final.bin").stat().st_mode & 0o777 == mode


def test_fitting_batches_halve_on_out_of_memory_and_say_so_when_one_does_not_fit():
    """The one out-of-memory helper of the stages (core/batching.py, on accelerate's find_executable_batch_size). A GPU
    cannot exist here: the error is torch's own, with CUDA's wording."""
    import torch

    from core import batching

    limit, seen, said = [3], [], []

    def square(chunk):
        seen.append(len(chunk))
        if len(chunk) > limit[0]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return [x * x for x in chunk]

    fitting = batching.FittingBatches(8, "rows", said.append)
    assert fitting.run(square, list(range(10))) == [x * x for x in range(10)]
    assert seen == [8, 4, 2, 2, 2, 2, 2] and fitting.size == 2 and len(said) == 2
    limit[0] = 0
    with pytest.raises(knobs.InputError, match="out of memory with a single one of the rows per batch"):
        fitting.run(square, [1, 2])
    with pytest.raises(ValueError):  # any other error is the caller's, untouched
        batching.FittingBatches(4).run(lambda chunk: [int("x")], [1])


def test_a_step_takes_a_config_file_and_its_flags_after_it_win():
    """--generate=config/method2_fast.py hands the preset to the generation step alone, in order with its flags."""
    from inference import method2

    preset = REPO_ROOT / "config" / "method2_fast.py"
    per_step, own = method2_all.split_flags(["--STEPS=generate,prompts", f"--generate={preset}", "--generate.STEPS=8",
                                             "--prompts.K=3"], method2_all.STAGES)
    assert own == ["--STEPS=generate,prompts"] and per_step["prompts"] == ["--K=3"]
    cfg = knobs.configure(method2, per_step["generate"], env={})
    assert (cfg.SCHEDULER, cfg.STEPS, cfg.GUIDANCE, cfg.FUSE_LORA) == ("lcm", 8, 1.0, True)
    with pytest.raises(knobs.InputError, match="--generate= takes a config file for that step"):
        method2_all.split_flags(["--generate=lcm"], method2_all.STAGES)
