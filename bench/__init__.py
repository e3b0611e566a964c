"""Benchmark scripts: speed and memory of each stage at the real architectures (random weights, nothing downloaded).
They import anything; nothing imports them. `python -m bench.<name> --help` lists each one's knobs."""
