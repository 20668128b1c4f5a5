"""A small but real run folder for the package/verify tests, built in seconds without training.

Everything is produced by the kit's own code paths except the training itself:
- train/config.yaml: the tiny profile resolved by lorakit.config (hidden 64, 2 layers, 4 heads, 2 KV heads,
  LoRA r8 alpha16 on wq,wv -> wq lora_a (8, 64), lora_b (64, 8); wv lora_a (8, 64), lora_b (32, 8) since
  head_dim = 64 / 4 = 16 and kv dim = 2 * 16 = 32);
- a full tiny LoRA checkpoint (base + LoRA tensors, random) saved with mindspore.save_checkpoint
  (lorakit.ckpt_io.ms_save), and adapter/adapter.ckpt + adapter_config.json extracted from it by
  `tools/ckpt.py extract-lora`;
- eval/: gold from tools/gen_math.py, predictions with a known number of wrong answers, math_report.* from
  tools/score_math.py, SQuAD records/predictions/report/gate from tools/squad.py, params.json from
  tools/count_params.py;
- train/run.json, loss.jsonl, loss.png through lorakit.runrecord.
"""

import collections
import json
import random
from pathlib import Path

import numpy as np

SQUAD_DEV = {
    "version": "1.1",
    "data": [
        {"title": "Rivers", "paragraphs": [
            {"context": "The Rhine rises in the Swiss Alps and flows north to the North Sea.",
             "qas": [{"id": "q1", "question": "Where does the Rhine rise?",
                      "answers": [{"answer_start": 19, "text": "the Swiss Alps"}]}]},
            {"context": "The Danube flows through ten countries and ends in the Black Sea.",
             "qas": [{"id": "q2", "question": "Where does the Danube end?",
                      "answers": [{"answer_start": 52, "text": "the Black Sea"}]}]},
        ]},
        {"title": "Cities", "paragraphs": [
            {"context": "Paris is the capital of France and lies on the Seine.",
             "qas": [{"id": "q3", "question": "Which river is Paris on?",
                      "answers": [{"answer_start": 47, "text": "the Seine"}]}]},
            {"context": "Kyoto was the capital of Japan for more than a thousand years.",
             "qas": [{"id": "q4", "question": "What was Kyoto?",
                      "answers": [{"answer_start": 10, "text": "the capital of Japan"}]}]},
        ]},
    ],
}
SQUAD_PREDICTIONS = {"q1": "the Swiss Alps", "q2": "the Black Sea.", "q3": "Seine", "q4": "a city"}

N_MATH = 24
N_WRONG = 6


def _wrong(solution):
    """The same solution with its last digit changed (so `exact` counts it wrong)."""
    for i in range(len(solution) - 1, -1, -1):
        if solution[i].isdigit():
            return solution[:i] + str((int(solution[i]) + 1) % 10) + solution[i + 1:]
    return solution + "1"


def build_run(root, seed=0, real_predict=0):
    """Write a complete run folder under root/run and return its path (plus the eval inputs beside it).

    real_predict=N: the math test set is N records and its predictions come from tools/predict.py run for real
    with the full checkpoint + the extracted adapter (so `verify --rerun` can reproduce them)."""
    import ckpt
    import count_params
    import gen_math
    import score_math
    import squad
    from lorakit import ckpt_io
    from lorakit.config import dump_config, load_config, model_config, pet_config
    from lorakit.io import write_json, write_jsonl
    from lorakit.params import base_param_table, lora_param_table
    from lorakit.runrecord import library_versions, plot_loss

    root = Path(root)
    run = root / "run"
    inputs = root / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    cfg = load_config("tiny")
    dump_config(cfg, run / "train" / "config.yaml")
    eval_cfg = load_config("tiny", ["run_mode=predict"])
    dump_config(eval_cfg, run / "eval" / "config.yaml")
    mc, pet = model_config(cfg), pet_config(cfg)

    # a full LoRA checkpoint as training leaves it (base + LoRA tensors), saved by mindspore.save_checkpoint,
    # then the adapter extracted from it by the real tool
    rng = np.random.default_rng(seed)
    full = collections.OrderedDict()
    for table in (base_param_table(mc), lora_param_table(mc, pet)):
        for name, (shape, _dtype) in table.items():
            full[name] = ckpt_io.NpTensor((0.02 * rng.standard_normal(shape)).astype(np.float32), "Float32")
    rank_dir = run / "train" / "output" / "checkpoint" / "rank_0"
    rank_dir.mkdir(parents=True, exist_ok=True)
    full_ckpt = rank_dir / "tiny_rank_0-step000040-epoch1.ckpt"
    ckpt_io.ms_save(full_ckpt, full)  # mindspore.save_checkpoint
    ckpt.main(["extract-lora", "--checkpoint", str(full_ckpt), "--config", str(run / "train" / "config.yaml"),
               "--out-dir", str(run / "adapter")])

    data = inputs / "train.mindrecord"
    data.write_bytes(b"not really a mindrecord, only fingerprinted")
    from lorakit.io import file_fingerprint

    write_json(run / "train" / "run.json", {
        "config": "tiny", "status": "finished", "seed": 0, "versions": library_versions(),
        "data": {"path": str(data.resolve()), "files": [dict(file_fingerprint(data), name=data.name)]},
        "patches": {"series": None, "patches": [], "mindformers_dir": str(root.resolve() / "site-packages")},
    })
    rows = [{"step": s, "epoch": 1, "loss": 7.0 - 0.05 * s, "lr": 1e-3} for s in range(1, 41)]
    write_jsonl(run / "train" / "loss.jsonl", rows)
    plot_loss(rows, run / "train" / "loss.png")
    (run / "train" / "logs").mkdir(parents=True, exist_ok=True)
    (run / "train" / "logs" / "worker_0.log").write_text(
        "training from %s\nstep 1 loss 7.0\n" % data.resolve(), encoding="utf-8")

    gold = inputs / "math_test.jsonl"
    gen_math.main(["--n", str(real_predict or N_MATH), "--seed", "5", "--out", str(gold), "--no-progress"])
    if real_predict:
        import subprocess
        import sys

        tools = Path(ckpt.__file__).resolve().parent
        subprocess.run([sys.executable, str(tools / "predict.py"), "--input", str(gold), "--out",
                        str(run / "eval" / "predictions.jsonl"), "--config", "tiny", "--checkpoint", str(full_ckpt),
                        "--adapter", str(run / "adapter"), "--tokenizer", "tiny", "--max-new-tokens", "8",
                        "--batch-size", "4"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        preds = []
        with open(str(gold), encoding="utf-8") as fh:
            for k, line in enumerate(fh, 1):
                rec = json.loads(line)
                comp = rec["solution"] if k > N_WRONG else _wrong(rec["solution"])
                preds.append({"id": str(k), "family": "", "prompt": rec["problem"], "completion": comp})
        write_jsonl(run / "eval" / "predictions.jsonl", preds)
    score_math.main(["--gold", str(gold), "--pred", str(run / "eval" / "predictions.jsonl"),
                     "--out-dir", str(run / "eval")])

    dev = inputs / "squad_dev.json"
    dev.write_text(json.dumps(SQUAD_DEV), encoding="utf-8")
    records = inputs / "squad_records.jsonl"
    squad.main(["prepare", "--dev", str(dev), "--out", str(records)])
    write_jsonl(run / "eval" / "squad_predictions.jsonl",
                [{"id": k, "completion": v} for k, v in SQUAD_PREDICTIONS.items()])
    squad.main(["score", "--records", str(records), "--pred", str(run / "eval" / "squad_predictions.jsonl"),
                "--out-dir", str(run / "eval")])
    squad.main(["gate", "--report", str(run / "eval" / "squad_report.json"), "--f1", "40", "--em", "20", "--write"])

    count_params.main(["--checkpoint", str(run / "adapter" / "adapter.ckpt"), "--config",
                       str(run / "train" / "config.yaml"), "--out", str(run / "eval" / "params.json")])
    random.seed(seed)
    return run


# ---------------------------------------------------------------- a packaged submission and ways to tamper with it

# the fixture's SQuAD gate (its 4-record model is no Llama3-8B): verify's default is the contest's 53.8832 / 39.7533
FIXTURE_GATE = ["--squad-thresholds", "40", "20"]


def build_submission(root, team="fx"):
    """build_run + package.py -> root/sub/<team>/ and root/sub/<team>.zip (verified by package itself)."""
    import package

    run = build_run(root)
    out = Path(root) / "sub"
    assert package.main(["--team", team, "--run", str(run), "--out-dir", str(out)]) == 0
    return out


def load_manifest(sub):
    return json.loads((Path(sub) / "manifest.json").read_text(encoding="utf-8"))


def save_manifest(sub, m):
    (Path(sub) / "manifest.json").write_text(json.dumps(m, indent=2), encoding="utf-8")


def rehash(sub):
    """What a forger does after editing files: rewrite the manifest's file list (sizes, sha256) to match."""
    from lorakit import manifest as mf

    m = load_manifest(sub)
    m["files"] = mf.file_entries(sub, limits=mf.Limits(10 ** 6, 1 << 40, 1 << 40, 1 << 40))  # a forger has no limits
    save_manifest(sub, m)


def edit_lines(path, fn):
    lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    Path(path).write_text("".join(fn(lines)), encoding="utf-8")


def run_verify(capsys, target, *extra):
    """verify.main(target --json, with FIXTURE_GATE unless thresholds are given) -> (exit code, result, checks)."""
    import verify

    extra = list(extra) + (FIXTURE_GATE if "--squad-thresholds" not in extra else [])
    rc = verify.main([str(target), "--json"] + extra)
    out = json.loads(capsys.readouterr().out)
    return rc, out, {c["check"]: c for c in out["checks"]}


def failed(checks):
    return {name: c["detail"] for name, c in checks.items() if c["status"] == "FAIL"}
