"""The KV cache a policy acts through: one row per env slot, kept across ``env.step`` calls.

Acting through the env costs no more than ``model.generate`` because every step feeds each slot
only the token the env appended last step, attending to the cached keys and values of all the
earlier ones. :class:`ActingCache` keeps that cache for a vector env:

* a slot whose observation shows ``num_generated == 0`` (a new prompt, e.g. after an autoreset)
  gets its row rebuilt by a prefill; with the dynamic cache, slots with the same prompt (a GRPO
  group) share one prefilled row, copied;
* so does a slot whose observation gained several tokens since the last step (a dialogue
  partner's reply), and one that was ignored (its row went stale) and is used again;
* rows are right-aligned, left padding is masked, and leading columns no row needs are cropped,
  so the cache never grows past ``P + T`` columns.

Two kinds (:func:`resolve_kv_cache`): ``"dynamic"``, a transformers ``DynamicCache`` that grows by
a column per step; and ``"static"`` (the default on CUDA), a preallocated ``StaticCache`` with the
same layout, where every row writes the same column each step and the columns are compacted in
place when full, so that the tensors keep their addresses and a compiled one-token step keeps one
graph. Both give the same actions and log-probs.

The cache does not run the model: its methods take ``forward``, the policy's trunk
(``forward(input_ids, attention_mask, position_ids, cache, *, step=False, steps=None)`` -> last
hidden states; ``step=True`` marks the static cache's one-token step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from textgym.models import position_ids

KV_CACHES = ("auto", "dynamic", "static")

Forward = Callable[..., torch.Tensor]


def _has_sliding_layers(config: Any) -> bool:
    from transformers import StaticCache

    layers = StaticCache(config=config, max_cache_len=1).layers  # lazy: allocates nothing
    return any(getattr(layer, "is_sliding", False) for layer in layers)


def resolve_kv_cache(kv_cache: str, device: str | torch.device, config: Any) -> str:
    """``"dynamic"`` or ``"static"`` for ``kv_cache``. ``"auto"``: static on CUDA (fixed tensor
    addresses, so the compiled decoding step never recompiles), dynamic elsewhere and for models
    with sliding-window layers (whose static layers roll their buffer, which per-row restarts
    cannot follow)."""
    if kv_cache not in KV_CACHES:
        raise ValueError(f"kv_cache must be one of {KV_CACHES}, got {kv_cache!r}")
    if kv_cache == "auto":
        static = torch.device(device).type == "cuda" and not _has_sliding_layers(config)
        return "static" if static else "dynamic"
    if kv_cache == "static" and _has_sliding_layers(config):
        raise ValueError(
            "kv_cache='static' does not support models with sliding-window attention layers; "
            "use kv_cache='dynamic'"
        )
    return kv_cache


def new_dynamic_cache(config: Any) -> Any:
    """An empty transformers ``DynamicCache`` for a decoder of ``config``."""
    from transformers import DynamicCache

    return DynamicCache(config=config)


def unique_rows(
    ids: np.ndarray, mask: np.ndarray, steps: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first row of each distinct (ids, mask, steps) row, the inverse map): rows
    ``unique[inverse]`` equal ``ids`` (and ``mask``, ``steps``). Rows with the same prompt (a
    GRPO/RLOO group) then run through the model once."""
    parts = [ids, mask] if steps is None else [ids, mask, steps]
    key = np.ascontiguousarray(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts], 1))
    _, unique, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    # np.unique sorts the distinct rows; relabel them in order of first appearance
    order = np.argsort(unique, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return unique[order], rank[inverse.reshape(-1)]


@dataclass
class CacheState:
    """The cache of one stream of vector-env steps."""

    cache: Any  # transformers DynamicCache or StaticCache, one row per env slot
    mask: torch.Tensor  # (N, C) attention mask of the cached columns
    next_pos: torch.Tensor  # (N,) position id of the next token each row will be fed
    stale: np.ndarray  # (N,) bool: rows fed while ignored, to rebuild before their next use
    # (N,) num_generated at the last step: a row that gained more than one token since (a
    # dialogue partner's reply) is rebuilt from its observation.
    seen: np.ndarray | None = None
    # Static cache only: the next column written (shared by all rows); ``mask`` is then a fixed
    # (N, L) buffer whose columns from ``column`` on are 0.
    column: int | None = None


class ActingCache:
    """One KV-cache row per env slot of a vector env, for a decoder of ``config``.

    Args:
        kind: ``"dynamic"`` or ``"static"`` (see :func:`resolve_kv_cache`).
        config: the decoder's config (sizes the caches).
    """

    def __init__(self, kind: str, config: Any):
        self.kind, self.config = kind, config
        self.state: CacheState | None = None
        # The static cache and its mask buffer, reused while their shape holds.
        self._static: tuple[Any, torch.Tensor] | None = None

    def reset(self) -> None:
        """Forget every row; the next :meth:`feed` prefills every slot."""
        self.state = None

    def feed(
        self,
        forward: Forward,
        ids: np.ndarray,
        mask: np.ndarray,
        num_generated: np.ndarray,
        last: np.ndarray,
        steps: np.ndarray | None,
        ignore: np.ndarray,
        device: torch.device,
    ) -> torch.Tensor:
        """The last hidden state ``(N, H)`` of each slot's last real token (at column ``last``)
        of a vector-env observation (``ids``, ``mask``, ``num_generated``), feeding the model only
        what the cache does not hold yet. ``ignore``: bool ``(N,)``, slots whose outputs the
        caller discards: they are neither prefilled nor attended to, and are rebuilt from their
        observation if used again. ``steps``: the completion step of every column (position
        embeddings), or None."""
        n = len(ids)
        state = self.state
        if state is None or state.mask.shape[0] != n or (num_generated == 0).all():
            rebuild = np.ones(n, dtype=bool)
        else:
            # A slot that was ignored has a stale cache row: rebuild it when it is used again.
            # So is one whose observation gained several tokens since (a dialogue partner's reply
            # after the agent's end of turn): its row is re-prefilled up to the last token.
            jumped = num_generated > state.seen + 1 if state.seen is not None else np.zeros(n, bool)
            rebuild = ((num_generated == 0) | state.stale | jumped) & ~ignore
        if rebuild.all():
            hidden = self._prefill_all(forward, ids, mask, last, steps, device)
        else:
            hidden = self._step_rows(forward, ids, last, rebuild | ignore, steps, device)
            if rebuild.any():
                rows = np.flatnonzero(rebuild)
                hidden[torch.from_numpy(rows).to(device)] = self._prefill_rows(
                    forward,
                    ids[rows],
                    mask[rows],
                    last[rows],
                    rows,
                    None if steps is None else steps[rows],
                    device,
                )
        self.state.stale = (self.state.stale | ignore) & ~rebuild
        self.state.seen = num_generated.copy()
        return hidden

    def _prefill_all(
        self,
        forward: Forward,
        ids: np.ndarray,
        mask: np.ndarray,
        last: np.ndarray,
        steps: np.ndarray | None,
        device: torch.device,
    ) -> torch.Tensor:
        """A fresh cache holding every row's context up to its last real token."""
        width = int(last.max()) + 1
        first = int(np.argmax(mask[:, :width].any(0)))  # skip columns that are padding in all rows
        steps = None if steps is None else steps[:, first:width]
        ids_t = torch.from_numpy(ids[:, first:width]).to(device)
        mask_t = torch.from_numpy(mask[:, first:width]).to(device)
        stale = np.zeros(len(ids), dtype=bool)
        if self.kind == "static":
            cache, buffer = self._static_buffers(len(ids), ids.shape[1], device)
            buffer[:, : width - first] = mask_t
            # The static cache's mask always spans all of its columns (a fixed shape).
            hidden = forward(ids_t, buffer, position_ids(mask_t), cache, steps=steps)
            self.state = CacheState(cache, buffer, mask_t.sum(-1), stale, column=width - first)
        else:
            cache = new_dynamic_cache(self.config)
            # Rows with the same context (a GRPO/RLOO group's prompt) are prefilled once and
            # their cache rows copied: a group of G costs one row's prefill, not G.
            unique, inverse = unique_rows(ids[:, first:width], mask[:, first:width], steps)
            if len(unique) < len(ids):
                u = torch.from_numpy(unique).to(device)
                hidden = forward(
                    ids_t[u],
                    mask_t[u],
                    position_ids(mask_t[u]),
                    cache,
                    steps=None if steps is None else steps[unique],
                )
                inverse_t = torch.from_numpy(inverse).to(device)
                cache.reorder_cache(inverse_t)
                hidden = hidden[inverse_t]
            else:
                hidden = forward(ids_t, mask_t, position_ids(mask_t), cache, steps=steps)
            # clone: from_numpy shares memory with the env's arrays, which the env may reuse.
            self.state = CacheState(cache, mask_t.clone(), mask_t.sum(-1), stale)
        rows = torch.arange(len(ids), device=device)
        return hidden[rows, torch.from_numpy(last - first).to(device)]

    def _static_buffers(
        self, n: int, length: int, device: torch.device
    ) -> tuple[Any, torch.Tensor]:
        """The static cache and its ``(N, L)`` mask buffer, zeroed; reused while the shape holds
        (the same tensors, so a compiled step keeps its graph). ``L`` = the observation width plus
        slack, so that a full cache is compacted at most every ``slack`` steps."""
        from transformers import StaticCache

        columns = length + max(16, length // 4)
        if self._static is None or self._static[1].shape != (n, columns):
            buffer = torch.zeros(n, columns, dtype=torch.long, device=device)
            self._static = (StaticCache(config=self.config, max_cache_len=columns), buffer)
        cache, buffer = self._static
        cache.reset()  # zeroes K/V (allocated at the first forward, in its dtype) and the counters
        buffer.zero_()
        return cache, buffer

    def _step_rows(
        self,
        forward: Forward,
        ids: np.ndarray,
        last: np.ndarray,
        skip: np.ndarray,
        steps: np.ndarray | None,
        device: torch.device,
    ) -> torch.Tensor:
        """Feed every row its last token (one new cache column); ``skip`` rows get a masked column
        (they are rebuilt next, or ignored)."""
        state = self.state
        n = len(ids)
        tokens = torch.from_numpy(ids[np.arange(n), last]).to(device)[:, None]
        steps = None if steps is None else steps[np.arange(n), last][:, None]
        fed = torch.from_numpy(~skip).to(device=device, dtype=state.mask.dtype)
        if state.column is None:
            state.mask = torch.cat([state.mask, fed[:, None]], dim=1)
            hidden = forward(tokens, state.mask, state.next_pos[:, None], state.cache, steps=steps)
        else:
            if state.column == state.mask.shape[1]:
                self._compact()
            column = state.column
            # A skipped row attends to its new column only: its output is discarded and its row
            # rebuilt before use, and it must not pin old columns against compaction.
            if skip.any():  # masked_fill_, not boolean indexing: no device sync per step
                state.mask.masked_fill_(torch.from_numpy(skip).to(device)[:, None], 0)
            state.mask[:, column] = 1
            hidden = forward(
                tokens, state.mask, state.next_pos[:, None], state.cache, step=True, steps=steps
            )
            state.column = column + 1
        state.next_pos += fed
        return hidden[:, -1]

    def _compact(self) -> None:
        """Static cache: drop the leading columns no row attends to, shifting the rest left in
        place (the tensors keep their addresses)."""
        state = self.state
        column = state.column
        first = int(state.mask[:, :column].any(0).to(torch.int8).argmax())
        if first == 0:  # cannot happen: every row attends to at most its observation's columns
            raise RuntimeError("the static KV cache is full; use kv_cache='dynamic'")
        self._shift_columns(-first)

    def _shift_columns(self, delta: int) -> None:
        """Static cache: move columns ``[0, column)`` by ``delta`` (< 0: left, dropping the first
        ``-delta``; > 0: right), zero what they leave, and move the write column with them."""
        state = self.state
        column = state.column
        tensors = [t for layer in state.cache.layers for t in (layer.keys, layer.values)]
        for t, dim in [(t, 2) for t in tensors] + [(state.mask, 1)]:
            src = t.narrow(dim, max(0, -delta), column - max(0, -delta)).clone()  # overlaps dst
            t.narrow(dim, 0, column + max(0, delta)).zero_()
            t.narrow(dim, max(0, delta), src.shape[dim]).copy_(src)
        state.column = column + delta
        for layer in state.cache.layers:
            layer.cumulative_length.fill_(state.column)  # the write position of StaticLayer

    def _prefill_rows(
        self,
        forward: Forward,
        ids: np.ndarray,
        mask: np.ndarray,
        last: np.ndarray,
        rows: np.ndarray,
        steps: np.ndarray | None,
        device: torch.device,
    ) -> torch.Tensor:
        """Prefill ``rows`` on their own and write their K/V into the shared cache,
        right-aligned."""
        state = self.state
        width = int(last.max()) + 1
        ids_t = torch.from_numpy(ids[:, :width]).to(device)
        mask_t = torch.from_numpy(mask[:, :width]).to(device)
        sub = new_dynamic_cache(self.config)
        steps = None if steps is None else steps[:, :width]
        hidden = forward(ids_t, mask_t, position_ids(mask_t), sub, steps=steps)
        layers = state.cache.layers
        expected = "DynamicLayer" if state.column is None else "StaticLayer"
        if any(type(layer).__name__ != expected for layer in layers):
            raise NotImplementedError(
                "restarting some env slots needs a cache without sliding-window layers; "
                "reset all slots together (envs.reset) or call policy.reset_state()"
            )
        rows_t = torch.from_numpy(rows).to(device)
        if state.column is None:
            columns = state.mask.shape[1]
            if width > columns:  # the new prompt is longer than the cache: widen it on the left
                for layer in layers:
                    layer.keys = F.pad(layer.keys, (0, 0, width - columns, 0))
                    layer.values = F.pad(layer.values, (0, 0, width - columns, 0))
                state.mask = F.pad(state.mask, (width - columns, 0))
                columns = width
            before, after = columns - width, 0
        else:
            if width > state.column:  # not enough columns left of the write column: shift right
                self._shift_columns(width - state.column)
            before, after = state.column - width, state.mask.shape[1] - state.column
        for layer, new in zip(layers, sub.layers):
            for name in ("keys", "values"):
                old = getattr(layer, name)
                old[rows_t] = F.pad(getattr(new, name).to(old.dtype), (0, 0, before, after))
        state.mask[rows_t] = F.pad(mask_t.to(state.mask.dtype), (before, after))
        state.next_pos[rows_t] = mask_t.sum(-1).to(state.next_pos.dtype)
        if state.column is None:
            # Crop leading columns no row attends to any more: the cache stays within P + T.
            first = int(state.mask.any(0).to(torch.int8).argmax())
            if first > 0:
                for layer in layers:
                    layer.keys = layer.keys[..., first:, :]
                    layer.values = layer.values[..., first:, :]
                state.mask = state.mask[:, first:]
        return hidden[torch.arange(len(rows), device=device), torch.from_numpy(last).to(device)]
