"""End to end: `make demo` at a small scale — the same make targets and tools as the real demo (data, base
pre-training, LoRA finetune, merge, eval, SQuAD gate, submission, verify, summary), fewer rows and steps."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_make_demo_small_end_to_end(tmp_path):
    run, sub = tmp_path / "demo", tmp_path / "submission"
    sub.mkdir()
    env = dict(os.environ, GLOG_v="3")
    env.pop("MAKEFLAGS", None)
    res = subprocess.run(
        ["make", "--no-print-directory", "demo", "DEMO_RUN=%s" % run, "SUBMISSION_DIR=%s" % sub, "DEMO_TEAM=e2e",
         "DEMO_BASE_STEPS=120", "DEMO_LORA_STEPS=40", "DEMO_BASE_N=2000", "DEMO_BASE_COT_N=500",
         "DEMO_LORA_N=800", "DEMO_TEST_N=40"],
        cwd=str(REPO), capture_output=True, text=True, timeout=1200, env=env)
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])

    # every stage left its artefact
    for rel in ("data/train.mindrecord", "data/data_report.json", "base/base.ckpt", "train/run.json",
                "train/loss.png", "adapter/adapter.ckpt", "adapter/adapter_config.json", "folded/folded.ckpt",
                "eval/predictions.jsonl", "eval/math_report.json", "eval/squad_report.json", "eval/params.json"):
        assert (run / rel).is_file(), rel
    assert (sub / "e2e" / "manifest.json").is_file() and (sub / "e2e.zip").is_file()

    # both training stages learned: the loss fell
    for stage in ("base", "train"):
        loss = json.loads((run / stage / "run.json").read_text())["loss"]
        assert loss["last_mean"] < loss["first_mean"], (stage, loss)

    # every held-out problem was predicted and scored once; the submission verified
    rep = json.loads((run / "eval" / "math_report.json").read_text())
    assert rep["total"] == 40 and set(rep["families"]) == {"mass", "fraction", "area"}
    verdict = json.loads((run / "verify.json").read_text().strip().splitlines()[-1])
    assert verdict["verified"] is True and verdict["failed"] == 0

    # the one-screen summary closes the run
    assert "make demo:" in res.stdout and "says nothing about Llama3-8B" in res.stdout
    assert "verify: PASS" in res.stdout
    # verify (with its inference re-run) ran once; the summary ends with the time of each of the 7 stages
    assert res.stdout.count("running tools/predict.py") == 1 and res.stdout.count("PASS rerun") == 1
    times = res.stdout[res.stdout.index("time per stage:"):].splitlines()
    assert [t.split()[0] for t in times[1:8]] == ["[%d/7]" % k for k in range(1, 8)] and "total" in times[8]
