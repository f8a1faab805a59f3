"""Reward models learned from pairwise preferences (Bradley-Terry), usable as textgym scorers.

    from agents.reward_model import train_reward_model, RewardModelScorer
    rm = train_reward_model("smollm2-135m", "preferences.jsonl", epochs=2)
    env = gym.make_vec("TextGen-v0", num_envs=16, scorer=RewardModelScorer(rm))

* :class:`RewardModel`: a transformers trunk (the decoder of a causal LM, or any ``AutoModel``)
  and a linear head that reads the hidden state of the last real token of
  ``prompt + completion (+ EOS)`` and returns one scalar per sequence.
* :func:`train_reward_model`: the Bradley-Terry loss ``-log sigmoid(r(chosen) - r(rejected))``
  (a tie is a target of 1/2) over comparisons from a list of dicts or a JSONL file with
  ``prompt``/``chosen``/``rejected`` (what :class:`textgym.feedback.PreferenceCollector`
  writes), seeded minibatches, AdamW, a few epochs.
* :class:`RewardModelScorer`: ``scorer(prompts, completions, references) -> float32`` for any
  textgym env: batched, length-sorted, no gradients, on the GPU when there is one.
* :meth:`RewardModel.save` / :meth:`RewardModel.load`: safetensors weights plus a JSON config
  (no pickle): ``trunk/`` (``save_pretrained``), ``reward_head.safetensors``,
  ``reward_model.json`` and the tokenizer (``tokenizer/``, or the alphabet of a ``CharTokenizer``).

Text layout: the prompt is encoded with the tokenizer's special tokens, the completion without,
and the two id lists are concatenated (as in a textgym episode, where the policy's tokens follow
the prompt's), then EOS is appended (``append_eos``) so that the head always reads the same kind
of token. Sequences longer than ``max_length`` keep their end. Batches are right-padded.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textgym.rewards import as_text, check_batch_lengths, scorer_batch

FORMAT = "textgym-reward-model"
FORMAT_VERSION = 1
CONFIG_NAME = "reward_model.json"
HEAD_NAME = "reward_head.safetensors"
TRUNK_DIR = "trunk"
TOKENIZER_DIR = "tokenizer"


def _trunk_of(model: nn.Module) -> nn.Module:
    """The part of ``model`` that returns hidden states: a causal LM's decoder, else the model."""
    base = getattr(model, "base_model", None)
    if isinstance(base, nn.Module) and base is not model:
        return base
    return model


def _hidden_size(trunk: nn.Module) -> int:
    config = trunk.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return int(config.hidden_size)


class RewardModel(nn.Module):
    """A transformers trunk plus a scalar head on the last real token.

    Args:
        model: a causal LM (its decoder, ``model.base_model``, becomes the trunk; the LM head is
            not used) or any model whose output has ``last_hidden_state``. Used as is (not
            copied): :func:`train_reward_model` copies modules it is given.
        tokenizer: kept for :meth:`encode`, :class:`RewardModelScorer` and :meth:`save`.
        max_length: longest sequence fed to the trunk; longer ones keep their last tokens.
        append_eos: append the tokenizer's EOS after the completion (if it has one).
        head_init_std: std of the head's initial weights (default ``1 / sqrt(hidden + 1)``);
            seeded by ``seed`` without touching the global RNG.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        *,
        max_length: int = 512,
        append_eos: bool = True,
        head_init_std: float | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.trunk = _trunk_of(model)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.append_eos = bool(append_eos)
        hidden = _hidden_size(self.trunk)
        self.head = nn.Linear(hidden, 1)
        std = head_init_std if head_init_std is not None else 1.0 / math.sqrt(hidden + 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nn.init.normal_(self.head.weight, std=std)
        nn.init.zeros_(self.head.bias)
        self.head.to(self.device)
        self.history: list[dict[str, float]] = []

    @property
    def device(self) -> torch.device:
        return next(self.trunk.parameters()).device

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "smollm2-135m",
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = torch.float32,
        **kwargs: Any,
    ) -> RewardModel:
        """A fresh reward model on the trunk of an LM loaded by :func:`textgym.models.load_lm`
        (an alias such as ``"smollm2-135m"``, a folder or a hub id), with its tokenizer."""
        from textgym.models import load_lm

        model, tokenizer = load_lm(name_or_path, device=device, dtype=dtype)
        return cls(model, tokenizer, **kwargs)

    # -- text -> tensors ---------------------------------------------------------------------

    def encode(
        self, prompts: Sequence[str], completions: Sequence[str], tokenizer: Any = None
    ) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids``/``attention_mask`` (on CPU) of ``prompt + completion (+EOS)``."""
        ids = self.token_ids(prompts, completions, tokenizer)
        return _pad(ids, self._pad_id(tokenizer))

    def token_ids(
        self, prompts: Sequence[str], completions: Sequence[str], tokenizer: Any = None
    ) -> list[list[int]]:
        tok = tokenizer if tokenizer is not None else self.tokenizer
        if tok is None:
            raise ValueError("this RewardModel has no tokenizer; pass tokenizer=")
        check_batch_lengths(completions, prompts=prompts)
        prompts = [as_text(p) for p in prompts]
        completions = [as_text(c) for c in completions]
        p_ids = tok(prompts, add_special_tokens=True)["input_ids"] if prompts else []
        c_ids = tok(completions, add_special_tokens=False)["input_ids"] if completions else []
        eos = getattr(tok, "eos_token_id", None) if self.append_eos else None
        out = []
        for p, c in zip(p_ids, c_ids):
            seq = list(p) + list(c) + ([int(eos)] if eos is not None else [])
            if not seq:  # empty prompt and completion, no EOS: read a pad token
                seq = [self._pad_id(tok)]
            out.append(seq[-self.max_length :])
        return out

    def _pad_id(self, tokenizer: Any = None) -> int:
        tok = tokenizer if tokenizer is not None else self.tokenizer
        for name in ("pad_token_id", "eos_token_id"):
            value = getattr(tok, name, None)
            if value is not None:
                return int(value)
        return 0

    # -- forward -----------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B,)`` float32 rewards of right- or left-padded sequences."""
        out = self.trunk(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * positions).argmax(dim=1)  # last real token, any padding
        h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.head(h.to(self.head.weight.dtype)).squeeze(-1).float()

    @torch.inference_mode()
    def score(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        tokenizer: Any = None,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Rewards of (prompt, completion) pairs as a float32 array (no gradients, eval mode)."""
        ids = self.token_ids(prompts, completions, tokenizer)
        return _score_ids(self, ids, self._pad_id(tokenizer), batch_size)

    # -- save / load -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, tokenizer: Any = None) -> Path:
        """Write the model into folder ``path`` (replaced atomically if it exists).

        ``trunk/`` via ``save_pretrained`` (safetensors), the head as ``reward_head.safetensors``,
        settings in ``reward_model.json``, and the tokenizer: ``tokenizer/`` via its
        ``save_pretrained``, or for a ``CharTokenizer`` its alphabet in the JSON. No pickle.
        """
        from safetensors.torch import save_file

        path = Path(path)
        tok = tokenizer if tokenizer is not None else self.tokenizer
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            self.trunk.save_pretrained(tmp / TRUNK_DIR)
            head = {
                k: v.detach().float().cpu().contiguous() for k, v in self.head.state_dict().items()
            }
            save_file(head, str(tmp / HEAD_NAME))
            tok_info: Any = None
            if tok is not None:
                from textgym.char_tokenizer import CharTokenizer

                if isinstance(tok, CharTokenizer):
                    tok_info = {"type": "char", "alphabet": tok.alphabet}
                elif hasattr(tok, "save_pretrained"):
                    tok.save_pretrained(str(tmp / TOKENIZER_DIR))
                    tok_info = {"type": "pretrained", "path": TOKENIZER_DIR}
            config = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "trunk": TRUNK_DIR,
                "head": HEAD_NAME,
                "hidden_size": self.head.in_features,
                "max_length": self.max_length,
                "append_eos": self.append_eos,
                "tokenizer": tok_info,
                "history": self.history,
            }
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1))
            if path.exists():
                old = path.with_name(f".{path.name}.old-{int(time.time() * 1000)}")
                os.rename(path, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = torch.float32,
    ) -> RewardModel:
        """Read a folder written by :meth:`save` (with its tokenizer, when one was saved)."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        from textgym.models import resolve_device, resolve_dtype

        path = Path(path)
        config_file = path / CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(f"{str(path)!r} is not a saved reward model (no {CONFIG_NAME})")
        config = json.loads(config_file.read_text())
        if config.get("format") != FORMAT or config.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{config_file}: format {config.get('format')!r} v{config.get('version')}, "
                f"expected {FORMAT!r} v{FORMAT_VERSION}"
            )
        device = resolve_device(device)
        trunk = AutoModel.from_pretrained(
            path / config["trunk"], dtype=resolve_dtype(dtype, device)
        )
        tokenizer = None
        tok_info = config.get("tokenizer")
        if isinstance(tok_info, dict) and tok_info.get("type") == "char":
            from textgym.char_tokenizer import CharTokenizer

            tokenizer = CharTokenizer(tok_info["alphabet"])
        elif isinstance(tok_info, dict) and tok_info.get("type") == "pretrained":
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path / tok_info["path"])
        model = cls(
            trunk, tokenizer, max_length=config["max_length"], append_eos=config["append_eos"]
        )
        model.head.load_state_dict(load_file(str(path / config["head"])))
        model.history = list(config.get("history") or [])
        return model.to(device).eval()


def _pad(ids: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max((len(s) for s in ids), default=1)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for k, seq in enumerate(ids):
        input_ids[k, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[k, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def _autocast(device: torch.device):
    use = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use)


def _score_ids(
    model: RewardModel, ids: list[list[int]], pad_id: int, batch_size: int
) -> np.ndarray:
    """Score token id lists in length-sorted batches (less padding), in the original order."""
    was_training = model.training
    model.eval()
    device = model.device
    out = np.zeros(len(ids), dtype=np.float32)
    order = sorted(range(len(ids)), key=lambda k: len(ids[k]))
    try:
        with torch.inference_mode(), _autocast(device):
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = _pad([ids[k] for k in idx], pad_id)
                r = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
                out[idx] = r.float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


# --- comparisons -----------------------------------------------------------------------------


def load_comparisons(
    source: str | os.PathLike | Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Comparisons as ``{"prompt", "chosen", "rejected", "tie"}`` dicts from a JSONL path or rows
    (see :func:`textgym.feedback.read_comparisons`)."""
    from textgym.feedback import read_comparisons

    rows = read_comparisons(source)
    if not rows:
        raise ValueError(
            f"no comparisons in {source if isinstance(source, (str, os.PathLike)) else 'the list'}"
        )
    return rows


def _encode_comparisons(model: RewardModel, rows: list[dict[str, Any]]):
    prompts = [r["prompt"] for r in rows]
    chosen = model.token_ids(prompts, [r["chosen"] for r in rows])
    rejected = model.token_ids(prompts, [r["rejected"] for r in rows])
    targets = torch.tensor([0.5 if r.get("tie") else 1.0 for r in rows], dtype=torch.float32)
    return chosen, rejected, targets


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean ``-[y log sigmoid(d) + (1 - y) log sigmoid(-d)]``, ``d = r_chosen - r_rejected``;
    ``y = 1`` (default) is ``-log sigmoid(d)``, ``y = 1/2`` a tie."""
    d = r_chosen - r_rejected
    if targets is None:
        return -F.logsigmoid(d).mean()
    return F.binary_cross_entropy_with_logits(d, targets.to(d.dtype))


def evaluate_reward_model(
    model: RewardModel,
    comparisons: str | os.PathLike | Iterable[Mapping[str, Any]],
    tokenizer: Any = None,
    batch_size: int = 64,
) -> dict[str, float]:
    """``accuracy`` (share of non-tie pairs where ``r(chosen) > r(rejected)``), ``loss``
    (Bradley-Terry, ties included) and ``margin`` (mean ``r(chosen) - r(rejected)``)."""
    rows = load_comparisons(comparisons)
    prompts = [r["prompt"] for r in rows]
    rc = model.score(prompts, [r["chosen"] for r in rows], tokenizer, batch_size)
    rr = model.score(prompts, [r["rejected"] for r in rows], tokenizer, batch_size)
    d = torch.from_numpy(rc - rr)
    targets = torch.tensor([0.5 if r.get("tie") else 1.0 for r in rows])
    strict = targets == 1.0
    return {
        "accuracy": float((d[strict] > 0).float().mean()) if strict.any() else float("nan"),
        "loss": float(F.binary_cross_entropy_with_logits(d, targets)),
        "margin": float(d.mean()),
        "n": len(rows),
    }


# --- training --------------------------------------------------------------------------------


def train_reward_model(
    model_or_name: str | nn.Module,
    comparisons: str | os.PathLike | Iterable[Mapping[str, Any]],
    tokenizer: Any = None,
    *,
    epochs: int = 3,
    batch_size: int = 16,
    lr: float = 5e-5,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    max_length: int = 512,
    train_trunk: bool = True,
    eval_comparisons: str | os.PathLike | Iterable[Mapping[str, Any]] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    verbose: bool = False,
) -> RewardModel:
    """Train a Bradley-Terry reward model on pairwise comparisons; returns it in eval mode.

    Args:
        model_or_name: an LM name for :func:`textgym.models.load_lm` (``"smollm2-135m"``, a
            folder, a hub id; its tokenizer is used), a transformers model (deep-copied, so the
            caller's model is not changed; pass ``tokenizer``), or a :class:`RewardModel` to
            train further (trained in place).
        comparisons: a JSONL path or dicts with ``prompt``, ``chosen``, ``rejected`` and
            optionally ``tie`` (a tie is a target of 1/2).
        tokenizer: the tokenizer, unless ``model_or_name`` brings one.
        epochs, batch_size, lr, weight_decay, max_grad_norm: AdamW training, pairs per step.
        max_length: longest sequence (longer ones keep their end).
        train_trunk: False trains the head only (a linear probe on frozen features).
        eval_comparisons: held-out comparisons, evaluated after each epoch.
        seed: seeds the head's init, the minibatch order and the global torch RNG (for dropout).
        device: ``None``: CUDA if available, else CPU; bf16 autocast where CUDA supports it.
        verbose: print one line per epoch.

    ``model.history`` gets one dict per epoch: ``epoch``, ``loss``, ``accuracy`` (train, over
    the epoch) and, with ``eval_comparisons``, ``eval_accuracy``/``eval_loss``.
    """
    from textgym.models import load_lm, resolve_device

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    rows = load_comparisons(comparisons)
    eval_rows = load_comparisons(eval_comparisons) if eval_comparisons is not None else None
    device = resolve_device(device)
    if isinstance(model_or_name, RewardModel):
        model = model_or_name
        if tokenizer is not None:
            model.tokenizer = tokenizer
    elif isinstance(model_or_name, (str, os.PathLike)):
        lm, lm_tokenizer = load_lm(os.fspath(model_or_name), device=device, dtype=torch.float32)
        model = RewardModel(lm, tokenizer or lm_tokenizer, max_length=max_length, seed=seed)
    elif isinstance(model_or_name, nn.Module):
        model = RewardModel(
            copy.deepcopy(model_or_name), tokenizer, max_length=max_length, seed=seed
        )
    else:
        raise TypeError(
            f"model_or_name must be a model name, a transformers model or a RewardModel, "
            f"got {type(model_or_name).__name__}"
        )
    if model.tokenizer is None:
        raise ValueError("no tokenizer: pass tokenizer= (the model's own tokenizer)")
    model.to(device)
    for p in model.trunk.parameters():
        p.requires_grad_(train_trunk)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    chosen, rejected, targets = _encode_comparisons(model, rows)
    pad_id = model._pad_id()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = len(rows)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator).tolist()
        total_loss, correct, strict, seen = 0.0, 0, 0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = _pad([chosen[k] for k in idx] + [rejected[k] for k in idx], pad_id)
            y = targets[idx].to(device)
            with _autocast(device):
                r = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            rc, rr = r[: len(idx)], r[len(idx) :]
            loss = bradley_terry_loss(rc, rr, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            is_strict = y == 1.0
            strict += int(is_strict.sum())
            correct += int(((rc - rr).detach() > 0)[is_strict].sum())
        record: dict[str, float] = {
            "epoch": epoch,
            "loss": total_loss / seen,
            "accuracy": correct / strict if strict else float("nan"),
        }
        if eval_rows is not None:
            ev = evaluate_reward_model(model, eval_rows)
            record["eval_accuracy"], record["eval_loss"] = ev["accuracy"], ev["loss"]
        model.history.append(record)
        if verbose:
            print(
                " ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in record.items()
                )
            )
    for p in model.trunk.parameters():
        p.requires_grad_(True)
    return model.eval()


# --- scorer ----------------------------------------------------------------------------------


class RewardModelScorer:
    """A textgym scorer backed by a :class:`RewardModel`.

    ``scorer(prompts, completions, references)`` returns the model's rewards as a float32 array
    (references are ignored): batched (``batch_size`` sequences, sorted by length to save
    padding), under ``torch.inference_mode`` in eval mode, on ``device`` (default: CUDA if
    available, else CPU, where the model is moved at construction; bf16 autocast on CUDA).

    Args:
        reward_model: a :class:`RewardModel` or the folder of a saved one.
        tokenizer: default ``reward_model.tokenizer``.
        batch_size: sequences per forward pass.
        device: see above.
        scale, offset: the returned score is ``scale * reward + offset`` (e.g. to normalise
            with the mean/std of rewards on reference data).
    """

    def __init__(
        self,
        reward_model: RewardModel | str | os.PathLike,
        tokenizer: Any = None,
        *,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
    ):
        from textgym.models import resolve_device

        if isinstance(reward_model, (str, os.PathLike)):
            reward_model = RewardModel.load(reward_model, device=device)
        self.model = reward_model.to(resolve_device(device)).eval()
        self.tokenizer = tokenizer if tokenizer is not None else reward_model.tokenizer
        if self.tokenizer is None:
            raise ValueError("the reward model has no tokenizer; pass tokenizer=")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.scale, self.offset = float(scale), float(offset)

    def __repr__(self) -> str:
        return f"RewardModelScorer(device={str(self.model.device)!r}, batch_size={self.batch_size})"

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Any] | None = None,
    ) -> np.ndarray:
        prompts, completions, _ = scorer_batch(prompts, completions, references)
        rewards = self.model.score(prompts, completions, self.tokenizer, self.batch_size)
        if self.scale != 1.0 or self.offset != 0.0:
            rewards = rewards * np.float32(self.scale) + np.float32(self.offset)
        return rewards.astype(np.float32, copy=False)
