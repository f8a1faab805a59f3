"""The tokenizer the environments encode and decode with: :class:`FastTokenizer`.

Making an environment must take well under a second, and importing transformers alone takes
seconds. So for a model's name the envs read its ``tokenizer.json`` with the ``tokenizers``
library (what a Hugging Face fast tokenizer runs inside), and load the Hugging Face tokenizer
(:func:`textgym.models.load_tokenizer`) only when someone asks for it (``env.tokenizer``).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from textgym.models import DEFAULT_MODEL, load_tokenizer, resolve_model_path


class FastTokenizer:
    """The encoding and decoding of a Hugging Face fast tokenizer's folder, without importing
    transformers (about 3 s): its ``tokenizer.json`` read by the ``tokenizers`` library.

    The environments encode prompts and decode completions with it, so that making an env
    takes well under a second; the ids and texts are those of the Hugging Face tokenizer
    (which runs the same ``tokenizers`` object). Everything else (``apply_chat_template``,
    ``padding_side``, ``save_pretrained``, ...) is the Hugging Face tokenizer's, loaded on
    first use: :attr:`hf` (:func:`load_tokenizer`'s shared object).
    """

    SPECIAL = ("bos", "eos", "unk", "pad")

    def __init__(self, folder: str | os.PathLike, name: str):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.name = name
        self.backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = json.loads((folder / "tokenizer_config.json").read_text())
        self.special_tokens: dict[str, str | None] = {}
        for kind in self.SPECIAL:
            token = config.get(f"{kind}_token")
            token = token.get("content") if isinstance(token, dict) else token
            self.special_tokens[kind] = token
        if self.special_tokens["pad"] is None:
            self.special_tokens["pad"] = self.special_tokens["eos"]  # as load_tokenizer does
        extra = config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
        ids = [self.backend.token_to_id(t) for t in [*self.special_tokens.values(), *extra] if t]
        self.all_special_ids = list(dict.fromkeys(i for i in ids if i is not None))
        self.size = self.backend.get_vocab_size(with_added_tokens=True)
        self._hf: Any = None

    def __getattr__(self, name: str) -> Any:
        kind, _, rest = name.partition("_token")
        if kind in self.SPECIAL and rest in ("", "_id"):
            token = self.special_tokens[kind]
            return token if not rest or token is None else self.backend.token_to_id(token)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.hf, name)  # apply_chat_template, padding_side, ...

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_hf": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def hf(self) -> Any:
        """The Hugging Face tokenizer of the same folder (:func:`load_tokenizer`), loaded on
        first use."""
        if self._hf is None:
            self._hf = load_tokenizer(self.name)
        return self._hf

    def __len__(self) -> int:
        return self.size

    def __call__(
        self,
        text: str | list[str],
        add_special_tokens: bool = True,
        split_special_tokens: bool = False,
    ) -> dict[str, Any]:
        """``{"input_ids": ids}`` of a text, or a list of ids per text of a list;
        ``split_special_tokens`` encodes special-token text as ordinary text."""
        texts = [text] if isinstance(text, str) else list(text)
        self.backend.encode_special_tokens = split_special_tokens
        try:
            encoded = self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        finally:
            self.backend.encode_special_tokens = False
        ids = [e.ids for e in encoded]
        return {"input_ids": ids[0] if isinstance(text, str) else ids}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ([ids] if isinstance(ids, int) else ids)]
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, seqs: Any, skip_special_tokens: bool = False) -> list[str]:
        try:
            return self.backend.decode_batch(seqs, skip_special_tokens=skip_special_tokens)
        except TypeError:  # numpy ids
            seqs = [[int(i) for i in seq] for seq in seqs]
            return self.backend.decode_batch(seqs, skip_special_tokens=skip_special_tokens)


@functools.cache
def load_fast_tokenizer(name_or_path: str = DEFAULT_MODEL) -> Any:
    """What the environments encode and decode with: a :class:`FastTokenizer` when the
    tokenizer of ``name_or_path`` is a plain fast tokenizer folder (the SmolLM2 alias, a local
    folder), else :func:`load_tokenizer`'s object (``"char"``, hub ids, other tokenizers).
    Cached per name like :func:`load_tokenizer`."""
    if name_or_path == "char":
        return load_tokenizer(name_or_path)
    folder = Path(resolve_model_path(name_or_path))
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        config = None
    fast = ("TokenizersBackend", "PreTrainedTokenizerFast")
    if (
        isinstance(config, dict)
        and config.get("tokenizer_class") in fast
        and (folder / "tokenizer.json").is_file()
        and not config.get("clean_up_tokenization_spaces")
    ):
        return FastTokenizer(folder, name_or_path)
    return load_tokenizer(name_or_path)
