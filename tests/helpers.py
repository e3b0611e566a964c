"""Small stand-ins shared by the tests."""
from pathlib import Path


def killed_on_call(real, n):
    """`real` wrapped to raise KeyboardInterrupt on its n-th call (the user's Ctrl-C, or a killed job, in the middle of
    a run); the calls before it go through."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapper


def two_cpu_processes():
    """The `accelerate launch` command line for two real CPU processes (gloo) on a free rendezvous port. accelerate
    1.15 starts ONE process for `--cpu --num_processes=2`; `--multi_gpu` with no GPU visible starts two on the CPU."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2", "--num_machines=1",
            "--mixed_precision=no", "--dynamo_backend=no", f"--main_process_port={port}"]


def recorded_settings(out_dir):
    """The settings a generation run recorded for the banners of out_dir (one run's: one set)."""
    from core import files

    (settings,) = files.read_json(Path(out_dir) / ".records.json")["settings"].values()
    return settings
