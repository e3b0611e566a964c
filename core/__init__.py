"""Shared code of every stage, one module per concern:

- knobs:    a script's UPPERCASE settings, its flags and config files, --help, one-line user errors (InputError)
- files:    atomic writes, JSON/CSV files, resumable JSON stores, folder checks and locks
- dataset:  info.csv and retrieval.csv, read and validated
- images:   image loading, the one banner-validity check, banner JPEGs, mean colour
- devices:  devices, dtypes, a model knob as a folder or hub id and its load, several processes (the SMOKE
            stand-ins are swapped in above core, by models.py)
- seeds:    per-row seeds
- progress: the one progress bar (hidden when the output is not a terminal); quiet library logs for tiny models
- errors:   long lists of failures shown short (the first few, the count, the file with all of them)
- prompt_fit: ad copy cleaned and fitted to a text encoder's token window (both methods, the prompt stage)
- nearest:  the one nearest-neighbour search, exact chunked top-k (retrieval, the duplication measure and guard)
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
