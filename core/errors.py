"""
Long error lists: a terminal shows the first few names, the count and where the full list was written, never hundreds
of lines.
"""
from pathlib import Path

from core.files import atomic_write

SHOWN = 5  # names printed before "... (N in all)"


def error_list(problems, path=None, shown=SHOWN, write=True):
    """One line naming the first `shown` problems and their count; with more than that and a `path`, every problem is
    written there, one a line (`write=False`: the caller has written its own full list there), and the line says
    where. Returns the line ("" for no problems)."""
    problems = [str(p) for p in problems]
    if len(problems) <= shown:
        return ", ".join(problems)
    line = ", ".join(problems[:shown]) + f", ... ({len(problems)} in all"
    if path is not None:
        if write:
            atomic_write(Path(path), "\n".join(problems) + "\n")
        line += f"; full list: {path}"
    return line + ")"
