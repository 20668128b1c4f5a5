#!/usr/bin/env python3
"""Run a training command on N workers under MindSpore's `msrun`, join always on, with preflight and progress.

  launch.py --workers 4 -- tools/finetune.py --config llama3-8b --train-data d.mindrecord --load-checkpoint b.ckpt \\
            --run-dir runs/llama3-8b/train
  launch.py --workers 2 --dry-run -- tools/finetune.py --config tiny ...     # print the exact command, run nothing

The worker command follows `--`. Its own flags (--config, --set, --train-data, --load-checkpoint, --run-dir) are
read for the preflight checks, so nothing is typed twice. Preflight (all before anything starts): the master port
is free, data_parallel x model_parallel x pipeline_stage of the resolved config equals the worker count, the data
file (and its .db index) and the checkpoint exist, the tokenizer size equals model vocab_size and the data's token
ids fit in it. Workers run with this Python's bin directory first on PATH (msrun starts `python` from PATH).
While the job runs, step and loss are read from the worker logs; on failure the last lines of the failing worker's
log and of scheduler.log are printed and the exit status is non-zero. With --workers 1 (and no --msrun) the
command runs directly, without msrun, with the same logs, progress and checks.
Multi-node: run the same command on every node with --workers TOTAL --local-workers PER_NODE
--master-addr NODE0_IP --node-rank K (see docs/train.md).
"""

import argparse
import errno
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lorakit.config import get_path, load_config
from lorakit.io import KitError, run_main
from lorakit.runrecord import random_init_problem

_MF_LOSS_RE = re.compile(r"Epoch:\[\s*(\d+)/\s*(\d+)\], step:\[\s*(\d+)/\s*(\d+)\], loss:\s*\[?\s*([-+0-9.eEnaif]+)")
_KIT_LOSS_RE = re.compile(r"lorakit-step step=(\d+)/(\d+) epoch=(\d+) loss=(\S+) lr=(\S+)")
_ERROR_RE = re.compile(r"Traceback \(most recent call last\)|\bError\b|ERROR|CRITICAL")


def venv_bin():
    """The bin directory of the running interpreter (not symlink-resolved: a venv's python is a symlink)."""
    return str(Path(sys.executable).absolute().parent)


def msrun_prefix():
    """How to call msrun: the venv's msrun script, msrun on PATH, or `python -m mindspore.parallel.cluster.run`."""
    local = Path(venv_bin()) / "msrun"
    if local.is_file():
        return [str(local)]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and (Path(d) / "msrun").is_file():
            return [str(Path(d) / "msrun")]
    return [sys.executable, "-m", "mindspore.parallel.cluster.run"]


def parse_worker_flags(cmd):
    """The finetune-style flags of the worker command (unknown ones are ignored)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--train-data")
    p.add_argument("--load-checkpoint")
    p.add_argument("--run-dir")
    known, _ = p.parse_known_args(cmd[1:])
    return known


def resolve_workers(value, flags):
    """--workers N, or `auto`: the device count the worker's config asks for (1 without use_parallel)."""
    if str(value) != "auto":
        try:
            n = int(value)
        except ValueError:
            raise KitError("--workers %r: expected a number or auto" % value) from None
        if n < 1:
            raise KitError("--workers must be >= 1")
        return n
    if not flags.config:
        return 1
    cfg = load_config(flags.config, flags.set)
    if not cfg.get("use_parallel"):
        return 1
    n = 1
    for key in ("data_parallel", "model_parallel", "pipeline_stage"):
        n *= int(get_path(cfg, "parallel_config." + key, 1) or 1)
    return n


def build_command(args, cmd):
    """(argv, env additions) for the job: msrun with join, or the command itself for one direct worker."""
    script = cmd[0]
    if not args.use_msrun:
        return [sys.executable] + cmd, {}
    argv = msrun_prefix() + [
        "--worker_num=%d" % args.workers,
        "--local_worker_num=%d" % args.local_workers,
        "--master_addr=%s" % args.master_addr,
        "--master_port=%d" % args.master_port,
    ]
    if args.node_rank is not None:
        argv.append("--node_rank=%d" % args.node_rank)
    argv += ["--log_dir=%s" % args.log_dir, "--join=True", "--cluster_time_out=%d" % args.cluster_timeout]
    # msrun starts `python SCRIPT` (or the interpreter named first): name ours, found first on PATH below
    exe = Path(sys.executable).name
    if script.endswith(".py") and exe in ("python", "python3"):
        argv.append(exe)
    argv += [script] + cmd[1:]
    return argv, {"PATH": venv_bin() + os.pathsep + os.environ.get("PATH", "")}


# ----------------------------------------------------------------------------------------------- preflight

def check_port(addr, port):
    """Error if `port` is taken on `addr` (only checked when addr is an address of this machine)."""
    try:
        host = socket.gethostbyname(addr)
    except OSError:
        return "master address %s does not resolve" % addr
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return None  # not this machine: the master node checks its own port
        if exc.errno == errno.EADDRINUSE:
            return "master port %d on %s is already in use (pick another with --master-port)" % (port, addr)
        return "cannot bind master port %d on %s: %s" % (port, addr, exc.strerror or exc)
    finally:
        s.close()
    return None


def check_workers(cfg, workers):
    dp = int(get_path(cfg, "parallel_config.data_parallel", 1) or 1)
    mp = int(get_path(cfg, "parallel_config.model_parallel", 1) or 1)
    pp = int(get_path(cfg, "parallel_config.pipeline_stage", 1) or 1)
    if not cfg.get("use_parallel"):
        if workers != 1:
            return "use_parallel is False in the config but %d workers were asked for (add --set use_parallel=True " \
                   "--set parallel_config.data_parallel=%d)" % (workers, workers)
        return None
    if dp * mp * pp != workers:
        return "data_parallel %d x model_parallel %d x pipeline_stage %d = %d, but %d workers were asked for" \
               % (dp, mp, pp, dp * mp * pp, workers)
    return None


def check_data(path):
    if not path:
        return "no training data: pass --train-data to the worker command (or set train_dataset.data_loader.dataset_dir)"
    p = Path(path)
    if not p.exists():
        return "training data not found: %s" % path
    if p.is_file() and p.suffix == ".mindrecord" and not Path(str(p) + ".db").is_file():
        return "MindRecord index missing: %s.db (the .mindrecord and its .db must stay together)" % path
    return None


def check_checkpoint(path):
    if path and not Path(path).exists():
        return "checkpoint not found: %s" % path
    return None


def tokenizer_size(spec, profile):
    """(number of ids, path) of the tokenizer: BPE ranks + Llama 3's 256 specials. Without a spec the tiny
    tokenizer goes with tiny* profiles (as in the Makefile) and the real Llama 3 file with the others."""
    from lorakit import tokenizer as tk

    if spec is None:
        spec = "tiny" if Path(str(profile)).stem.startswith("tiny") else None
    path = tk.tiny_tokenizer_path() if spec == "tiny" else Path(spec) if spec else tk.default_tokenizer_path()
    if str(path).endswith(".json"):  # an imported model's tokenizer.json (base_model.py import-gguf)
        tok = tk.load_tokenizer(path)
        return tok.n_vocab, tok.path
    if not Path(path).is_file():
        raise KitError("tokenizer file not found: %s (run `make tokenizer` or pass --tokenizer)" % path)
    return len(tk.load_tiktoken_ranks(path)) + tk.N_SPECIAL, path


def max_token_id(path, rows=256):
    """Largest input id in the first `rows` rows of a MindRecord file (None if it cannot be read)."""
    try:
        from mindspore.mindrecord import FileReader
    except ImportError:
        return None
    try:
        reader = FileReader(str(path), num_consumer=1, columns=["input_ids"])
    except Exception as exc:  # MindSpore raises RuntimeError/ValueError/MRM* errors for unreadable files
        raise KitError("%s: not a readable MindRecord file: %s" % (path, str(exc).strip().splitlines()[0])) from None
    top = -1
    try:
        for i, row in enumerate(reader.get_next()):
            if i >= rows:
                break
            top = max(top, int(row["input_ids"].max()))
    finally:
        reader.close()
    return top


def preflight(args, cmd):
    """List of (check, problem or None, detail)."""
    results = []
    script = Path(cmd[0])
    results.append(("command", None if script.is_file() or not cmd[0].endswith(".py")
                    else "worker script not found: %s" % script, cmd[0]))
    if args.use_msrun and args.node_rank in (None, 0):
        results.append(("port", check_port(args.master_addr, args.master_port), "%s:%d" % (args.master_addr,
                                                                                      args.master_port)))
    flags = parse_worker_flags(cmd)
    if not flags.config:
        results.append(("config", None, "worker command has no --config: config checks skipped"))
        return results
    try:
        cfg = load_config(flags.config, flags.set)
    except KitError as exc:
        results.append(("config", str(exc), flags.config))
        return results
    results.append(("config", None, flags.config))
    results.append(("workers", check_workers(cfg, args.workers), "%d worker(s)" % args.workers))
    data = flags.train_data or get_path(cfg, "train_dataset.data_loader.dataset_dir")
    data_problem = check_data(data)
    results.append(("data", data_problem, data or "-"))
    ckpt = flags.load_checkpoint if flags.load_checkpoint is not None else cfg.get("load_checkpoint")
    problem = check_checkpoint(ckpt) if ckpt else random_init_problem(cfg)
    results.append(("checkpoint", problem, ckpt or "none: LoRA on a randomly initialised base"))
    vocab = int(get_path(cfg, "model.model_config.vocab_size", 0) or 0)
    try:
        n, tok_path = tokenizer_size(args.tokenizer, flags.config)
        problem = None if n == vocab else "tokenizer %s has %d ids but model vocab_size is %d" % (tok_path, n, vocab)
        results.append(("tokenizer", problem, "%s: %d ids" % (tok_path, n)))
    except KitError as exc:
        results.append(("tokenizer", str(exc), str(args.tokenizer or "")))
    if data and not data_problem and str(data).endswith(".mindrecord") and not args.dry_run:
        try:
            top = max_token_id(data)
        except KitError as exc:
            results.append(("data ids", str(exc), data))
            top = None
        if top is not None:
            problem = None if top < vocab else "data %s holds token id %d >= vocab_size %d" % (data, top, vocab)
            results.append(("data ids", problem, "max id %d in the first rows" % top))
    return results


# ----------------------------------------------------------------------------------------------- running

class LogWatcher:
    """Follows worker_*.log in a directory and returns (rank, step, total, loss, kind) for new loss lines."""

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self.offsets = {}
        self.partial = {}

    def worker_logs(self):
        logs = []
        for p in self.log_dir.glob("worker_*.log"):
            m = re.match(r"worker_(\d+)\.log$", p.name)
            if m:
                logs.append((int(m.group(1)), p))
        return sorted(logs)

    def poll(self):
        events = []
        for rank, path in self.worker_logs():
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.offsets.get(path, 0))
                    chunk = fh.read()
                    self.offsets[path] = fh.tell()
            except OSError:
                continue
            text = self.partial.pop(path, "") + chunk.decode("utf-8", "replace")
            lines = text.split("\n")
            if lines and not text.endswith("\n"):
                self.partial[path] = lines.pop()
            for line in lines:
                ev = parse_loss_line(line)
                if ev:
                    events.append((rank,) + ev)
        return events


def parse_loss_line(line):
    """(step, total, loss, kind) from a kit loss line (kind "kit") or a MindFormers MFLossMonitor line ("mf")."""
    m = _KIT_LOSS_RE.search(line)
    if m:
        return int(m.group(1)), int(m.group(2)), _float(m.group(4)), "kit"
    m = _MF_LOSS_RE.search(line)
    if m:
        epoch, epochs, step, steps = (int(m.group(i)) for i in range(1, 5))
        return (epoch - 1) * steps + step, epochs * steps, _float(m.group(5)), "mf"
    return None


def _float(text):
    try:
        return float(text.rstrip(",]"))
    except ValueError:
        return float("nan")


def tail(path, n):
    try:
        with open(path, "rb") as fh:
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError as exc:
        return ["(cannot read %s: %s)" % (path, exc.strerror or exc)]
    return lines[-n:]


def failing_log(log_dir):
    """The worker log most likely to hold the failure: first with a traceback, else with an error, else newest."""
    logs = LogWatcher(log_dir).worker_logs()
    if not logs:
        return None
    texts = {}
    for _, p in logs:
        try:
            texts[p] = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            texts[p] = ""
    for _, p in logs:
        if "Traceback (most recent call last)" in texts[p]:
            return p
    for _, p in logs:
        if _ERROR_RE.search(texts[p]):
            return p
    return max((p for _, p in logs), key=lambda p: p.stat().st_mtime)


def report_failure(log_dir, rc, lines):
    print("launch: job failed (exit status %s); logs in %s" % (rc, log_dir), file=sys.stderr)
    worker = failing_log(log_dir)
    for path in [worker, Path(log_dir) / "scheduler.log", Path(log_dir) / "msrun.log"]:
        if path is None or not Path(path).is_file():
            continue
        print("----- last %d lines of %s -----" % (lines, path), file=sys.stderr)
        for line in tail(path, lines):
            print(line, file=sys.stderr)
    if worker is None:
        print("launch: no worker log was written (the job did not start; see above)", file=sys.stderr)


class Progress:
    """Step/loss of the lowest rank: a tqdm bar on a terminal, a line every `every` seconds otherwise."""

    def __init__(self, quiet, every=15.0):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.every = every
        self.bar = None
        self.last_print = 0.0
        self.last = {}
        self.kit_ranks = set()

    def update(self, rank, step, total, loss, kind):
        if kind == "kit":
            self.kit_ranks.add(rank)
        elif rank in self.kit_ranks:
            return  # the kit's own line carries the same step with full precision
        self.last[rank] = (step, total, loss)
        if self.quiet or rank != min(self.last):
            return
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total or None, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)
            if total and self.bar.total != total:
                self.bar.total = total
            self.bar.n = step
            self.bar.set_postfix_str("loss %.4f" % loss, refresh=False)
            self.bar.refresh()
        elif time.time() - self.last_print >= self.every or (total and step >= total):
            self.last_print = time.time()
            print("launch: step %d/%s loss %.4f" % (step, total or "?", loss), file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        for rank in sorted(self.last):
            step, total, loss = self.last[rank]
            print("launch: rank %d reached step %d/%s, last loss %.4f" % (rank, step, total or "?", loss),
                  file=sys.stderr)


def archive_logs(log_dir):
    """Move the logs of an earlier attempt (e.g. before a --resume) to log_dir/attempt-<time of its last write>/:
    the contest wants the full training log, so nothing is deleted."""
    old = [p for p in list(Path(log_dir).glob("worker_*.log")) + [Path(log_dir) / "scheduler.log",
                                                                   Path(log_dir) / "msrun.log"] if p.is_file()]
    if not old:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(max(p.stat().st_mtime for p in old)))
    dest = Path(log_dir) / ("attempt-" + stamp)
    n = 1
    while dest.exists():
        n += 1
        dest = Path(log_dir) / ("attempt-%s-%d" % (stamp, n))
    dest.mkdir(parents=True)
    for p in old:
        os.replace(str(p), str(dest / p.name))
    return dest


def run_job(argv, env_extra, log_dir, direct, quiet=False, poll=1.0):
    """Start the job, show progress from the worker logs, return the exit status."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **env_extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("GLOG_v", "2")  # MindSpore warnings and errors in the worker logs, not its INFO chatter
    out_path = log_dir / ("worker_0.log" if direct else "msrun.log")
    archive_logs(log_dir)  # a stale log would be read as this job's progress
    watcher = LogWatcher(log_dir)
    progress = Progress(quiet)
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                rc = proc.poll()
                for event in watcher.poll():
                    progress.update(*event)
                if rc is not None:
                    break
                time.sleep(poll)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # msrun then stops its workers
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            progress.close()
    return rc


def build_parser():
    p = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--workers", default="auto",
                   help="total worker processes (msrun --worker_num); default auto: data_parallel x model_parallel "
                        "x pipeline_stage of the worker's resolved config when use_parallel is on, else 1")
    p.add_argument("--local-workers", type=int, help="workers on this node (default: all of them)")
    p.add_argument("--master-addr", default="127.0.0.1", help="scheduler address (node 0), default 127.0.0.1")
    p.add_argument("--master-port", type=int, default=8118, help="scheduler port, default 8118")
    p.add_argument("--node-rank", type=int, help="this node's index in a multi-node job")
    p.add_argument("--log-dir", help="msrun log directory (default RUN_DIR/logs, else output/msrun_log)")
    p.add_argument("--cluster-timeout", type=int, default=600, help="seconds to wait for all workers to join")
    p.add_argument("--msrun", action="store_true", help="use msrun even for a single worker")
    p.add_argument("--tokenizer", help="tokenizer for the vocab check: a tiktoken file, a tokenizer.json or `tiny` "
                                       "(default: tiny for tiny* profiles, else the real Llama 3 file)")
    p.add_argument("--tail-lines", type=int, default=40, help="log lines shown on failure (default 40)")
    p.add_argument("--skip-preflight", action="store_true", help="start without the preflight checks")
    p.add_argument("--dry-run", action="store_true", help="run the preflight, print the command, start nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the worker command (a .py file and its args)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise KitError("no worker command: put it after `--`, e.g. -- tools/finetune.py --config tiny ...")
    flags = parse_worker_flags(cmd)
    args.workers = resolve_workers(args.workers, flags)
    args.local_workers = args.local_workers or args.workers
    if args.local_workers > args.workers:
        raise KitError("--local-workers %d is more than --workers %d" % (args.local_workers, args.workers))
    if args.local_workers < args.workers and args.node_rank is None:
        raise KitError("a multi-node job (--local-workers < --workers) needs --node-rank on every node")
    args.use_msrun = args.msrun or args.workers > 1
    if not args.log_dir:
        args.log_dir = str(Path(flags.run_dir) / "logs") if flags.run_dir else "output/msrun_log"

    problems = []
    if not args.skip_preflight:
        for name, problem, detail in preflight(args, cmd):
            status = "FAIL" if problem else "ok"
            print("preflight %-10s %-4s %s" % (name, status, problem or detail), file=sys.stderr)
            if problem:
                problems.append(problem)
    argv, env_extra = build_command(args, cmd)
    if args.dry_run:
        if env_extra:
            print("export PATH=%s:\"$PATH\"" % shlex.quote(venv_bin()))
        print(" ".join(shlex.quote(a) for a in argv))
        if problems:
            print("launch: dry run: %d preflight check(s) would stop a real run" % len(problems), file=sys.stderr)
        return 0
    if problems:
        raise KitError("preflight failed: %s%s" % (problems[0], " (+%d more above)" % (len(problems) - 1)
                                                   if len(problems) > 1 else ""))
    print("launch: %s" % " ".join(shlex.quote(a) for a in argv), file=sys.stderr)
    print("launch: logs in %s" % args.log_dir, file=sys.stderr)
    rc = run_job(argv, env_extra, args.log_dir, direct=not args.use_msrun, quiet=args.quiet)
    if rc != 0:
        report_failure(args.log_dir, rc, args.tail_lines)
        return rc if rc > 0 else 1
    return 0


if __name__ == "__main__":
    run_main(main)
