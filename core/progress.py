"""
Progress output, the one way for every stage: `progress(...)` is a tqdm bar on a terminal and nothing at all when the
output is a file or a pipe (a log then holds no carriage returns or `[A` escape codes); `quiet_libraries()` silences
the transformers/diffusers progress bars and info logs ("Loading weights", "Writing model shards", "Loading pipeline
components") around loads and builds of models whose bars tell the user nothing (tiny SMOKE models); `silenced(...)`
mutes named loggers around a call whose message is known and handled.
"""
import contextlib
import sys


def progress(iterable=None, **kwargs):
    """tqdm with the project's defaults: to stderr, hidden when stderr is not a terminal (tqdm's `disable=None`).
    Pass `disable=True` to hide it anyway (e.g. a PROGRESS=False knob)."""
    from tqdm import tqdm

    kwargs.setdefault("file", sys.stderr)
    if not kwargs.get("disable"):
        kwargs["disable"] = None  # None: tqdm shows the bar only on a TTY
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


@contextlib.contextmanager
def quiet_libraries(quiet=True):
    """Within the block, transformers and diffusers log only errors and draw no progress bars; restored after."""
    if not quiet:
        yield
        return
    saved = []
    for name in ("transformers", "diffusers"):
        try:
            logging = __import__(f"{name}.utils.logging", fromlist=["logging"])
        except ImportError:
            continue
        saved.append((logging, logging.get_verbosity(), logging.is_progress_bar_enabled()))
        logging.set_verbosity_error()
        logging.disable_progress_bar()
    try:
        yield
    finally:
        for logging, verbosity, bars in saved:
            logging.set_verbosity(verbosity)
            if bars:
                logging.enable_progress_bar()


@contextlib.contextmanager
def silenced(*logger_names):
    """Within the block, the standard-library loggers `logger_names` log nothing (not even errors); restored after."""
    import logging

    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
