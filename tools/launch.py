#!/usr/bin/env python3
"""Run a training command on N workers under MindSpore's `msrun`, join always on, with preflight and progress.

  launch.py --workers 4 -- tools/finetune.py --config llama3-8b --train-data d.mindrecord --load-checkpoint b.ckpt \\
            --run-dir runs/llama3-8b/train
  launch.py --workers 2 --dry-run -- tools/finetune.py --config tiny ...     # print the exact command, run nothing

The worker command follows `--`. Its own flags (--config, --set, --train-data, --load-checkpoint, --run-dir) are
read for the preflight checks, so nothing is typed twice. Preflight (all before anything starts): the master port
is free, data_parallel x model_parallel x pipeline_stage of the resolved config equals the worker count, the data
file (and its .db index) and the checkpoint exist, the tokenizer size equals model vocab_size and the data's token
ids fit in it. Workers run as `python SCRIPT` (the interpreter word every msrun accepts; MindSpore 2.3's may refuse
`python3`) with a directory first on PATH where `python` is this interpreter, with what the contest fork's
launchers set: HCCL_BUFFSIZE=2 (MB of HCCL buffer, unless already set) and `ulimit -u unlimited` (or the hard limit).
While the job runs, step and loss are read from the worker logs, and a watchdog follows the worker processes: when
one dies (exits with a traceback or an error line), or exits while the others are still running --straggler-timeout seconds later
(an HCCL peer waiting for a dead rank hangs until HCCL's own timeout), it stops the other workers and msrun at once.
On failure the last lines of the dead (or failing) worker's log and of scheduler.log are printed and the exit status
is non-zero. With --workers 1 (and no --msrun) the command runs directly, without msrun, with the same logs, progress
and checks.
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

from lorakit.config import device_count, get_path, load_config
from lorakit.io import KitError, run_main
from lorakit.runrecord import random_init_problem

_MF_LOSS_RE = re.compile(r"Epoch:\[\s*(\d+)/\s*(\d+)\], step:\[\s*(\d+)/\s*(\d+)\], loss:\s*\[?\s*([-+0-9.eEnaif]+)")
_KIT_LOSS_RE = re.compile(r"lorakit-step step=(\d+)/(\d+) epoch=(\d+) loss=(\S+) lr=(\S+)")
_ERROR_RE = re.compile(r"Traceback \(most recent call last\)|\bError\b|ERROR|CRITICAL")
# a worker that exited with one of these in its log tail failed: an uncaught exception, a kit tool's one-line
# error (lorakit.io.run_main), a fatal MindSpore log line (plain ERROR lines also appear in runs that finish)
_DIED_RE = re.compile(r"Traceback \(most recent call last\)|^\S+\.py: error: |\[CRITICAL\]", re.M)


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
    return device_count(load_config(flags.config, flags.set))


# the contest fork's msrun_launcher.sh: `export HCCL_BUFFSIZE=2 # HCCL memory usage`
HCCL_BUFFSIZE = "2"
INTERPRETER_WORD = "python"


def python_dir(log_dir):
    """A directory in which `python` runs this interpreter: its own bin (a venv or conda env: `python` next to
    `python3`), else LOG_DIR/.python (a one-line `exec` script written by run_job)."""
    here = Path(venv_bin())
    candidate = here / INTERPRETER_WORD
    try:
        if candidate.is_file() and os.path.samefile(str(candidate), sys.executable):
            return str(here)
    except OSError:
        pass
    return str(Path(log_dir).absolute() / ".python")


def write_python_shim(directory):
    """LOG_DIR/.python/python: runs this interpreter by its path as given (a venv keeps its site-packages)."""
    d = Path(directory)
    shim = d / INTERPRETER_WORD
    if d.name != ".python" or shim.is_file():
        return
    d.mkdir(parents=True, exist_ok=True)
    shim.write_text("#!/bin/sh\nexec %s \"$@\"\n" % shlex.quote(str(Path(sys.executable).absolute())))
    shim.chmod(0o755)


def raise_process_limit():
    """`ulimit -u unlimited` as the fork's launchers do before msrun (a 4-rank job spawns thousands of threads),
    falling back to the hard limit when unlimited is not allowed. Returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not on Linux/macOS
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    for limits in ((resource.RLIM_INFINITY, resource.RLIM_INFINITY), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, limits)
            break
        except (ValueError, OSError):
            continue
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    return "unlimited" if soft == resource.RLIM_INFINITY else soft


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
    # msrun starts `python SCRIPT`; name that word, and make it this interpreter by the PATH below
    if script.endswith(".py"):
        argv.append(INTERPRETER_WORD)
    argv += [script] + cmd[1:]
    return argv, {"PATH": python_dir(args.log_dir) + os.pathsep + os.environ.get("PATH", ""),
                  "HCCL_BUFFSIZE": os.environ.get("HCCL_BUFFSIZE", HCCL_BUFFSIZE)}


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


def report_failure(log_dir, rc, lines, worker=None):
    print("launch: job failed (exit status %s); logs in %s" % (rc, log_dir), file=sys.stderr)
    worker = worker or failing_log(log_dir)
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

    def __init__(self, quiet, every=15.0, clock=time.time):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.every = every
        self.bar = None
        self.last_print = 0.0
        self.last = {}
        self.kit_ranks = set()
        self.clock = clock
        self.start = clock()
        self.first = None  # (time, step) of the first step seen: compile time is not counted in steps/s

    def timing(self, step, total):
        """'elapsed 1:02:03, 2.41 steps/s, ETA 0:12:00' (rate from the first step seen, so compiling and loading
        the checkpoint do not count; no rate or ETA before two steps)."""
        now = self.clock()
        if self.first is None:
            self.first = (now, step)
        text = "elapsed %s" % _hms(now - self.start)
        t0, s0 = self.first
        if step > s0 and now > t0:
            rate = (step - s0) / (now - t0)
            text += ", %.3g steps/s" % rate
            if total and total > step:
                text += ", ETA %s" % _hms((total - step) / rate)
        return text

    def update(self, rank, step, total, loss, kind):
        if kind == "kit":
            self.kit_ranks.add(rank)
        elif rank in self.kit_ranks:
            return  # the kit's own line carries the same step with full precision
        self.last[rank] = (step, total, loss)
        if self.quiet or rank != min(self.last):
            return
        if self.first is None:
            self.first = (self.clock(), step)
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total or None, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)
            if total and self.bar.total != total:
                self.bar.total = total
            self.bar.n = step
            self.bar.set_postfix_str("loss %.4f" % loss, refresh=False)
            self.bar.refresh()
        elif self.clock() - self.last_print >= self.every or (total and step >= total):
            self.last_print = self.clock()
            print("launch: step %d/%s loss %.4f, %s" % (step, total or "?", loss, self.timing(step, total)),
                  file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        for rank in sorted(self.last):
            step, total, loss = self.last[rank]
            print("launch: rank %d reached step %d/%s, last loss %.4f (%s)" % (rank, step, total or "?", loss,
                                                                           self.timing(step, None)),
                  file=sys.stderr)


def _hms(seconds):
    seconds = int(round(max(0.0, seconds)))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


class Watchdog:
    """Follows the worker processes msrun starts (the first of its descendants whose stdout is
    LOG_DIR/worker_<rank>.log, found in /proc) and decides when the job is lost: a worker died and its log ends in an error, or a worker left while
    others were still running `straggler_timeout` seconds later. msrun of some MindSpore versions waits for every
    worker whatever happens, and ranks waiting on a dead peer in an HCCL collective hang until HCCL's own timeout.
    Linux only (/proc); elsewhere it never triggers."""

    def __init__(self, msrun_pid, log_dir, straggler_timeout=600.0, tail_lines=40):
        self.msrun_pid = msrun_pid
        self.log_dir = Path(log_dir).absolute()
        self.straggler_timeout = straggler_timeout
        self.tail_lines = tail_lines
        self.workers = {}  # rank -> pid
        self.gone = {}  # rank -> (time it left, failed)
        self.dead = None  # (rank, reason) once triggered

    def _descendants(self):
        """msrun's descendants, parents before children (msrun may be a wrapper around the real launcher)."""
        parent = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
        out, frontier = [], [self.msrun_pid]
        while frontier:
            kids = sorted(pid for pid, ppid in parent.items() if ppid in frontier)
            out += kids
            frontier = kids
        return out

    def _rank_of(self, pid):
        try:
            target = os.readlink("/proc/%d/fd/1" % pid)
        except OSError:
            return None
        m = re.match(r"worker_(\d+)\.log$", os.path.basename(target))
        if m and Path(target).parent == self.log_dir:
            return int(m.group(1))
        return None

    @staticmethod
    def alive(pid):
        try:
            state = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")

    def log_of(self, rank):
        return self.log_dir / ("worker_%d.log" % rank)

    def check(self, now=None):
        """Poll once; returns (rank, reason) when the job is lost, else None."""
        if self.dead is not None or not Path("/proc").is_dir():
            return self.dead
        now = time.time() if now is None else now
        for pid in self._descendants():  # the first process writing worker_<r>.log is rank r's worker
            rank = self._rank_of(pid)
            if rank is not None and rank not in self.workers:
                self.workers[rank] = pid
        for rank, pid in self.workers.items():
            if rank not in self.gone and not self.alive(pid):
                tail_text = "\n".join(tail(self.log_of(rank), self.tail_lines))
                self.gone[rank] = (now, bool(_DIED_RE.search(tail_text)))
        running = [r for r in self.workers if r not in self.gone]
        if not running:
            return None  # all left (or none seen yet): msrun's own exit status tells
        for rank, (when, failed) in sorted(self.gone.items()):
            if failed:
                self.dead = (rank, "it exited with an error")
            elif self.straggler_timeout and now - when >= self.straggler_timeout:
                self.dead = (rank, "it exited %.0f s ago and %d other worker(s) still run (hung on a lost peer?)"
                             % (now - when, len(running)))
            if self.dead:
                return self.dead
        return None

    def stop_others(self, grace=10.0):
        """SIGTERM to every still running worker's process group (msrun starts each in its own session), SIGKILL
        after `grace` seconds. Returns how many were running."""
        running = [pid for r, pid in self.workers.items() if r not in self.gone and self.alive(pid)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in running:
                try:
                    os.killpg(os.getpgid(pid), sig)
                except OSError:
                    pass
            deadline = time.time() + grace
            while sig == signal.SIGTERM and time.time() < deadline and any(self.alive(p) for p in running):
                time.sleep(0.2)
        return len(running)


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


def run_job(argv, env_extra, log_dir, direct, quiet=False, poll=1.0, straggler_timeout=600.0, tail_lines=40):
    """Start the job, show progress from the worker logs, stop it when the watchdog finds a lost worker; return
    (exit status, the watchdog's (rank, reason) or None)."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **env_extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("GLOG_v", "2")  # MindSpore warnings and errors in the worker logs, not its INFO chatter
    for d in env.get("PATH", "").split(os.pathsep)[:1]:
        write_python_shim(d)
    out_path = log_dir / ("worker_0.log" if direct else "msrun.log")
    archive_logs(log_dir)  # a stale log would be read as this job's progress
    watcher = LogWatcher(log_dir)
    progress = Progress(quiet)
    lost = None
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        dog = None if direct else Watchdog(proc.pid, log_dir, straggler_timeout, tail_lines)
        try:
            while True:
                rc = proc.poll()
                for event in watcher.poll():
                    progress.update(*event)
                if rc is not None:
                    break
                lost = dog.check() if dog else None
                if lost:
                    rank, reason = lost
                    print("launch: worker %d (%s) is lost: %s; stopping the other workers and msrun"
                          % (rank, dog.log_of(rank), reason), file=sys.stderr, flush=True)
                    n = dog.stop_others()
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                    rc = proc.wait()
                    print("launch: stopped %d worker(s) and msrun" % n, file=sys.stderr)
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
    return (rc if not lost or rc else 1), lost


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
    p.add_argument("--straggler-timeout", type=float, default=600.0,
                   help="msrun: seconds the other workers may still run after one exited without an error before "
                        "the watchdog stops them (default 600; 0: only on an error)")
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
            first = env_extra["PATH"].split(os.pathsep)[0]
            if Path(first).name == ".python":
                print("# %s/python runs %s (launch.py writes it when it starts the job)" % (first, sys.executable))
            print("export PATH=%s:\"$PATH\"" % shlex.quote(first))
            print("export HCCL_BUFFSIZE=%s" % shlex.quote(env_extra["HCCL_BUFFSIZE"]))
            print("ulimit -u unlimited")
        print(" ".join(shlex.quote(a) for a in argv))
        if problems:
            print("launch: dry run: %d preflight check(s) failed: a real run would stop here" % len(problems),
                  file=sys.stderr)
            return 1
        return 0
    if problems:
        raise KitError("preflight failed: %s%s" % (problems[0], " (+%d more above)" % (len(problems) - 1)
                                                   if len(problems) > 1 else ""))
    print("launch: %s" % " ".join(shlex.quote(a) for a in argv), file=sys.stderr)
    if env_extra:
        print("launch: HCCL_BUFFSIZE=%s, ulimit -u %s, `python` is %s" % (
            env_extra["HCCL_BUFFSIZE"], raise_process_limit(), sys.executable), file=sys.stderr)
    print("launch: logs in %s" % args.log_dir, file=sys.stderr)
    rc, lost = run_job(argv, env_extra, args.log_dir, direct=not args.use_msrun, quiet=args.quiet,
                       straggler_timeout=args.straggler_timeout, tail_lines=args.tail_lines)
    if rc != 0:
        report_failure(args.log_dir, rc, args.tail_lines,
                       worker=Path(args.log_dir) / ("worker_%d.log" % lost[0]) if lost else None)
        return rc if rc > 0 else 1
    return 0


if __name__ == "__main__":
    run_main(main)
