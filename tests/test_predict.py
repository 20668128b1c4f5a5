"""tools/predict.py: inputs, resume and config logic (fast), then real batched MindFormers generation on the tiny
CPU model (random weights saved to a checkpoint): batch-size invariance, resume without duplicates, SQuAD prompts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import predict
from conftest import REPO, run_tool
from lorakit import mf
from lorakit.io import KitError

SAMPLE = REPO / "tests" / "data" / "contest_sample.jsonl"

MAKE_CKPT = """
import os, sys
sys.path.insert(0, sys.argv[2])
import numpy as np
import mindspore as ms
from lorakit.config import load_config
from lorakit import mf
mf.quiet_logs()
ms.set_seed(1)
net = mf.build_model(load_config("tiny", []))
ms.save_checkpoint(net, os.path.join(sys.argv[1], "base.ckpt"))      # LoRA B = 0: the base model
rng = np.random.default_rng(0)
for p in net.get_parameters():
    if p.name.endswith("mindpet_delta_lora_b"):
        p.set_data(ms.Tensor(rng.normal(0, 0.5, p.shape).astype(np.float32)))
ms.save_checkpoint(net, os.path.join(sys.argv[1], "lora.ckpt"))      # the same base + a non-zero LoRA
"""


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path):
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


# ---------------------------------------------------------------------------------------------- fast

def test_read_items(tmp_path):
    p = write_jsonl(tmp_path / "in.jsonl", [
        {"problem": "计算 1.00 + 2.00 等于多少？", "solution": "1.00 + 2.00 = 3.00"},
        {"id": "q7", "problem": "解方程 4x + -2 = 0"},
        {"id": "s1", "context": "The Rhine rises in the Alps.", "question": "Where does the Rhine rise?"}])
    items = predict.read_items(p, "vicuna")
    assert [i.id for i in items] == ["1", "q7", "s1"]
    assert [i.family for i in items] == ["add", "equation", "squad"]
    assert [i.template for i in items] == ["vicuna", "vicuna", "squad"]
    assert [i.bos for i in items] == [True, True, False]
    assert [i.bos for i in predict.read_items(p, "plain", bos="yes")] == [True, True, True]
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "problem": "x"}, {"id": "a", "problem": "y"}])
    with pytest.raises(KitError, match=r"dup.jsonl:2: duplicate id 'a'"):
        predict.read_items(dup, "plain")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "problem": "x"}, {"id": "b", "solution": "y"}])
    with pytest.raises(KitError, match=r"bad.jsonl:2: needs a non-empty string 'problem'"):
        predict.read_items(bad, "plain")


def test_done_ids_repairs_truncated_tail(tmp_path):
    out = tmp_path / "pred.jsonl"
    out.write_text('{"id": "1", "completion": "a"}\n{"id": "2", "completion": "b"}\n{"id": "3", "comp',
                   encoding="utf-8")
    ids, dropped = predict.done_ids(out, {"1", "2", "3"})
    assert ids == {"1", "2"} and dropped == 1
    assert out.read_text(encoding="utf-8").endswith('"b"}\n')
    with pytest.raises(KitError, match="another input"):
        predict.done_ids(out, {"1"})
    out.write_text('{"id": "1", "completion": "a"}\n{"id": "1", "completion": "a"}\n', encoding="utf-8")
    with pytest.raises(KitError, match="duplicate id '1'"):
        predict.done_ids(out, {"1"})


def test_budget_and_config(tmp_path):
    rep = tmp_path / "r.json"
    # convert_dataset.py's report: answer lengths count the EOS
    rep.write_text(json.dumps({"tokens": {"answer_tokens": {"all": {"p50": 9, "max": 41}}}}), encoding="utf-8")
    assert predict.token_report_budget(rep) == 41
    rep.write_text(json.dumps({"max_new_tokens": 77}), encoding="utf-8")
    assert predict.token_report_budget(rep) == 77
    rep.write_text("{}", encoding="utf-8")
    with pytest.raises(KitError, match="no answer-token budget"):
        predict.token_report_budget(rep)

    def args(**kw):
        base = dict(config="tiny", set=[], max_new_tokens=None, token_report=None, min_new_tokens=None,
                    batch_size=4, adapter=None, no_pet=False)
        base.update(kw)
        return type("A", (), base)

    cfg, info = predict.resolve_config(args())
    mc = cfg["model"]["model_config"]
    assert info["max_new_tokens"] == 64 and info["max_new_tokens_from"] == "config" and info["min_new_tokens"] == 1
    assert mc["batch_size"] == 4 and mc["use_past"] is False and mc["do_sample"] is False
    cfg, info = predict.resolve_config(args(set=["model.model_config.use_past=True"], max_new_tokens=20))
    assert cfg["model"]["model_config"]["use_past"] is False and info["notes"] and info["max_new_tokens"] == 20
    with pytest.raises(KitError, match="min_new_tokens must be >= 1"):
        predict.resolve_config(args(min_new_tokens=0))


def test_8b_predict_overlay_keeps_use_past():
    from lorakit.config import load_config

    mc = load_config("llama3-8b-predict")["model"]["model_config"]
    assert mc["use_past"] is True and mc["min_new_tokens"] >= 1 and mc["hidden_size"] == 4096
    assert mc["seq_length"] >= 1024  # SQuAD prompts (up to ~900 Llama 3 tokens) + 20 new tokens fit


def test_row_budget_processor_uses_each_rows_own_prompt():
    import numpy as np

    tok = type("T", (), {"bos_id": 1024, "eos_id": 1025, "pad_id": 1026})
    long_p, short_p = [5, 6, 7, 8, 9], [5, 6]
    proc = mf.row_budget_processor([long_p, short_p], tok, min_new=2, max_new=3)

    def scores_after(prompt, new):
        row = np.full((1, 12), 1026, dtype=np.int32)
        row[0, : len(prompt) + len(new)] = prompt + new
        return proc(row, np.zeros((1, 1280), dtype=np.float32))[0]

    # the short row counts its new tokens from its own prompt, not from the batch's longest one
    assert scores_after(short_p, [40])[1025] == -np.inf              # 1 new < min_new 2: no EOS yet
    assert scores_after(short_p, [40, 41])[1025] == 0.0               # 2 new: EOS allowed
    s = scores_after(short_p, [40, 41, 42])                           # 3 new = max_new: only EOS is left
    assert s[1025] == 0.0 and np.isinf(s[:1025]).all() and s.argmax() == 1025
    assert scores_after(long_p, [40])[1025] == -np.inf and scores_after(long_p, [40, 41])[1025] == 0.0
    s = scores_after(long_p, [])
    assert s[1024] == -np.inf and s[1026] == -np.inf                  # BOS and pad are never generated


# ---------------------------------------------------------------------------------------------- MindFormers

@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("predict")
    res = subprocess.run([sys.executable, "-c", MAKE_CKPT, str(path), str(REPO / "tools")], capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, GLOG_v="3"))
    assert res.returncode == 0, res.stderr[-2000:]
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(ckpt_dir):
    return ckpt_dir / "lora.ckpt"


def run_predict(*args):
    res = run_tool("predict", *args, timeout=600, env={"GLOG_v": "3"})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


@pytest.mark.slow
def test_predict_batched_resumable(tmp_path, tiny_ckpt):
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines[:5] + lines[20:22]]   # Chinese + two long English prompts: mixed lengths
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    common = ["--input", inp, "--checkpoint", tiny_ckpt, "--tokenizer", "tiny", "--template", "plain",
              "--max-new-tokens", "12", "--json"]
    rec4 = run_predict(*common, "--out", tmp_path / "b4.jsonl", "--batch-size", "4")
    assert rec4["predicted"] == 7 and rec4["generated_tokens"] > 0 and rec4["min_new_tokens"] == 1
    b4 = read_jsonl(tmp_path / "b4.jsonl")
    assert [r["id"] for r in b4] == [str(k) for k in range(1, 8)]
    from lorakit.templates import render_prompt

    for r, src in zip(b4, rows):
        assert set(r) >= {"id", "family", "prompt", "completion"}
        assert r["prompt"] == render_prompt("plain", src["problem"])
        assert not r["completion"].startswith(r["prompt"])
    # batch size does not change greedy results (each row is cut to max_new_tokens itself)
    run_predict(*common, "--out", tmp_path / "b1.jsonl", "--batch-size", "1")
    assert [r["completion"] for r in read_jsonl(tmp_path / "b1.jsonl")] == [r["completion"] for r in b4]
    # resume: keep 3 whole lines plus half of the 4th (a crash mid-write), rerun -> every id exactly once
    lines = (tmp_path / "b4.jsonl").read_text(encoding="utf-8").splitlines(True)
    part = tmp_path / "part.jsonl"
    part.write_text("".join(lines[:3]) + lines[3][:15], encoding="utf-8")
    rec = run_predict(*common, "--out", part, "--batch-size", "4")
    assert rec["already_done"] == 3 and rec["predicted"] == 4 and rec["truncated_line_dropped"] == 1
    assert read_jsonl(part) == b4
    rec = run_predict(*common, "--out", part, "--batch-size", "4")   # nothing left: no model is even built
    assert rec["predicted"] == 0 and rec["already_done"] == 7 and read_jsonl(part) == b4
    # without --template, the template and the answer budget come from the data report of the training data
    report = tmp_path / "data_report.json"
    report.write_text(json.dumps({"template": "plain", "tokens": {"answer_tokens": {"all": {"max": 12}}}}),
                      encoding="utf-8")
    rec = run_predict("--input", inp, "--checkpoint", tiny_ckpt, "--out", part, "--token-report", report, "--json")
    assert (rec["template"], rec["template_from"], rec["max_new_tokens"]) == ("plain", "token report", 12)


@pytest.mark.slow
def test_predict_squad_records(tmp_path, tiny_ckpt):
    rec_path = tmp_path / "records.jsonl"
    res = run_tool("squad", "prepare", "--dev", REPO / "tests" / "data" / "squad_tiny.json", "--out", rec_path,
                   timeout=60)
    assert res.returncode == 0, res.stderr
    rec = run_predict("--input", rec_path, "--out", tmp_path / "sq.jsonl", "--checkpoint", tiny_ckpt,
                      "--tokenizer", "tiny", "--max-new-tokens", "20", "--min-new-tokens", "1", "--batch-size", "6",
                      "--json")
    assert rec["predicted"] == 6
    preds = read_jsonl(tmp_path / "sq.jsonl")
    assert all(p["prompt"].startswith("Read the passage and answer the question below.") for p in preds)
    assert all(p["prompt"].endswith("### Response:") and p["family"] == "squad" for p in preds)
    res = run_tool("squad", "score", "--records", rec_path, "--pred", tmp_path / "sq.jsonl", "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["total"] == 6


@pytest.mark.slow
def test_predict_adapter_over_base_equals_full_checkpoint(tmp_path, ckpt_dir):
    res = run_tool("ckpt", "extract-lora", "--checkpoint", ckpt_dir / "lora.ckpt", "--config", "tiny", "--base",
                   ckpt_dir / "base.ckpt", "--out-dir", tmp_path / "adapter", timeout=120, env={"GLOG_v": "3"})
    assert res.returncode == 0, res.stderr[-2000:]
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:4]
    inp = write_jsonl(tmp_path / "in.jsonl", [json.loads(x) for x in lines])
    common = ["--input", inp, "--tokenizer", "tiny", "--template", "plain", "--max-new-tokens", "8",
              "--batch-size", "4", "--json"]
    run_predict(*common, "--checkpoint", ckpt_dir / "lora.ckpt", "--out", tmp_path / "full.jsonl")
    rec = run_predict(*common, "--checkpoint", ckpt_dir / "base.ckpt", "--adapter", tmp_path / "adapter",
                      "--out", tmp_path / "adapter.jsonl")
    assert rec["adapter"] == str(tmp_path / "adapter")
    run_predict(*common, "--checkpoint", ckpt_dir / "base.ckpt", "--out", tmp_path / "base.jsonl")
    full = [r["completion"] for r in read_jsonl(tmp_path / "full.jsonl")]
    assert [r["completion"] for r in read_jsonl(tmp_path / "adapter.jsonl")] == full
    assert [r["completion"] for r in read_jsonl(tmp_path / "base.jsonl")] != full   # the adapter did something
