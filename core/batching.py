"""
Out of memory: the largest batch that fits, for every stage that batches a model (captions, translation, prompts).

accelerate's test of what counts as out-of-memory (`should_reduce_batch_size`) and its cache clearing, after an
out-of-memory only (its `find_executable_batch_size` collects garbage on every entry: ~0.2 s a batch): the batch size
halves, the rows already done in a call are kept, and the smaller size stays for the rest of the run.
Nothing a stage writes depends on the batch size: each of them seeds every row on its own.
"""
from core.knobs import InputError


class FittingBatches:
    """`batches.run(fn, items)`: fn(chunk) -> one result per item of the chunk, over `items` in chunks of the current
    batch size; on out-of-memory the size halves (said once per halving) and the failed chunk is tried again."""

    def __init__(self, batch_size, what="rows", log=print):
        if int(batch_size) < 1:
            raise InputError(f"BATCH_SIZE must be at least 1, got {batch_size}")
        self.size, self.what, self.log = batch_size, what, log

    def _halve(self):
        self.size //= 2
        if self.size:
            self.log(f"out of memory: {self.size} {self.what} per batch from now on")
        return self.size

    def run(self, fn, items):
        from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size

        done = []
        while len(done) < len(items):
            try:
                done.extend(fn(items[len(done):len(done) + self.size]))
            except Exception as e:
                if not should_reduce_batch_size(e):
                    raise
                clear_device_cache(garbage_collection=True)
                if not self._halve():
                    raise InputError(f"out of memory with a single one of the {self.what} per batch: use a smaller "
                                     f"model, a lower precision (DTYPE) or shorter outputs") from None
        return done
