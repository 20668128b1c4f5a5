"""tools/finetune.py through tools/launch.py on the tiny profile, for real on the CPU: the run record, kit
checkpoint names, --resume, and 2-process data parallel under msrun with identical LoRA weights on both ranks."""

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import finetune
from lorakit.config import load_config
from lorakit.io import KitError, sha256_file
from lorakit.params import count_from_config
from lorakit.runrecord import CKPT_RE, parse_loss_log, random_init_problem, read_loss
from train_fixtures import write_tiny_mindrecord

REPO = Path(__file__).resolve().parents[1]
LAUNCH = str(REPO / "tools" / "launch.py")
FINETUNE = "tools/finetune.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("train_data") / "train.mindrecord"
    write_tiny_mindrecord(path, n_rows=128, seq_length=128)
    return path


def launch(args, worker_args, timeout=600):
    return subprocess.run([sys.executable, LAUNCH, "--quiet"] + args + ["--", FINETUNE] + worker_args,
                          capture_output=True, text=True, cwd=str(REPO), timeout=timeout)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ckpts(rank_dir):
    return sorted(p.name for p in Path(rank_dir).glob("*.ckpt"))


def lora_tensors(path):
    import mindspore as ms

    params = ms.load_checkpoint(str(path))
    return {k: v.asnumpy() for k, v in params.items() if "mindpet_delta_lora" in k and not k.startswith(("adam_", "moment"))}


@pytest.fixture(scope="module")
def single_run(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("single") / "train"
    res = launch([], ["--config", "tiny", "--train-data", str(data), "--run-dir", str(run_dir), "--steps", "16",
                      "--checkpoints", "2", "--seed", "7"])
    assert res.returncode == 0, res.stderr[-4000:]
    return run_dir


def test_single_process_run_record(single_run, data):
    run_dir = single_run
    # resolved config, re-loadable as-is
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert "_base_" not in cfg and cfg["seed"] == 7
    assert cfg["train_dataset"]["data_loader"]["dataset_dir"] == str(data)
    assert cfg["model"]["model_config"]["pet_config"]["pet_type"] == "lora"
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "finished" and rec["seed"] == 7 and rec["world_size"] == 1
    # exact counts from the network, equal to the closed form of the config
    expected = count_from_config(cfg)
    assert rec["params"]["trainable"] == expected["trainable"] == 2 * (8 * (64 + 64) + 8 * (64 + 32))
    assert rec["params"]["base_total"] == expected["total"]
    assert rec["params"]["config_check"] == "agrees with lorakit.params"
    # inputs fingerprinted, versions and patches recorded
    files = {f["name"]: f for f in rec["data"]["files"]}
    assert files["train.mindrecord"]["sha256"] == sha256_file(data)
    assert files["train.mindrecord.db"]["sha256"] == sha256_file(str(data) + ".db")
    assert rec["base_checkpoint"] is None
    assert rec["versions"]["mindspore"] and rec["versions"]["mindformers"] == "1.1.0"
    series = [ln.strip() for ln in (REPO / "mindformers_patches" / "series").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert [p["name"] for p in rec["patches"]["patches"]] == series
    # per-step loss, machine readable, and it fell
    rows = read_loss(run_dir / "loss.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 17))
    assert all(set(r) >= {"step", "epoch", "loss", "lr"} and math.isfinite(r["loss"]) for r in rows)
    assert rec["loss"]["last_mean"] < rec["loss"]["first_mean"]
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # checkpoints: real steps in the names, one file per save
    names = ckpts(run_dir / "output" / "checkpoint" / "rank_0")
    assert names == ["tiny_rank_0-step000008-epoch1.ckpt", "tiny_rank_0-step000016-epoch1.ckpt"]
    assert [(c["step"], c["epoch"]) for c in rec["checkpoints"]] == [(8, 1), (16, 1)]
    assert rec["checkpoint_plan"]["every_steps"] == 8 and rec["checkpoint_plan"]["evenly_spaced"]
    assert cfg["callbacks"][1]["save_checkpoint_steps"] == 8 and cfg["callbacks"][1]["save_network_params"] is False
    # the worker log also carries MindFormers' own loss lines, which agree with loss.jsonl
    mf_rows = parse_loss_log((run_dir / "logs" / "worker_0.log").read_text(errors="replace"))
    assert [r["step"] for r in mf_rows] == list(range(1, 17))
    assert all(abs(a["loss"] - b["loss"]) < 1e-3 for a, b in zip(mf_rows, rows))


def test_resume_continues_from_the_latest_checkpoint(single_run, data):
    run_dir = single_run
    rank_dir = run_dir / "output" / "checkpoint" / "rank_0"
    before = read_loss(run_dir / "loss.jsonl")
    (rank_dir / "tiny_rank_0-step000016-epoch1.ckpt").unlink()  # as if the run had died after step 8
    args = ["--config", "tiny", "--train-data", str(data), "--run-dir", str(run_dir), "--steps", "16",
            "--checkpoints", "2", "--seed", "7"]
    res = launch([], args)
    assert res.returncode == 2 and "already holds checkpoints" in res.stderr  # no silent overwrite
    res = launch([], args + ["--resume"])
    assert res.returncode == 0, res.stderr[-4000:]
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["resume_from"]["step"] == 8 and rec["status"] == "finished"
    rows = read_loss(run_dir / "loss.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 17))
    assert rows[:8] == before[:8]
    # optimizer step and lr schedule continue where they were (same lr at the same step)
    for a, b in zip(rows[8:], before[8:]):
        assert abs(a["lr"] - b["lr"]) < 1e-9
        assert abs(a["loss"] - b["loss"]) < 0.05
    assert ckpts(rank_dir) == ["tiny_rank_0-step000008-epoch1.ckpt", "tiny_rank_0-step000016-epoch1.ckpt"]


def test_two_workers_data_parallel_under_msrun(data, tmp_path):
    run_dir = tmp_path / "train"
    res = launch(["--workers", "2", "--master-port", str(free_port())],
                 ["--config", "tiny", "--train-data", str(data), "--run-dir", str(run_dir), "--steps", "6",
                  "--set", "use_parallel=True", "--set", "parallel_config.data_parallel=2",
                  "--set", "callbacks.1.save_checkpoint_steps=3"])
    assert res.returncode == 0, res.stderr[-4000:]
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["world_size"] == 2 and rec["status"] == "finished"
    c0 = run_dir / "output" / "checkpoint" / "rank_0" / "tiny_rank_0-step000006-epoch1.ckpt"
    c1 = run_dir / "output" / "checkpoint" / "rank_1" / "tiny_rank_1-step000006-epoch1.ckpt"
    assert CKPT_RE.match(c0.name) and c0.is_file() and c1.is_file()
    a, b = lora_tensors(c0), lora_tensors(c1)
    assert len(a) == 8 and sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # trained, not just initialised the same: lora_b starts at zero
    assert max(float(np.abs(v).max()) for k, v in a.items() if k.endswith("lora_b")) > 0
    # both ranks logged their own loss on their own half of the data
    r0, r1 = read_loss(run_dir / "loss.jsonl"), read_loss(run_dir / "loss_rank1.jsonl")
    assert [r["step"] for r in r0] == [r["step"] for r in r1] == list(range(1, 7))
    assert [r["loss"] for r in r0] != [r["loss"] for r in r1]
    assert (run_dir / "logs" / "scheduler.log").is_file()

    # --resume of a multi-rank run: both ranks continue from the newest step every rank saved, each loading its
    # own file through MindFormers' per-rank folder layout (output/resume/step<N>/rank_<r>/)
    c0.unlink()
    c1.unlink()
    res = launch(["--workers", "2", "--master-port", str(free_port())],
                 ["--config", "tiny", "--train-data", str(data), "--run-dir", str(run_dir), "--steps", "6",
                  "--set", "use_parallel=True", "--set", "parallel_config.data_parallel=2",
                  "--set", "callbacks.1.save_checkpoint_steps=3", "--resume"])
    assert res.returncode == 0, res.stderr[-4000:]
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "finished" and rec["resume_from"]["step"] == 3
    resume_dir = run_dir / "output" / "resume" / "step000003"
    assert rec["resume_from"]["path"] == str(resume_dir)
    for r in (0, 1):
        assert [p.name for p in (resume_dir / ("rank_%d" % r)).iterdir()] == ["tiny_rank_%d-step000003-epoch1.ckpt" % r]
    assert c0.is_file() and c1.is_file()
    np.testing.assert_array_equal(*[lora_tensors(c)["model.layers.0.attention.wq.mindpet_delta_lora_b"]
                                    for c in (c0, c1)])
    assert [r["step"] for r in read_loss(run_dir / "loss.jsonl")] == list(range(1, 7))


def test_resume_of_a_4_rank_model_parallel_run(tmp_path, monkeypatch):
    """A fabricated output of the recipe's dp1/mp4 run: each rank holds its quarter of every split weight. --resume
    must give MindFormers the per-rank folder layout (it compiles the sharded network, then loads rank r's own
    shard), at a step every rank saved; one rank's file handed over as a whole checkpoint cannot load."""
    from mindformers.trainer.utils import check_path_include_total_ckpt, load_distributed_checkpoint

    from lorakit import ckpt_io

    root = tmp_path / "output" / "checkpoint"
    for r in range(4):
        d = root / ("rank_%d" % r)
        d.mkdir(parents=True)
        for step in (400, 800) if r != 3 else (400,):  # rank 3 died before its step-800 save
            table = {"model.layers.0.attention.wq.weight": ((4096 // 4, 4096), "float32"),
                     "model.norm_out.weight": ((4096,), "float32")}
            ckpt_io.write_synthetic(d / ("llama3_8b_rank_%d-step%06d-epoch1.ckpt" % (r, step)), table, seed=r)
    loads = set()
    for r in range(4):
        step, epoch, load = finetune.resume_point(root, r, 4)
        assert (step, epoch) == (400, 1)
        loads.add(load)
        assert not check_path_include_total_ckpt(str(load))  # MindFormers compiles (shards) before it loads
        monkeypatch.setenv("RANK_ID", str(r))
        shard = load_distributed_checkpoint(str(load))
        assert tuple(shard["model.layers.0.attention.wq.weight"].shape) == (1024, 4096)
        np.testing.assert_array_equal(shard["model.norm_out.weight"].asnumpy(), ckpt_io.read_ckpt(
            root / ("rank_%d" % r) / ("llama3_8b_rank_%d-step000400-epoch1.ckpt" % r))["model.norm_out.weight"].array)
    assert loads == {tmp_path / "output" / "resume" / "step000400"}
    # one process: the newest file itself, as before
    assert finetune.resume_point(root, 0, 1)[0] == 800
    # a rank whose folder is not on this disk (another node): refused in one line
    import shutil

    shutil.rmtree(str(root / "rank_2"))
    with pytest.raises(KitError, match=r"no kit checkpoint in .*rank_2: a 4-rank run resumes only when every rank"):
        finetune.resume_point(root, 0, 4)


def test_checkpoint_plan_for_the_recipe():
    cfg = load_config("llama3-8b-recipe")
    plan = finetune.plan_checkpoints(cfg, 5, rows=64000)
    assert plan["steps_per_epoch"] == 1000 and plan["total_steps"] == 2000
    assert plan["every_steps"] == 400 and plan["expected_steps"] == [400, 800, 1200, 1600, 2000]
    assert plan["evenly_spaced"] and cfg["callbacks"][1]["save_checkpoint_steps"] == 400
    # a size that does not divide: saves stay on sink boundaries, the last step is saved as well
    plan = finetune.plan_checkpoints(load_config("llama3-8b-recipe"), 5, rows=63936)  # 999 steps per epoch
    assert plan["every_steps"] == 398 and plan["expected_steps"] == [398, 796, 1194, 1592, 1990, 1998]
    assert not plan["evenly_spaced"]
    with pytest.raises(KitError, match="less than one global batch"):
        finetune.plan_checkpoints(load_config("tiny"), 5, rows=7)


def test_random_init_only_for_toy_models(tmp_path):
    assert random_init_problem(load_config("tiny")) is None
    assert "pass --load-checkpoint" in random_init_problem(load_config("llama3-8b-recipe"))
    data = tmp_path / "d.mindrecord"
    data.write_bytes(b"x")
    res = subprocess.run([sys.executable, str(REPO / "tools" / "finetune.py"), "--config", "llama3-8b-recipe",
                          "--train-data", str(data), "--run-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, cwd=str(REPO), timeout=120)
    assert res.returncode == 2 and "no base checkpoint for a model with hidden_size 4096" in res.stderr
    assert not (tmp_path / "r").exists()
