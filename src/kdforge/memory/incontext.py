"""In-context sample retrieval (IC-KD): a per-index bank of embeddings, logits and labels, exact top-k
retrieval of same-class and different-class neighbours, and a precomputed neighbour table for a frozen
teacher (cached on disk).

Retrieval is exact and runs in query chunks sized so that one chunk's similarity block stays under a fixed
number of elements: memory is bounded for any bank size (50,000 or 1.28 M entries). faiss is not needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from kdforge.collective import gather_batch

log = logging.getLogger(__name__)

BLOCK_ELEMENTS = 1 << 24  # similarity entries per query chunk (64 MiB of float32)


class Neighbours(NamedTuple):
    """Per query: indices and similarities of the k_pos same-class and k_neg different-class neighbours,
    most similar first. Slots with no admissible entry have similarity -inf (their index is meaningless)."""

    pos_index: torch.Tensor  # (Q, k_pos) int64
    pos_sim: torch.Tensor  # (Q, k_pos) float32
    neg_index: torch.Tensor  # (Q, k_neg)
    neg_sim: torch.Tensor  # (Q, k_neg)


def _top(sims: torch.Tensor, banned: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    if k == 0:
        empty = sims.new_zeros(sims.shape[0], 0)
        return empty, empty.long()
    return _top_plain(sims.masked_fill(banned, float("-inf")), k)


def retrieve(queries: torch.Tensor, query_labels: torch.Tensor, keys: torch.Tensor, key_labels: torch.Tensor,
             k_pos: int, k_neg: int, exclude: torch.Tensor | None = None, valid: torch.Tensor | None = None,
             block_elements: int = BLOCK_ELEMENTS) -> Neighbours:
    """Exact top-k by dot product: same-class (`k_pos`) and different-class (`k_neg`) keys for each query.

    `exclude` (Q,) holds each query's own key index, never returned; `valid` (N,) bool marks the keys that
    may be returned at all (a bank still filling). Queries and keys should be L2-normalised.
    """
    n = keys.shape[0]
    chunk = max(1, block_elements // max(n, 1))
    keys_t = keys.float().T
    parts = []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start:start + chunk].float()
        sims = q @ keys_t
        same = query_labels[start:start + chunk, None] == key_labels[None, :]
        banned_any = torch.zeros_like(same)
        if valid is not None:
            banned_any |= ~valid[None, :]
        if exclude is not None:
            banned_any.scatter_(1, exclude[start:start + chunk, None], True)
        pos_sim, pos_index = _top(sims, banned_any | ~same, k_pos)
        neg_sim, neg_index = _top(sims, banned_any | same, k_neg)
        parts.append((pos_index, pos_sim, neg_index, neg_sim))
    return Neighbours(*(torch.cat(column) for column in zip(*parts)))


def neighbour_table(embeddings: torch.Tensor, labels: torch.Tensor, k_pos: int, k_neg: int,
                    block_elements: int = BLOCK_ELEMENTS, progress=None) -> Neighbours:
    """Every entry's neighbours among all the others (itself excluded): the table a frozen teacher needs.

    Keys are sorted by class once, so each class's entries are one contiguous block: same-class search touches
    only that block, and different-class search blanks the block with a slice instead of building masks.
    """
    n = embeddings.shape[0]
    device = embeddings.device
    out = Neighbours(torch.zeros(n, k_pos, dtype=torch.long, device=device),
                     torch.full((n, k_pos), float("-inf"), device=device),
                     torch.zeros(n, k_neg, dtype=torch.long, device=device),
                     torch.full((n, k_neg), float("-inf"), device=device))
    order = torch.argsort(labels, stable=True)
    keys = embeddings.float()[order]
    sorted_labels = labels[order]
    classes, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    chunk = max(1, block_elements // max(n, 1))
    for lo, size in zip(starts.tolist(), counts.tolist()):
        block = keys[lo:lo + size]
        for q0 in range(0, size, chunk):
            q = block[q0:q0 + chunk]
            rows = order[lo + q0:lo + q0 + q.shape[0]]
            if k_pos:
                sims = q @ block.T
                own = torch.arange(q.shape[0], device=device)
                sims[own, own + q0] = float("-inf")  # the query itself
                sim, index = _top_plain(sims, k_pos)
                out.pos_index[rows] = order[lo + index]
                out.pos_sim[rows] = sim
            if k_neg:
                sims = q @ keys.T
                sims[:, lo:lo + size] = float("-inf")  # the query's own class
                sim, index = _top_plain(sims, k_neg)
                out.neg_index[rows] = order[index]
                out.neg_sim[rows] = sim
        if progress is not None:
            progress(size)
    return out


def _top_plain(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of rows whose banned entries are already -inf; fewer than k columns pad with -inf slots."""
    sim, index = sims.topk(min(k, sims.shape[1]), dim=1)
    if sim.shape[1] < k:
        sim = F.pad(sim, (0, k - sim.shape[1]), value=float("-inf"))
        index = F.pad(index, (0, k - index.shape[1]), value=0)
    return sim, index


class InContextBank(nn.Module):
    """One entry per training index: L2-normalised embedding, logits, label, and whether it was written.

    Buffers are `persistent` when the bank is learnt during training (online / teacher-free paradigms, so a
    resumed run continues with the same bank) and not when it is rebuilt from a frozen teacher at set-up.
    """

    def __init__(self, size: int, dim: int, num_classes: int, persistent: bool = True):
        super().__init__()
        self.register_buffer("embeddings", torch.zeros(size, dim), persistent=persistent)
        self.register_buffer("logits", torch.zeros(size, num_classes), persistent=persistent)
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long), persistent=persistent)
        self.register_buffer("filled", torch.zeros(size, dtype=torch.bool), persistent=persistent)

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @torch.no_grad()
    def write(self, index: torch.Tensor, embeddings: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
              gather: bool = True) -> None:
        """Overwrite the entries `index`. Under torchrun every process writes the whole global batch
        (`gather`), so the banks stay identical across processes."""
        if gather:
            index, embeddings, logits, labels = (gather_batch(t.detach()) for t in (index, embeddings, logits, labels))
        self.embeddings.index_copy_(0, index, F.normalize(embeddings.float(), dim=1))
        self.logits.index_copy_(0, index, logits.detach().float())
        self.labels.index_copy_(0, index, labels)
        self.filled.index_fill_(0, index, True)

    def retrieve(self, queries: torch.Tensor, labels: torch.Tensor, k_pos: int, k_neg: int,
                 exclude: torch.Tensor | None = None) -> Neighbours:
        return retrieve(F.normalize(queries.detach().float(), dim=1), labels, self.embeddings, self.labels,
                        k_pos, k_neg, exclude=exclude, valid=self.filled)


# --- the frozen teacher's bank and table, cached on disk ------------------------------------------------

def fingerprint(*parts) -> str:
    """A short hash of tensors, state dicts and plain values, for cache keys."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict):
            for key in sorted(part):
                h.update(str(key).encode())
                h.update(fingerprint(part[key]).encode())
        elif isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous().reshape(-1)
            h.update(f"{t.dtype}{tuple(part.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(part).encode())
    return h.hexdigest()[:24]


@torch.no_grad()
def fill_from_model(bank: InContextBank, view, stream, autocast=contextlib.nullcontext) -> None:
    """Fill every entry from a frozen model (eval mode) over an un-augmented pass of the training set."""
    was_training = view.model.training
    view.model.eval()
    for batch in stream.epoch(0):
        with autocast():
            out = view(batch.input)
        bank.write(batch.index, out.features["embedding"], out.logits, batch.target, gather=False)
    view.model.train(was_training)


def load_cached(path: Path, key: str) -> dict | None:
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
        log.warning("ignoring unreadable cache file %s", path)
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        log.warning("ignoring cache file %s: it belongs to another teacher or dataset", path)
        return None
    return blob


def load_or_build(path: Path, key: str, build, write: bool = True, log=None) -> dict:
    """The blob cached at `path` under `key`, or `build()`'s (a dict), saved atomically when `write`
    (only one process of a run writes)."""
    blob = load_cached(path, key)
    if blob is not None:
        if log is not None:
            log(f"read from the cache {path}")
        return blob
    blob = {**build(), "key": key}
    if write:
        import io

        from kdforge.fileio import atomic_write_bytes

        buffer = io.BytesIO()
        torch.save(blob, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    return blob
