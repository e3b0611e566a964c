"""
losses.csv (step, epoch, loss, lr) as an accelerate tracker (Accelerator(log_with=[LossCsv(path)]), then
accelerator.log({"epoch", "loss", "lr"}, step=...)): a CSV needs no tracking package. Its own module because importing
accelerate's tracker base takes seconds, which the trainer's --help and the Method 2 chain should not pay.
"""
from pathlib import Path

from accelerate.tracking import GeneralTracker

from core import files

HEADER = "step,epoch,loss,lr\n"


class LossCsv(GeneralTracker):
    """Appends a row per accelerator.log call, on the main process only (accelerate calls it there)."""
    name, requires_logging_directory = "losses_csv", False
    tracker = None  # accelerate's name for what the tracker writes through: here the open file

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def start(self):
        self.tracker = open(self.path, "a", encoding="utf-8")

    def log(self, values, step=None, **kwargs):
        self.tracker.write(f"{step},{values['epoch']},{values['loss']:.6f},{values['lr']:.6g}\n")
        self.tracker.flush()

    def finish(self):
        if self.tracker:
            self.tracker.close()


def restart(path, step):
    """The log cut to its rows up to `step` (a resume point; 0: the header alone), written atomically: after a resume
    the file describes one run, as an uninterrupted run writes it."""
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text(encoding="utf-8").splitlines()[1:]:
            parts = line.split(",")
            if len(parts) == 4 and parts[0].isdigit() and int(parts[0]) <= step:
                rows.append(line + "\n")
    files.atomic_write(path, HEADER + "".join(rows))
