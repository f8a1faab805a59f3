"""A tiny character-level tokenizer with a Hugging Face-like interface.

Small-vocabulary tasks (copy, reverse, sort, arithmetic) don't need a 49k BPE
vocabulary: one token per character keeps the action space small and makes
rewards easy to reason about. ``CharTokenizer`` implements the subset of the
Hugging Face tokenizer interface that the textgym envs use, with the same
semantics, so envs can take either kind of tokenizer.

Default layout (``len(CharTokenizer()) == 99``)::

    0 <pad>   1 <bos>   2 <eos>   3 <unk>
    4..13  '0'..'9'
    14..39 'a'..'z'
    40..65 'A'..'Z'
    66     ' '
    67..98 string.punctuation

Semantics worth knowing (they match Hugging Face tokenizers):

- ``encode``/``__call__`` default to ``add_special_tokens=False``; with True a
  ``<bos>`` is prepended (no ``<eos>`` is appended).
- The literal strings ``"<pad>"``, ``"<bos>"``, ``"<eos>"``, ``"<unk>"`` in the
  input text are parsed as the special tokens, so that
  ``encode(decode(ids)) == ids`` holds for any valid ids.
- Characters outside the alphabet map to ``<unk>``.
- ``decode`` raises ``ValueError`` for ids outside ``[0, vocab_size)``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
DEFAULT_ALPHABET = (
    string.digits + string.ascii_lowercase + string.ascii_uppercase + " " + string.punctuation
)

# One capturing group, so re.split keeps the special tokens as separate pieces.
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


class Encoding(dict):
    """What ``CharTokenizer.__call__`` returns: a plain dict (``input_ids``,
    ``attention_mask``) that also allows ``enc.input_ids`` and ``enc.to(device)``
    like Hugging Face's ``BatchEncoding``, so code written for HF tokenizers works."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: Any) -> Encoding:
        return Encoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


def _as_id_list(ids: Any) -> list[int]:
    """Accept an int, a sequence of ints, a numpy array or a torch tensor."""
    if hasattr(ids, "tolist"):  # numpy arrays, numpy scalars, torch tensors
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    return [int(i) for i in ids]


class CharTokenizer:
    """Character-level tokenizer: specials ``<pad>``=0, ``<bos>``=1, ``<eos>``=2,
    ``<unk>``=3, then one id per character of ``alphabet`` (in order).

    Args:
        alphabet: the characters of the vocabulary, as a string or a sequence of
            single-character strings; no duplicates. Defaults to digits,
            lowercase, uppercase, space and ``string.punctuation``.
    """

    name_or_path = "char"
    pad_token, bos_token, eos_token, unk_token = SPECIAL_TOKENS
    pad_token_id, bos_token_id, eos_token_id, unk_token_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def __init__(self, alphabet: str | Sequence[str] = DEFAULT_ALPHABET) -> None:
        chars = list(alphabet)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"alphabet entries must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            dupes = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"alphabet has duplicate characters: {dupes!r}")
        self.alphabet = "".join(chars)
        self.padding_side = "right"
        self.truncation_side = "right"
        self.model_max_length = int(1e30)  # same "no limit" sentinel HF uses
        self._id_to_token = list(SPECIAL_TOKENS) + chars
        self._token_to_id = {t: i for i, t in enumerate(self._id_to_token)}

    # --- special tokens and sizes -----------------------------------------

    @property
    def all_special_tokens(self) -> list[str]:
        return list(SPECIAL_TOKENS)

    @property
    def all_special_ids(self) -> list[int]:
        return [PAD_ID, BOS_ID, EOS_ID, UNK_ID]

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def __len__(self) -> int:
        return len(self._id_to_token)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._token_to_id)

    # --- encoding -----------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens (characters, or whole special tokens)."""
        return self.convert_ids_to_tokens(self.encode(text))

    def encode(
        self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = False
    ) -> list[int]:
        """Token ids of ``text``; ``add_special_tokens=True`` prepends ``<bos>``;
        ``split_special_tokens=True`` encodes special-token text (``"<eos>"``) character by
        character, as Hugging Face tokenizers do."""
        get, unk = self._token_to_id.get, UNK_ID
        if split_special_tokens or "<" not in text:  # no special tokens parsed
            ids = [get(c, unk) for c in text]
        else:
            ids = []
            for i, piece in enumerate(_SPECIAL_RE.split(text)):
                if i % 2:  # odd pieces are the captured special tokens
                    ids.append(self._token_to_id[piece])
                else:
                    ids.extend(get(c, unk) for c in piece)
        return [BOS_ID] + ids if add_special_tokens else ids

    def __call__(
        self,
        text: str | Sequence[str],
        add_special_tokens: bool = False,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        split_special_tokens: bool = False,
    ) -> Encoding:
        """Encode a string or a list of strings, HF style.

        Returns a dict with ``input_ids`` (and ``attention_mask``): lists for a
        single string, lists of lists for a batch; with ``return_tensors="pt"``
        or ``"np"``, 2-D tensors/arrays (a single string becomes a batch of 1).
        ``padding``: False/"do_not_pad", True/"longest", or "max_length";
        pads with ``<pad>`` on ``self.padding_side``. ``truncation=True``
        truncates to ``max_length`` on ``self.truncation_side``.
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        seqs = [
            self.encode(t, add_special_tokens, split_special_tokens=split_special_tokens)
            for t in texts
        ]

        if truncation not in (False, "do_not_truncate") and max_length is not None:
            if self.truncation_side == "right":
                seqs = [s[:max_length] for s in seqs]
            else:
                seqs = [s[max(len(s) - max_length, 0) :] for s in seqs]
        masks = [[1] * len(s) for s in seqs]

        if padding in (True, "longest", "max_length"):
            if padding == "max_length":
                if max_length is None:
                    raise ValueError("padding='max_length' needs max_length")
                target = max_length
            else:
                target = max((len(s) for s in seqs), default=0)
            for i, s in enumerate(seqs):
                n = target - len(s)
                if n > 0:
                    if self.padding_side == "right":
                        seqs[i], masks[i] = s + [PAD_ID] * n, masks[i] + [0] * n
                    else:
                        seqs[i], masks[i] = [PAD_ID] * n + s, [0] * n + masks[i]
        elif padding not in (False, "do_not_pad"):
            raise ValueError(f"unknown padding strategy {padding!r}")

        out = {"input_ids": seqs, "attention_mask": masks}
        if not return_attention_mask:
            del out["attention_mask"]
        if return_tensors is None:
            if single:
                out = {k: v[0] for k, v in out.items()}
        else:
            if len({len(s) for s in seqs}) > 1:
                raise ValueError(
                    "sequences have different lengths; pass padding=True to return tensors"
                )
            if return_tensors == "pt":
                import torch

                out = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
            elif return_tensors == "np":
                import numpy as np

                out = {k: np.array(v, dtype=np.int64) for k, v in out.items()}
            else:
                raise ValueError(
                    f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}"
                )
        return Encoding(out)

    # --- decoding -----------------------------------------------------------

    def _check_ids(self, ids: list[int]) -> None:
        n = len(self._id_to_token)
        for i in ids:
            if not 0 <= i < n:
                raise ValueError(
                    f"token id {i} is out of range for CharTokenizer (valid ids: 0..{n - 1})"
                )

    def convert_ids_to_tokens(
        self, ids: int | Iterable[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        """Token string(s) for id(s); an int gives a str, a sequence a list."""
        if isinstance(ids, int) or (hasattr(ids, "ndim") and ids.ndim == 0):
            id_list = _as_id_list(ids)
            self._check_ids(id_list)
            return self._id_to_token[id_list[0]]
        id_list = _as_id_list(ids)
        self._check_ids(id_list)
        if skip_special_tokens:
            id_list = [i for i in id_list if i > UNK_ID]
        return [self._id_to_token[i] for i in id_list]

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Id(s) for token string(s); unknown tokens give ``unk_token_id``."""
        if isinstance(tokens, str):
            return self._token_to_id.get(tokens, UNK_ID)
        return [self._token_to_id.get(t, UNK_ID) for t in tokens]

    def decode(
        self,
        ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,  # accepted for HF compat; no-op
    ) -> str:
        """Text for a sequence of ids (list, numpy array or torch tensor).

        Special tokens are written as ``<eos>`` etc. unless ``skip_special_tokens``.
        """
        id_list = _as_id_list(ids)
        self._check_ids(id_list)
        tokens = self._id_to_token
        if skip_special_tokens:
            return "".join([tokens[i] for i in id_list if i > UNK_ID])
        return "".join([tokens[i] for i in id_list])

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """``decode`` for each row of a list of id lists or a 2-D array/tensor."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(s, skip_special_tokens=skip_special_tokens) for s in sequences]

    # --- python protocol ----------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharTokenizer):
            return NotImplemented
        return self.alphabet == other.alphabet

    def __hash__(self) -> int:
        return hash((CharTokenizer, self.alphabet))

    def __repr__(self) -> str:
        if self.alphabet == DEFAULT_ALPHABET:
            return f"CharTokenizer(vocab_size={len(self)})"
        return f"CharTokenizer(alphabet={self.alphabet!r}, vocab_size={len(self)})"
