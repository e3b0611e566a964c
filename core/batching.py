"""
Out of memory: the largest batch that fits, for every stage that batches a model (captions, translation, prompts).

accelerate's `find_executable_batch_size` does the retrying (with its own test of what counts as out-of-memory,
`should_reduce_batch_size`, and the device cache emptied between tries); here the batch size halves instead of
shrinking by a tenth, the rows already done in a call are kept, and the smaller size stays for the rest of the run.
Nothing a stage writes depends on the batch size: each of them seeds every row on its own.
"""
from core.knobs import InputError


class FittingBatches:
    """`batches.run(fn, items)`: fn(chunk) -> one result per item of the chunk, over `items` in chunks of the current
    batch size; on out-of-memory the size halves (said once per halving) and the failed chunk is tried again."""

    def __init__(self, batch_size, what="rows", log=print):
        self.size, self.what, self.log = batch_size, what, log

    def _halve(self):
        self.size //= 2
        if self.size:
            self.log(f"out of memory: {self.size} {self.what} per batch from now on")
        return self.size

    def run(self, fn, items):
        from accelerate.utils import find_executable_batch_size

        done = []

        @find_executable_batch_size(starting_batch_size=self.size, reduce_batch_size_fn=self._halve)
        def fill(size):
            while len(done) < len(items):
                done.extend(fn(items[len(done):len(done) + size]))
            return done

        try:
            return fill()
        except RuntimeError:
            if self.size > 0:  # not accelerate's "reached zero": another error, the caller's
                raise
            raise InputError(f"out of memory with a single one of the {self.what} per batch: use a smaller model, "
                             f"a lower precision (DTYPE) or shorter outputs") from None
