#!/usr/bin/env python3
"""LoRA-finetune a Llama3-shaped model with MindFormers (Trainer + pet_config) and record the run.

  finetune.py --config tiny --train-data runs/tiny/data/train.mindrecord --run-dir runs/tiny/train
  finetune.py --config llama3-8b-recipe --train-data d.mindrecord --load-checkpoint llama3-8B.ckpt --run-dir R
  finetune.py --config tiny ... --run-dir R --resume          # continue from R's latest checkpoints

This is the entry every worker runs (under msrun via launch.py for more than one). For Ascend profiles it does
what the contest's `research/llama3/run_llama3.py --run_mode finetune` does: MindFormerConfig, build_context,
use_past off, `Trainer(args=config, task="text_generation", train_dataset=...)`, `trainer.finetune(
finetune_checkpoint=..., auto_trans_ckpt=..., resume_training=...)` — with the kit's resolved yaml instead of
a hand-edited one, and the run recorded in --run-dir:

  config.yaml    the resolved config MindFormers ran (re-runnable with --config RUN_DIR/config.yaml)
  run.json       seed, versions, patches applied, data/checkpoint fingerprints, exact parameter counts,
                 loss summary, checkpoints, timings
  loss.jsonl     one row per step: step, epoch, loss, lr, time_s (rank 0; other ranks loss_rank<r>.jsonl)
  loss.png       the loss curve
  output/        MindFormers' output: checkpoint/rank_<r>/<prefix>_rank_<r>-step<NNNNNN>-epoch<E>.ckpt,
                 strategy/, log/
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

from lorakit.config import dump_config, get_path, load_config, model_config
from lorakit.io import KitError, run_main
from lorakit.runrecord import (
    fingerprint_inputs,
    finish_record,
    library_versions,
    list_checkpoints,
    loss_summary,
    make_loss_callback,
    param_counts,
    patches_applied,
    plot_loss,
    random_init_problem,
    read_loss,
    start_record,
    update_record,
)


def build_parser():
    p = argparse.ArgumentParser(prog="finetune.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--config", required=True, help="profile name (yaml/<name>.yaml) or a yaml path")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (dotted key, YAML value); repeatable")
    p.add_argument("--train-data", help="MindRecord file (or directory) to train on "
                                        "(default: train_dataset.data_loader.dataset_dir of the config)")
    p.add_argument("--load-checkpoint", help="base checkpoint (file, or a rank_* directory); '' = random init "
                                             "(tiny profile only makes sense that way)")
    p.add_argument("--run-dir", required=True, help="run folder for the record and MindFormers' output/")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in RUN_DIR")
    p.add_argument("--seed", type=int, help="random seed (default: the config's seed)")
    p.add_argument("--checkpoints", type=int, metavar="N",
                   help="save N evenly spaced checkpoints: save_checkpoint_steps = total steps // N (a multiple of "
                        "sink_size), total steps counted from the data; the last step is always saved too")
    p.add_argument("--steps", type=int, help="a short run: stop after this many steps (1 epoch at most; the lr "
                                             "schedule is fitted to it)")
    return p


def resolve(args):
    """The resolved config dict with the command-line inputs folded in, and the run paths."""
    cfg = load_config(args.config, args.set)
    run_dir = Path(args.run_dir).absolute()
    if args.train_data is not None:
        cfg.setdefault("train_dataset", {}).setdefault("data_loader", {})["dataset_dir"] = str(
            Path(args.train_data).absolute())
    data = get_path(cfg, "train_dataset.data_loader.dataset_dir")
    if not data:
        raise KitError("no training data: pass --train-data")
    if not Path(data).exists():
        raise KitError("training data not found: %s" % data)
    if args.load_checkpoint is not None:
        cfg["load_checkpoint"] = str(Path(args.load_checkpoint).absolute()) if args.load_checkpoint else ""
    ckpt = cfg.get("load_checkpoint") or ""
    if ckpt and not Path(ckpt).exists():
        raise KitError("checkpoint not found: %s" % ckpt)
    if not ckpt and not args.resume and random_init_problem(cfg):
        raise KitError(random_init_problem(cfg))
    if args.seed is not None:
        cfg["seed"] = args.seed
    if cfg.get("seed") is None:
        cfg["seed"] = 0
    if args.steps is not None:
        if args.steps < 1:
            raise KitError("--steps must be >= 1")
        cfg["runner_config"]["epochs"] = 1
        sched = cfg.setdefault("lr_schedule", {})
        sched["total_steps"] = args.steps  # the schedule ends where the short run does
        warmup = sched.get("warmup_steps")
        if sched.get("warmup_ratio") is None and isinstance(warmup, int) and warmup >= args.steps:
            # MindFormers refuses warmup_steps > total_steps (deep inside the Trainer); keep the warmup inside the run
            sched["warmup_steps"] = args.steps // 10
            print("finetune: --steps %d: lr_schedule.warmup_steps %d -> %d (the warmup must end inside the run)"
                  % (args.steps, warmup, sched["warmup_steps"]), file=sys.stderr)
    cfg["output_dir"] = str(run_dir / "output")
    cfg["run_mode"] = "finetune"
    mc = model_config(cfg)
    mc["use_past"] = False  # run_llama3.py does the same for train/finetune
    mc["checkpoint_name_or_path"] = ""
    for cb in cfg.get("callbacks") or []:
        if isinstance(cb, dict) and cb.get("type") == "CheckpointMointor":
            # one file per save per rank folder: no extra checkpoint_network/ copy of the whole model
            cb.setdefault("save_network_params", False)
            cb["async_save"] = False  # the saved file is renamed right after the save
    return cfg, run_dir


def data_rows(path):
    """Rows of a MindRecord file (or of all *.mindrecord files below a directory), from its index."""
    import mindspore.dataset as ds

    p = Path(path)
    files = sorted(str(x) for x in p.glob("*.mindrecord")) if p.is_dir() else [str(p)]
    if not files:
        raise KitError("%s: no .mindrecord files" % path)
    try:
        return ds.MindDataset(files if len(files) > 1 else files[0], columns_list=["input_ids"],
                              shuffle=False).get_dataset_size()
    except Exception as exc:  # MindSpore raises RuntimeError / ValueError for unreadable files
        raise KitError("%s: not a readable MindRecord file: %s" % (path, str(exc).strip().splitlines()[0])) from None


def total_steps(cfg, rows, max_steps=None):
    """(total steps, steps per epoch, global batch) of a run over `rows` samples (drop_remainder batching)."""
    dp = int(get_path(cfg, "parallel_config.data_parallel", 1) or 1) if cfg.get("use_parallel") else 1
    global_batch = int(get_path(cfg, "runner_config.batch_size", 1) or 1) * dp
    per_epoch = rows // global_batch
    if per_epoch < 1:
        raise KitError("%d rows are less than one global batch of %d" % (rows, global_batch))
    total = per_epoch * int(get_path(cfg, "runner_config.epochs", 1) or 1)
    if max_steps:
        total = min(total, int(max_steps))
    return total, per_epoch, global_batch


def plan_checkpoints(cfg, n, rows, max_steps=None):
    """Set every CheckpointMointor's save_checkpoint_steps so that a run of `rows` samples saves `n` evenly
    spaced checkpoints; returns the plan recorded in run.json."""
    if n < 1:
        raise KitError("--checkpoints must be >= 1")
    total, per_epoch, global_batch = total_steps(cfg, rows, max_steps)
    sink = int(get_path(cfg, "runner_config.sink_size", 1) or 1) if get_path(cfg, "runner_config.sink_mode") else 1
    # floor: N saves at every, 2*every, ... N*every; when N*every < total the last step is saved as well (one more)
    every = max(sink, (total // n) // sink * sink)  # in sink mode saves happen at sink boundaries only
    found = False
    for cb in cfg.get("callbacks") or []:
        if isinstance(cb, dict) and cb.get("type") == "CheckpointMointor":
            cb["save_checkpoint_steps"] = every
            found = True
    if not found:
        raise KitError("--checkpoints: the config has no CheckpointMointor callback")
    steps = list(range(every, total + 1, every))
    if not steps or steps[-1] != total:
        steps.append(total)
    return {"requested": n, "every_steps": every, "total_steps": total, "steps_per_epoch": per_epoch,
            "global_batch": global_batch, "rows": rows, "expected_steps": steps,
            "evenly_spaced": total % every == 0 and total // every == n}


def _rel(path, base):
    """`path` relative to `base` when below it, else absolute."""
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return str(path)


def latest_checkpoint(ckpt_root, rank):
    found = list_checkpoints(Path(ckpt_root) / ("rank_%d" % rank))
    if not found:
        raise KitError("--resume: no kit checkpoint in %s" % (Path(ckpt_root) / ("rank_%d" % rank)))
    return found[-1]


def resume_point(ckpt_root, rank, world):
    """(step, epoch, what to load) for --resume. One process: the newest checkpoint file of rank_0. Several: the
    newest step saved by every rank (a rank that died before its last save holds back the others), laid out the
    way MindFormers loads a distributed checkpoint, RESUME_DIR/rank_<r>/<that rank's file> (a link), and that
    directory is what is loaded: MindFormers then compiles the sharded network first and loads each rank's own
    shard. Given one rank's file instead, it loads it before compiling, into the full-shape parameters, and a
    model-parallel shard does not fit."""
    if world <= 1:
        return latest_checkpoint(ckpt_root, rank)
    by_rank = {}
    for r in range(world):
        by_rank[r] = {step: (epoch, path) for step, epoch, path in list_checkpoints(Path(ckpt_root) / ("rank_%d" % r))}
        if not by_rank[r]:
            raise KitError("--resume: no kit checkpoint in %s: a %d-rank run resumes only when every rank's folder "
                           "holds its checkpoints (one node, or a shared output disk)"
                           % (Path(ckpt_root) / ("rank_%d" % r), world))
    common = set.intersection(*(set(steps) for steps in by_rank.values()))
    if not common:
        raise KitError("--resume: the %d ranks share no saved step (%s)" % (world, ", ".join(
            "rank_%d: %s" % (r, sorted(steps)) for r, steps in sorted(by_rank.items()))))
    step = max(common)
    epoch, own = by_rank[rank][step]
    resume_dir = Path(ckpt_root).parent / "resume" / ("step%06d" % step)
    link_dir = resume_dir / ("rank_%d" % rank)
    link_dir.mkdir(parents=True, exist_ok=True)
    for old in link_dir.iterdir():  # exactly one file: MindFormers takes the newest .ckpt of the folder
        old.unlink()
    try:
        os.link(str(own), str(link_dir / own.name))  # same disk: no copy, and nothing to dangle
    except OSError:
        os.symlink(os.path.relpath(str(own), str(link_dir)), str(link_dir / own.name))
    return step, epoch, resume_dir


def scheduler_only(cfg):
    """msrun also runs this script as the scheduler (MS_ROLE=MS_SCHED): it only serves the cluster and never
    returns from init(); nothing is recorded by it."""
    import mindspore as ms
    from mindspore.communication import init

    ms.set_context(device_target=get_path(cfg, "context.device_target", "CPU"))
    init()
    return 0


def set_seeds(seed):
    import mindspore as ms
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)
    ms.dataset.config.set_seed(seed)


def main(argv=None):
    args = build_parser().parse_args(argv)
    cfg, run_dir = resolve(args)
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        return scheduler_only(cfg)
    out_dir = Path(cfg["output_dir"])
    early_rank = int(os.environ.get("RANK_ID", "0") or 0) if cfg.get("use_parallel") else 0
    if not args.resume and early_rank == 0 and list_checkpoints(out_dir / "checkpoint" / "rank_0"):
        raise KitError("%s already holds checkpoints of an earlier run: use --resume or a new --run-dir"
                       % (out_dir / "checkpoint" / "rank_0"))
    os.environ["LOCAL_DEFAULT_PATH"] = str(out_dir)  # MindFormers' output root (strategy/, checkpoint/)
    os.environ.setdefault("LOG_MF_PATH", str(out_dir / "log"))

    plan = None
    if args.checkpoints is not None:
        plan = plan_checkpoints(cfg, args.checkpoints, data_rows(get_path(cfg, "train_dataset.data_loader."
                                                                             "dataset_dir")), args.steps)
    from mindformers import MindFormerConfig, Trainer
    from mindformers.core.context import build_context
    from mindformers.tools.utils import get_output_root_path, set_output_path

    t0 = time.time()
    set_output_path(str(out_dir))
    mfc = MindFormerConfig(**cfg)
    build_context(mfc)
    rank = int(mfc.local_rank or 0)
    world = int(mfc.device_num or 1)
    mfc.model.model_config.use_past = False
    set_seeds(int(cfg["seed"]))

    # where MindFormers really writes (on a ModelArts *training job* it ignores output_dir for /cache/ma-user-work)
    out_root = Path(get_output_root_path()).absolute()
    if out_root != out_dir:
        print("finetune: warning: MindFormers writes to %s, not %s" % (out_root, out_dir), file=sys.stderr)
    ckpt_root = out_root / "checkpoint"
    rank_dir = ckpt_root / ("rank_%d" % rank)
    base_ckpt = cfg.get("load_checkpoint") or ""
    load, resume_from = base_ckpt, None
    if args.resume:
        step, epoch, path = resume_point(ckpt_root, rank, world if cfg.get("use_parallel") else 1)
        total = plan["total_steps"] if plan else total_steps(cfg, data_rows(get_path(
            cfg, "train_dataset.data_loader.dataset_dir")), args.steps)[0]
        if step >= total:
            raise KitError("--resume: %s is already at step %d of %d: nothing left to train (raise "
                           "runner_config.epochs to train on)" % (path.name, step, total))
        load, resume_from = str(path), {"path": str(path), "step": step, "epoch": epoch}
        mfc.load_checkpoint = load
        mfc.resume_training = True
    elif rank == 0 and list_checkpoints(rank_dir):
        raise KitError("%s already holds checkpoints of an earlier run: use --resume or a new --run-dir" % rank_dir)

    record_path = run_dir / "run.json"
    rec = None
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
        print("finetune: fingerprinting inputs ...", file=sys.stderr, flush=True)
        data_path = get_path(cfg, "train_dataset.data_loader.dataset_dir")
        rec = start_record(
            record_path, command=[Path(sys.argv[0]).name] + list(sys.argv[1:] if argv is None else argv),
            config=str(args.config), overrides=list(args.set), seed=int(cfg["seed"]), world_size=world,
            resume_from=resume_from, checkpoint_plan=plan, versions=library_versions(), patches=patches_applied(),
            data=fingerprint_inputs(data_path),
            base_checkpoint=fingerprint_inputs(base_ckpt) if base_ckpt else None,
            hashing_note="sha256 for files up to 2 GiB; above that size+mtime (the entry says which)")

    counts = {}

    def on_begin(network):
        counts.update(param_counts(network, cfg))
        if rank == 0:
            update_record(record_path, rec, params=counts)
        print("finetune: trainable %d of %d parameters (ratio %.9g of 8.03e9)"
              % (counts["trainable"], counts["base_total"], counts["ratio_contest"]), file=sys.stderr, flush=True)

    callback = make_loss_callback(run_dir, rank, ckpt_dir=rank_dir, on_begin=on_begin, max_steps=args.steps,
                                  epochs=int(get_path(cfg, "runner_config.epochs", 1) or 1),
                                  step_offset=resume_from["step"] if resume_from else 0)
    trainer = Trainer(args=mfc, task="text_generation", train_dataset=get_path(cfg, "train_dataset.data_loader."
                                                                                    "dataset_dir"),
                      callbacks=[callback])
    try:
        trainer.finetune(finetune_checkpoint=load if load else False, auto_trans_ckpt=bool(mfc.auto_trans_ckpt),
                         resume_training=bool(args.resume))
    except BaseException as exc:
        if rank == 0 and rec is not None:
            finish_record(record_path, dict(rec, params=counts), status="failed", error=str(exc)[:2000])
        raise

    if rank != 0:
        return 0
    loss_path = run_dir / "loss.jsonl"
    rows = read_loss(loss_path) if loss_path.is_file() else []
    if rows:
        plot_loss(rows, run_dir / "loss.png", title="%s: loss (rank 0)" % args.config)
    # rank 0's saves; every rank_<r> folder holds the same steps (other ranks may still be renaming their last)
    ckpts = [{"rank": 0, "step": s, "epoch": e, "file": _rel(p, run_dir)} for s, e, p in list_checkpoints(rank_dir)]
    finish_record(record_path, dict(rec, params=counts), status="finished", loss=loss_summary(rows),
                  checkpoints=ckpts, checkpoint_dirs=[_rel(ckpt_root / ("rank_%d" % r), run_dir) for r in range(world)],
                  wall_s=round(time.time() - t0, 1),
                  output_root=_rel(out_root, run_dir),
                  strategy_dir=_rel(out_root / "strategy", run_dir) if (out_root / "strategy").is_dir() else None)
    print("finetune: done: %s (loss %s -> %s, %d checkpoint(s) on rank 0)"
          % (run_dir, rows[0]["loss"] if rows else "-", rows[-1]["loss"] if rows else "-", len(ckpts)),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
