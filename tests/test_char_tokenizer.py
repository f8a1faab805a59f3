"""CharTokenizer: layout, HF-like encode/decode semantics, errors, pickling."""

from __future__ import annotations

import copy
import pickle
import string

import numpy as np
import pytest
import torch

from textgym.char_tokenizer import DEFAULT_ALPHABET, CharTokenizer


@pytest.fixture
def tok() -> CharTokenizer:
    return CharTokenizer()


def test_layout_and_special_tokens(tok):
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == (
        "<pad>",
        "<bos>",
        "<eos>",
        "<unk>",
    )
    assert tok.all_special_ids == [0, 1, 2, 3]
    assert tok.all_special_tokens == ["<pad>", "<bos>", "<eos>", "<unk>"]
    expected = 4 + 10 + 26 + 26 + 1 + len(string.punctuation)
    assert tok.vocab_size == len(tok) == expected == 99
    assert tok.encode("0") == [4] and tok.encode("a") == [14] and tok.encode("A") == [40]
    assert tok.encode(" ") == [66]
    assert tok.name_or_path == "char"
    assert tok.padding_side == "right" and tok.truncation_side == "right"
    vocab = tok.get_vocab()
    assert len(vocab) == len(tok) and vocab["<eos>"] == 2 and vocab["z"] == 39
    assert sorted(vocab.values()) == list(range(len(tok)))


@pytest.mark.parametrize("text", ["", "hello world", "12+34=46", DEFAULT_ALPHABET, "a<b>c<"])
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode(text, add_special_tokens=True)) == "<bos>" + text


def test_special_token_strings_are_parsed(tok):
    # As in HF tokenizers, special-token text encodes to the special id, so
    # encode(decode(ids)) == ids even when ids contain specials.
    ids = [1, 14, 2, 0, 0, 3]
    assert tok.decode(ids) == "<bos>a<eos><pad><pad><unk>"
    assert tok.encode(tok.decode(ids)) == ids
    assert tok.tokenize("x<eos>") == ["x", "<eos>"]


def test_unknown_characters_map_to_unk(tok):
    assert tok.encode("a\u00e9\nb") == [14, 3, 3, 15]
    assert tok.decode(tok.encode("\u00e9")) == "<unk>"
    assert tok.convert_tokens_to_ids("\u00e9") == tok.unk_token_id


def test_skip_special_tokens(tok):
    ids = [1] + tok.encode("hi") + [2, 0, 0]
    assert tok.decode(ids) == "<bos>hi<eos><pad><pad>"
    assert tok.decode(ids, skip_special_tokens=True) == "hi"
    assert tok.convert_ids_to_tokens(ids, skip_special_tokens=True) == ["h", "i"]


def test_decode_accepts_arrays_and_tensors(tok):
    ids = tok.encode("abc")
    assert tok.decode(np.array(ids)) == "abc"
    assert tok.decode(torch.tensor(ids)) == "abc"
    assert tok.decode(torch.tensor(ids[0])) == "a"  # 0-d tensor
    assert tok.decode(ids[0]) == "a"
    batch = [tok.encode("ab"), tok.encode("cd")]
    expected = ["ab", "cd"]
    assert tok.batch_decode(batch) == expected
    assert tok.batch_decode(np.array(batch)) == expected
    assert tok.batch_decode(torch.tensor(batch)) == expected
    assert tok.batch_decode([[1, 14, 2]], skip_special_tokens=True) == ["a"]


@pytest.mark.parametrize("bad", [99, -1, 10_000])
def test_bad_ids_raise(tok, bad):
    with pytest.raises(ValueError, match=rf"token id {bad} .*valid ids: 0\.\.98"):
        tok.decode([4, bad])
    with pytest.raises(ValueError, match=str(bad)):
        tok.batch_decode([[4], [bad]])
    with pytest.raises(ValueError, match=str(bad)):
        tok.convert_ids_to_tokens(bad)


def test_call_single_and_batch(tok):
    enc = tok("ab")
    assert enc == {"input_ids": [14, 15], "attention_mask": [1, 1]}
    assert enc.input_ids == [14, 15]  # attribute access like BatchEncoding
    assert tok("ab", add_special_tokens=True)["input_ids"] == [1, 14, 15]
    enc = tok(["ab", "c"])
    assert enc["input_ids"] == [[14, 15], [16]]
    assert enc["attention_mask"] == [[1, 1], [1]]


def test_call_padding_truncation_tensors(tok):
    enc = tok(["ab", "c"], padding=True, return_tensors="pt")
    assert enc["input_ids"].tolist() == [[14, 15], [16, 0]]
    assert enc["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert enc.to("cpu")["input_ids"].dtype == torch.long

    left = copy.deepcopy(tok)
    left.padding_side = "left"
    enc = left(["ab", "c"], padding="max_length", max_length=3, return_tensors="np")
    assert enc["input_ids"].tolist() == [[0, 14, 15], [0, 0, 16]]
    assert enc["attention_mask"].tolist() == [[0, 1, 1], [0, 0, 1]]

    assert tok("abcd", truncation=True, max_length=2)["input_ids"] == [14, 15]
    left.truncation_side = "left"
    assert left("abcd", truncation=True, max_length=2)["input_ids"] == [16, 17]

    assert tok("ab", return_tensors="pt")["input_ids"].shape == (1, 2)
    with pytest.raises(ValueError, match="padding=True"):
        tok(["ab", "c"], return_tensors="pt")


def test_convert_tokens_and_ids(tok):
    assert tok.convert_ids_to_tokens(14) == "a"
    assert tok.convert_ids_to_tokens([1, 14]) == ["<bos>", "a"]
    assert tok.convert_tokens_to_ids("<eos>") == 2
    assert tok.convert_tokens_to_ids(["a", "b", "nope"]) == [14, 15, 3]


def test_custom_alphabet():
    tok = CharTokenizer(alphabet="01+=")
    assert len(tok) == 8
    assert tok.encode("10+x") == [5, 4, 6, 3]
    assert tok.decode([5, 4, 7]) == "10="
    assert "alphabet='01+='" in repr(tok)
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer(alphabet="aba")
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(alphabet=["ab", "c"])


def test_pickle_deepcopy_eq_repr(tok):
    for clone in (pickle.loads(pickle.dumps(tok)), copy.deepcopy(tok)):
        assert clone == tok and hash(clone) == hash(tok)
        assert clone.encode("hello <eos>") == tok.encode("hello <eos>")
    assert tok != CharTokenizer(alphabet="abc")
    assert repr(tok) == "CharTokenizer(vocab_size=99)"
