"""Run records of a finetune: versions, patches applied, input fingerprints, parameter counts, per-step loss,
loss curve, and the kit's checkpoint names.

Everything a reader needs to trust or repeat a run lands in the run folder (see docs/train.md):
`run.json` (this module's `start_record` / `finish_record`), `loss.jsonl` (one row per logged step:
step, epoch, loss, lr, time_s), `loss.png`. MindSpore is only imported inside the callback factory,
so the parsing and plotting helpers work without it.
"""

import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

from . import contest
from .io import KitError, atomic_path, file_fingerprint, unreadable, write_json, write_jsonl
from .layout import TRAIN
from .params import LORA_TAG, count_from_config
from .patches import fingerprints, kit_series

LIBRARIES = ("mindspore", "mindformers", "mindpet", "numpy", "tiktoken", "pyyaml", "jsonschema", "matplotlib")

# MindFormers' MFLossMonitor line: "{ Epoch:[  1/  5], step:[   10/ 1400], loss: 1.234, ... lr: 1e-05, ..."
MF_LOSS_RE = re.compile(r"Epoch:\[\s*(\d+)/\s*(\d+)\], step:\[\s*(\d+)/\s*(\d+)\], loss:\s*\[?\s*([-+0-9.eEnaif]+)"
                        r"(?:.*?\blr:\s*\[?\s*([-+0-9.eE]+))?")
# the line the kit's loss callback prints (launch.py follows it for its progress bar)
KIT_LOSS_FMT = "lorakit-step step=%d/%d epoch=%d loss=%.6f lr=%.6g"

# kit checkpoint names: <prefix>_rank_<r>-step<step, 6 digits>-epoch<epoch the step belongs to>.ckpt
CKPT_RE = re.compile(r"^(?P<prefix>.+)_rank_(?P<rank>\d+)-step(?P<step>\d+)-epoch(?P<epoch>\d+)\.ckpt$")
# MindFormers' CheckpointMointor names: <prefix>_rank_<r>-<sink epoch>_<step in sink epoch>.ckpt
# (MindSpore appends _1, _2, ... to the prefix when files with it already exist, e.g. on --resume)
STOCK_CKPT_RE = re.compile(r"^(?P<prefix>.+)_rank_(?P<rank>\d+)(?:_\d+)?-(?P<epoch>\d+)_(?P<step>\d+)\.ckpt$")


TOY_HIDDEN_SIZE = 1024  # models up to this width may train LoRA on randomly initialised weights (CPU profiles)


def random_init_problem(cfg):
    """None if `cfg` may start without a base checkpoint, else why not (a LoRA on random weights of a real-size
    model is a wasted run)."""
    hidden = int(((cfg.get("model") or {}).get("model_config") or {}).get("hidden_size") or 0)
    if hidden > TOY_HIDDEN_SIZE:
        return ("no base checkpoint for a model with hidden_size %d: pass --load-checkpoint (only toy models, "
                "hidden_size <= %d, may start from random weights)" % (hidden, TOY_HIDDEN_SIZE))
    return None


def dist_version(name):
    """The installed version of a distribution, or None."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions():
    """Versions of the libraries a run depends on (None when not installed) and of Python itself."""
    out = {"python": platform.python_version(), "platform": "%s-%s" % (sys.platform, platform.machine())}
    out.update((name, dist_version(name)) for name in LIBRARIES)
    return out


def patches_applied(patches_dir=None):
    """The MindFormers patch series the kit applies: [{name, sha256}] in series order, plus where MindFormers is.

    Reads `mindformers_patches/series` (lorakit.patches); a listed file that is missing is reported with sha256
    None rather than hidden.
    """
    series, patch_files = kit_series(patches_dir)
    patches = fingerprints(patch_files)
    mf_dir = None
    try:
        import importlib.util

        spec = importlib.util.find_spec("mindformers")
        if spec is not None and spec.origin:
            mf_dir = str(Path(spec.origin).parent)
    except (ImportError, ValueError):
        pass
    return {"series": str(series) if series.is_file() else None, "patches": patches, "mindformers_dir": mf_dir}


def fingerprint_inputs(path):
    """Fingerprints of a data or checkpoint input: a file (MindRecord with its .db index), or every .ckpt /
    .mindrecord file below a directory. sha256 up to 2 GiB, size+mtime above (lorakit.io.file_fingerprint)."""
    if not path:
        return None
    p = Path(path)
    if not p.exists():
        raise KitError("%s: not found" % path)
    if p.is_dir():
        files = sorted(x for x in p.rglob("*") if x.is_file() and x.suffix in (".ckpt", ".mindrecord", ".db"))
    else:
        files = [p]
        if p.suffix == ".mindrecord" and Path(str(p) + ".db").is_file():
            files.append(Path(str(p) + ".db"))
    return {"path": str(p.resolve()),
            "files": [dict(file_fingerprint(f), name=str(f.relative_to(p) if p.is_dir() else f.name)) for f in files]}


def count_network_params(network):
    """Exact counts from a built network: trainable (requires_grad), all parameters, LoRA tensors."""
    trainable = sum(_numel(x.shape) for x in network.trainable_params())
    total = lora = 0
    for x in network.get_parameters():
        n = _numel(x.shape)
        total += n
        if LORA_TAG in x.name:
            lora += n
    return {"trainable": trainable, "network_total": total, "lora_params": lora, "base_total": total - lora}


def _numel(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def param_counts(network, cfg):
    """Counts from the network, checked against lorakit.params' closed form from the config."""
    counts = count_network_params(network)
    counts["source"] = "network"
    try:
        closed = count_from_config(cfg)
    except KitError as exc:
        counts["config_check"] = "not done: %s" % exc
        closed = None
    counts["ratio_contest"] = contest.ratio_contest(counts["trainable"])
    counts["ratio_exact"] = contest.ratio_exact(counts["trainable"], counts["base_total"])
    if closed is not None:
        agree = closed["trainable"] == counts["trainable"] and closed["total"] == counts["base_total"]
        counts["config_check"] = "agrees with lorakit.params" if agree else \
            "DIFFERS from lorakit.params: trainable %d, total %d" % (closed["trainable"], closed["total"])
    return counts


# --------------------------------------------------------------------------------------------- loss records

def read_loss(path):
    """Rows of a loss.jsonl file (list of dicts with step, epoch, loss, lr)."""
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        raise KitError("%s:%d: not JSON" % (path, lineno)) from None
    except OSError as exc:
        raise unreadable(path, exc) from None
    return rows


def parse_loss_log(text):
    """Loss rows from a MindFormers training log (MFLossMonitor lines), e.g. a contest team's log."""
    rows = []
    for line in text.splitlines():
        m = MF_LOSS_RE.search(line)
        if not m:
            continue
        epoch, _, step, steps = (int(m.group(i)) for i in range(1, 5))
        row = {"step": (epoch - 1) * steps + step, "epoch": epoch, "loss": _to_float(m.group(5))}
        if m.group(6):
            row["lr"] = _to_float(m.group(6))
        rows.append(row)
    return rows


def _to_float(text):
    try:
        return float(text)
    except ValueError:
        return float("nan")


def loss_summary(rows, window=5):
    """First/last logged loss and the means of the first/last `window` rows (finite values only)."""
    vals = [r["loss"] for r in rows if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"])]
    if not vals:
        return {"steps_logged": len(rows), "first": None, "last": None}
    w = max(1, min(window, len(vals) // 2 or 1))
    return {"steps_logged": len(rows), "first": vals[0], "last": vals[-1],
            "first_mean": sum(vals[:w]) / w, "last_mean": sum(vals[-w:]) / w, "window": w,
            "nonfinite": len(rows) - len(vals)}


def plot_loss(rows, png, title="training loss"):
    """Loss (and lr on a second axis) against step, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, [r["loss"] for r in rows], color="tab:blue", lw=1.2, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    lrs = [r.get("lr") for r in rows]
    if rows and all(isinstance(x, (int, float)) for x in lrs):
        ax2 = ax.twinx()
        ax2.plot(steps, lrs, color="tab:orange", lw=0.8, alpha=0.7, label="lr")
        ax2.set_ylabel("learning rate")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(str(tmp), format="png")
    plt.close(fig)


# --------------------------------------------------------------------------------------------- checkpoints

def kit_ckpt_name(prefix_rank, step, epoch):
    """`<prefix>_rank_<r>` + real global step and the (1-based) epoch that step belongs to."""
    return "%s-step%06d-epoch%d.ckpt" % (prefix_rank, step, epoch)


def epoch_of(step, steps_per_epoch):
    return (int(step) - 1) // int(steps_per_epoch) + 1 if steps_per_epoch else 1


def list_checkpoints(rank_dir):
    """Kit-named checkpoints of one rank folder, sorted by step: [(step, epoch, path)]."""
    out = []
    d = Path(rank_dir)
    if d.is_dir():
        for p in d.iterdir():
            m = CKPT_RE.match(p.name)
            if m:
                out.append((int(m.group("step")), int(m.group("epoch")), p))
    return sorted(out)


def rename_stock_checkpoints(rank_dir, step, steps_per_epoch):
    """Rename MindFormers' `<prefix>_rank_<r>-<sink epoch>_<n>.ckpt` files just saved at global `step` to kit
    names. Called right after CheckpointMointor saved, so every stock-named file there belongs to `step`."""
    renamed = []
    d = Path(rank_dir)
    if not d.is_dir():
        return renamed
    for p in sorted(d.iterdir()):
        m = STOCK_CKPT_RE.match(p.name)
        if not m:
            continue
        target = d / kit_ckpt_name("%s_rank_%s" % (m.group("prefix"), m.group("rank")), step,
                                   epoch_of(step, steps_per_epoch))
        os.replace(str(p), str(target))
        renamed.append(target)
    return renamed


def make_loss_callback(run_dir, rank, ckpt_dir=None, on_begin=None, flush_every=10, stream=None, max_steps=None,
                       epochs=None, step_offset=0):
    """A MindSpore Callback that records loss/lr per step to loss.jsonl (rank 0) or loss_rank<r>.jsonl,
    prints one `lorakit-step ...` line per step, and renames freshly saved checkpoints to kit names.

    `on_begin(network)` is called once with the trained network (for parameter counts). With `max_steps`
    training stops after that global step (the final checkpoint is still saved by CheckpointMointor's end()).
    `step_offset` is the global step a resumed run starts after: MindSpore's Model.train restarts its callback
    step counter at 0 on resume (MindFormers skips the consumed batches in the dataset instead), so the kit adds
    the offset to get real global steps. `epochs` (the configured epochs) gives the total step count.
    The jsonl file is rewritten atomically every `flush_every` steps and at the end, so it is never half
    a line; on --resume the rows already there up to the resumed step are kept.
    """
    from mindspore.train import Callback

    stream = stream or sys.stdout
    loss = Path(TRAIN.loss)
    name = loss.name if rank == 0 else "%s_rank%d%s" % (loss.stem, rank, loss.suffix)
    path = Path(run_dir) / name

    class KitLossRecorder(Callback):
        def __init__(self):
            super().__init__()
            self.rows = []
            self.steps_per_epoch = None
            self.total = None
            self.t0 = None
            self.renamed = []

        def on_train_begin(self, run_context):
            cb = run_context.original_args()
            self.t0 = time.time()
            ds = getattr(cb, "train_dataset", None)
            self.steps_per_epoch = ds.get_dataset_size() if ds is not None else cb.batch_num
            if epochs and self.steps_per_epoch:
                self.total = int(epochs) * int(self.steps_per_epoch)
            else:
                self.total = int(cb.epoch_num) * int(cb.batch_num) + int(step_offset)
            if max_steps:
                self.total = min(self.total, int(max_steps))
            start = int(step_offset)
            if path.is_file():  # --resume: keep what was logged before the resumed step
                self.rows = [r for r in read_loss(path) if r.get("step", 0) <= start]
            if on_begin is not None:
                net = cb.train_network
                on_begin(getattr(net, "network", net))

        def on_train_step_end(self, run_context):
            cb = run_context.original_args()
            out = cb.net_outputs
            loss = out[0] if isinstance(out, (tuple, list)) else out
            loss = float(loss.asnumpy().mean())
            lr = None
            if isinstance(out, (tuple, list)) and len(out) >= 4:
                lr = float(out[3].asnumpy().reshape(-1)[0])
            step = int(cb.cur_step_num) + int(step_offset)
            epoch = epoch_of(step, self.steps_per_epoch)
            row = {"step": step, "epoch": epoch, "loss": loss, "lr": lr, "time_s": round(time.time() - self.t0, 3)}
            self.rows.append(row)
            print(KIT_LOSS_FMT % (step, self.total, epoch, loss, lr if lr is not None else float("nan")),
                  file=stream, flush=True)
            if ckpt_dir is not None:
                self.renamed += rename_stock_checkpoints(ckpt_dir, step, self.steps_per_epoch)
            if len(self.rows) % flush_every == 0:
                write_jsonl(path, self.rows)
            if max_steps and step >= int(max_steps):
                run_context.request_stop()

        def on_train_end(self, run_context):
            cb = run_context.original_args()
            if ckpt_dir is not None:  # CheckpointMointor saves the last step in its own end()
                self.renamed += rename_stock_checkpoints(ckpt_dir, int(cb.cur_step_num) + int(step_offset),
                                                         self.steps_per_epoch)
            write_jsonl(path, self.rows)

    return KitLossRecorder()


def start_record(path, **fields):
    rec = dict(fields, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_json(path, rec)
    return rec


def update_record(path, rec, **fields):
    """Rewrite run.json with `fields` added (status unchanged); `rec` is updated in place."""
    rec.update(fields)
    write_json(path, rec)
    return rec


def finish_record(path, rec, **fields):
    rec = dict(rec, **fields)
    rec.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_json(path, rec)
    return rec
