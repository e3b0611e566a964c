"""Per-row seeds: a row's result depends on (run seed, row id), never on batch size, order or process count."""
import hashlib


def row_seed(seed, row_id):
    """A 63-bit seed from (run seed, row id)."""
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
