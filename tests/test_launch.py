"""tools/launch.py: the msrun command it builds, its preflight checks, progress parsing and failure reports.
The real 2-worker training through msrun is in tests/test_finetune.py."""

import json
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import launch

REPO = Path(__file__).resolve().parents[1]
TOOL = str(REPO / "tools" / "launch.py")


def run(args, cwd=REPO, timeout=120):
    return subprocess.run([sys.executable, TOOL] + args, capture_output=True, text=True, cwd=str(cwd),
                          timeout=timeout)


def fake_inputs(tmp_path):
    data = tmp_path / "train.mindrecord"
    data.write_bytes(b"x")
    Path(str(data) + ".db").write_bytes(b"x")
    ckpt = tmp_path / "llama3-8B.ckpt"
    ckpt.write_bytes(b"x")
    return data, ckpt


def fake_llama3_tokenizer(tmp_path):
    """A tiktoken file with Llama 3's 128,000 BPE ranks (+ its 256 specials = vocab_size 128256), so the dry runs
    of the 8B profile pass the tokenizer preflight without Meta's file."""
    import base64

    path = tmp_path / "tokenizer.model"
    path.write_bytes(b"".join(b"%s %d\n" % (base64.b64encode(b"t%d" % i), i) for i in range(128000)))
    return ["--tokenizer", str(path)]


def test_dry_run_8b_prints_msrun_with_4_workers_and_join(tmp_path):
    data, ckpt = fake_inputs(tmp_path)
    res = run(["--workers", "4", "--dry-run"] + fake_llama3_tokenizer(tmp_path) + ["--", "tools/finetune.py",
                                                                                  "--config", "llama3-8b",
               "--train-data", str(data), "--load-checkpoint", str(ckpt), "--run-dir", str(tmp_path / "train")])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("export PATH=") and str(Path(sys.executable).parent) in lines[0]
    argv = shlex.split(lines[-1])
    assert Path(argv[0]).name == "msrun" or argv[1:3] == ["-m", "mindspore.parallel.cluster.run"]
    assert "--worker_num=4" in argv and "--local_worker_num=4" in argv and "--join=True" in argv
    assert "--log_dir=%s" % (tmp_path / "train" / "logs") in argv
    i = argv.index("tools/finetune.py")
    assert argv[i + 1:] == ["--config", "llama3-8b", "--train-data", str(data), "--load-checkpoint", str(ckpt),
                            "--run-dir", str(tmp_path / "train")]
    # the preflight ran and found the 4-way model parallel layout consistent with 4 workers
    assert "preflight workers    ok" in res.stderr and "preflight data       ok" in res.stderr


def test_dry_run_multi_node_flags(tmp_path):
    data, ckpt = fake_inputs(tmp_path)
    res = run(["--workers", "8", "--local-workers", "4", "--master-addr", "10.0.0.1", "--node-rank", "1",
               "--master-port", "9123", "--cluster-timeout", "900", "--dry-run"] + fake_llama3_tokenizer(tmp_path) +
              ["--", "tools/finetune.py",
               "--config", "llama3-8b", "--set", "parallel_config.data_parallel=2", "--train-data", str(data),
               "--load-checkpoint", str(ckpt), "--run-dir", str(tmp_path)])
    assert res.returncode == 0, res.stderr
    argv = shlex.split(res.stdout.strip().splitlines()[-1])
    for flag in ("--worker_num=8", "--local_worker_num=4", "--master_addr=10.0.0.1", "--master_port=9123",
                 "--node_rank=1", "--join=True", "--cluster_time_out=900"):
        assert flag in argv
    assert "preflight workers    ok" in res.stderr
    res = run(["--workers", "8", "--local-workers", "4", "--dry-run", "--", "tools/finetune.py", "--config", "tiny"])
    assert res.returncode == 2 and "needs --node-rank" in res.stderr


@pytest.mark.parametrize("extra, message", [
    (["--workers", "2"], "data_parallel 1 x model_parallel 4 x pipeline_stage 1 = 4, but 2 workers"),
])
def test_preflight_refuses_bad_layout_before_starting(tmp_path, extra, message):
    data, ckpt = fake_inputs(tmp_path)
    res = run(extra + ["--", "tools/finetune.py", "--config", "llama3-8b", "--train-data", str(data),
                       "--load-checkpoint", str(ckpt), "--run-dir", str(tmp_path / "r")])
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("launch.py: error: preflight failed: ")
    assert message in res.stderr
    assert not (tmp_path / "r" / "logs").exists()  # nothing started


def test_preflight_checks_each_input(tmp_path):
    data, ckpt = fake_inputs(tmp_path)
    base = ["--", "tools/finetune.py", "--config", "tiny", "--run-dir", str(tmp_path / "r")]
    res = run(["--workers", "2"] + base + ["--train-data", str(data)])
    assert res.returncode == 2 and "use_parallel is False in the config but 2 workers" in res.stderr
    res = run(base + ["--train-data", str(tmp_path / "nope.mindrecord")])
    assert res.returncode == 2 and "training data not found" in res.stderr
    Path(str(data) + ".db").unlink()
    res = run(base + ["--train-data", str(data)])
    assert res.returncode == 2 and "MindRecord index missing" in res.stderr
    Path(str(data) + ".db").write_bytes(b"x")
    res = run(base + ["--train-data", str(data), "--load-checkpoint", str(tmp_path / "missing.ckpt")])
    assert res.returncode == 2 and "checkpoint not found" in res.stderr
    res = run(["--dry-run"] + base + ["--train-data", str(data), "--set", "model.model_config.vocab_size=1300"])
    # a dry run prints the command but exits non-zero when a preflight check failed (DRY_RUN=1 in scripts)
    assert res.returncode == 1 and "has 1280 ids but model vocab_size is 1300" in res.stderr
    assert "1 preflight check(s) failed" in res.stderr and "tools/finetune.py" in res.stdout


def test_preflight_port_in_use(tmp_path):
    data, _ = fake_inputs(tmp_path)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        res = run(["--msrun", "--master-port", str(port), "--", "tools/finetune.py", "--config", "tiny",
                   "--train-data", str(data), "--run-dir", str(tmp_path / "r")])
    finally:
        s.close()
    assert res.returncode == 2
    assert "master port %d on 127.0.0.1 is already in use" % port in res.stderr


FAILING_WORKER = """
import os, sys, time
rank = os.environ.get("RANK_ID", "0")
if os.environ.get("MS_ROLE") == "MS_SCHED":
    print("scheduler: serving"); sys.exit(0)
for step in (1, 2, 3):
    print("lorakit-step step=%d/10 epoch=1 loss=%.6f lr=0.001" % (step, 5.0 - step), flush=True)
    time.sleep(0.2)
if rank == "1":
    print("worker 1: about to fail", flush=True)
    raise RuntimeError("simulated failure in rank 1")
time.sleep(3)
"""


def test_failure_shows_the_failing_workers_log_under_msrun(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(FAILING_WORKER)
    res = run(["--workers", "2", "--master-port", str(_free_port()), "--log-dir", str(tmp_path / "logs"), "--",
               str(script)], cwd=tmp_path, timeout=180)
    assert res.returncode != 0
    assert "launch: job failed" in res.stderr
    assert "----- last 40 lines of %s -----" % (tmp_path / "logs" / "worker_1.log") in res.stderr
    assert "RuntimeError: simulated failure in rank 1" in res.stderr
    assert "scheduler.log -----" in res.stderr
    # progress was read from the worker logs while it ran
    assert "launch: rank 0 reached step 3/10, last loss 2.0000" in res.stderr


def test_direct_single_worker_success_and_failure(tmp_path):
    ok = tmp_path / "ok.py"
    ok.write_text("print('lorakit-step step=1/1 epoch=1 loss=0.500000 lr=0.1')\n")
    res = run(["--log-dir", str(tmp_path / "logs"), "--", str(ok)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "rank 0 reached step 1/1, last loss 0.5000" in res.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('line one')\nsys.exit(3)\n")
    res = run(["--log-dir", str(tmp_path / "logs2"), "--tail-lines", "5", "--", str(bad)], cwd=tmp_path)
    assert res.returncode == 3
    assert "last 5 lines of %s" % (tmp_path / "logs2" / "worker_0.log") in res.stderr and "line one" in res.stderr
    # a second attempt in the same log dir keeps the first attempt's log (the contest wants the full log)
    res = run(["--log-dir", str(tmp_path / "logs"), "--", str(ok)], cwd=tmp_path)
    assert res.returncode == 0
    (archived,) = list((tmp_path / "logs").glob("attempt-*/worker_0.log"))
    assert "lorakit-step step=1/1" in archived.read_text()


def test_parse_loss_lines():
    assert launch.parse_loss_line("lorakit-step step=12/40 epoch=1 loss=3.250000 lr=0.0001") == (12, 40, 3.25, "kit")
    mf = ("2024-07-01 - mindformers - INFO - { Epoch:[  2/  5], step:[   10/ 1400], loss: 1.234, per_step_time: "
          "300ms, lr: 1e-05, overflow cond: False, loss_scale: 1.0")
    assert launch.parse_loss_line(mf) == (1410, 7000, 1.234, "mf")
    mf_acc = "{ Epoch:[  1/  1], step:[    9/   32], loss:[7.126/7.126], per_step_time: 7841ms"
    assert launch.parse_loss_line(mf_acc) == (9, 32, 7.126, "mf")
    assert launch.parse_loss_line("nothing here") is None


def test_log_watcher_handles_partial_lines(tmp_path):
    w = launch.LogWatcher(tmp_path)
    log = tmp_path / "worker_1.log"
    log.write_text("lorakit-step step=1/4 epoch=1 loss=2.0 lr=0.1\nlorakit-step step=2/4 ep")
    assert w.poll() == [(1, 1, 4, 2.0, "kit")]
    with open(log, "a") as fh:
        fh.write("och=1 loss=1.5 lr=0.1\n")
    assert w.poll() == [(1, 2, 4, 1.5, "kit")]
    assert w.poll() == []


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_help_lists_options():
    res = run(["--help"])
    assert res.returncode == 0
    for opt in ("--workers", "--local-workers", "--master-addr", "--master-port", "--node-rank", "--log-dir",
                "--cluster-timeout", "--dry-run"):
        assert opt in res.stdout
    json.dumps(res.stdout)  # plain text


def test_dry_run_recipe_workers_run_python_whatever_the_interpreter_is_called(tmp_path):
    """Acceptance: the notebook calls the kit with `python3`; msrun of MindSpore 2.3 may not take `python3` as the
    interpreter word, so workers run `python tools/finetune.py` with this interpreter as `python` on PATH."""
    data, ckpt = fake_inputs(tmp_path)
    python3 = Path(sys.executable).parent / "python3"
    res = subprocess.run([str(python3), TOOL, "--dry-run"] + fake_llama3_tokenizer(tmp_path) + [
                          "--", "tools/finetune.py", "--config", "llama3-8b-recipe",
                          "--train-data", str(data), "--load-checkpoint", str(ckpt), "--run-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, cwd=str(REPO), timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    argv = shlex.split(lines[-1])
    i = argv.index("tools/finetune.py")
    assert argv[i - 1] == "python" and "python3" not in argv
    assert "--worker_num=4" in argv and "--join=True" in argv
    path_dir = lines[0][len("export PATH="):].split(":")[0]
    assert Path(path_dir, "python").samefile(sys.executable)
    assert "export HCCL_BUFFSIZE=2" in lines and "ulimit -u unlimited" in lines


def test_python_shim_when_the_interpreter_has_no_python_beside_it(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "venv_bin", lambda: str(tmp_path / "bin-without-python"))
    d = launch.python_dir(tmp_path / "logs")
    assert d == str(tmp_path / "logs" / ".python")
    launch.write_python_shim(d)
    res = subprocess.run([str(Path(d) / "python"), "-c", "import sys; print(sys.prefix)"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == sys.prefix  # this venv, site-packages included


ENV_WORKER = """
import json, os, resource, sys
if os.environ.get("MS_ROLE") == "MS_SCHED":
    sys.exit(0)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "env_%s.json" % os.environ.get("RANK_ID", "x"))
with open(out, "w") as fh:
    json.dump({"exe": sys.executable, "prefix": sys.prefix, "hccl": os.environ.get("HCCL_BUFFSIZE"),
               "nproc": resource.getrlimit(resource.RLIMIT_NPROC)}, fh)
"""


def test_workers_get_the_fork_launchers_environment_under_msrun(tmp_path):
    import resource

    script = tmp_path / "worker.py"
    script.write_text(ENV_WORKER)
    env = {k: v for k, v in __import__("os").environ.items() if k != "HCCL_BUFFSIZE"}
    res = subprocess.run([sys.executable, TOOL, "--quiet", "--workers", "2", "--master-port", str(_free_port()),
                          "--log-dir", str(tmp_path / "logs"), "--", str(script)], capture_output=True, text=True,
                         cwd=str(tmp_path), timeout=180, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    for rank in (0, 1):
        got = json.loads((tmp_path / ("env_%d.json" % rank)).read_text())
        assert got["prefix"] == sys.prefix  # `python` on PATH was this venv's interpreter
        assert got["hccl"] == "2"
        assert got["nproc"][0] in (resource.RLIM_INFINITY, hard)  # ulimit -u raised to unlimited (or the hard cap)
    assert "HCCL_BUFFSIZE=2, ulimit -u" in res.stderr


FAKE_MSRUN = """
# msrun's command line, but like an msrun that waits for every worker and never stops the others
import os, subprocess, sys
args, opts = sys.argv[1:], {}
while args and args[0].startswith("--"):
    key, value = args.pop(0)[2:].split("=", 1)
    opts[key] = value
procs = []
for rank in range(int(opts["worker_num"])):
    with open(os.path.join(opts["log_dir"], "worker_%d.log" % rank), "w") as fh:
        procs.append(subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                      env=dict(os.environ, RANK_ID=str(rank), MS_ROLE="MS_WORKER")))
sys.exit(max(p.wait() for p in procs))
"""

LOST_WORKER = """
import os, sys, time
rank = os.environ["RANK_ID"]
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pid_%s" % rank), "w").write(str(os.getpid()))
print("lorakit-step step=1/10 epoch=1 loss=3.0 lr=0.001", flush=True)
if rank == "1":
    time.sleep(1)
    if MODE == "error":
        raise RuntimeError("rank 1 ran out of device memory")
    sys.exit(0)  # gone without a word (e.g. the OOM killer's SIGKILL leaves no traceback either)
time.sleep(300)  # rank 0: waiting in a collective for its lost peer
"""


@pytest.mark.parametrize("mode", ["error", "silent"])
def test_watchdog_stops_the_others_when_a_worker_is_lost(tmp_path, monkeypatch, capsys, mode):
    import os
    import time

    fake = tmp_path / "fake_msrun.py"
    fake.write_text(FAKE_MSRUN)
    script = tmp_path / "worker.py"
    script.write_text("MODE = %r\n" % mode + LOST_WORKER)
    monkeypatch.setattr(launch, "msrun_prefix", lambda: [sys.executable, str(fake)])
    t0 = time.time()
    rc = launch.main(["--quiet", "--workers", "2", "--master-port", str(_free_port()), "--straggler-timeout", "3",
                      "--log-dir", str(tmp_path / "logs"), "--", str(script)])
    took = time.time() - t0
    err = capsys.readouterr().err
    assert rc != 0 and took < 60, (took, err[-2000:])
    reason = "it exited with an error" if mode == "error" else "other worker(s) still run"
    assert "launch: worker 1 (%s) is lost: " % (tmp_path / "logs" / "worker_1.log") in err and reason in err
    assert "launch: stopped 1 worker(s) and msrun" in err
    assert "----- last 40 lines of %s -----" % (tmp_path / "logs" / "worker_1.log") in err
    if mode == "error":
        assert "RuntimeError: rank 1 ran out of device memory" in err
    pid0 = int((tmp_path / "pid_0").read_text())
    deadline = time.time() + 10
    while time.time() < deadline and Path("/proc/%d" % pid0).exists():
        time.sleep(0.2)
    with pytest.raises(OSError):
        os.kill(pid0, 0)  # rank 0 no longer waits for its peer
