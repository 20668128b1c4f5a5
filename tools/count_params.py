#!/usr/bin/env python3
"""Exact trainable / total parameter counts and the contest ratio, from a config or from a checkpoint.

From a config (closed form, no MindSpore needed): `model.model_config` gives the Llama shapes and
`pet_config` the LoRA rank and `target_modules`, matched the way MindFormers' LoRA adapter matches it
(`re.match` against each cell's own name). From a checkpoint: the LoRA tensors of a full checkpoint
or of an adapter.ckpt are counted one by one (names and shapes only; no tensor data is read).

`total` is the base model (no LoRA), the quantity the contest divided by: 8.03e9 for Llama3-8B, exactly
8,030,261,248. `ratio_contest` = trainable / 8.03e9 to 6 significant digits, as the leaderboard printed it
(`ratio_contest_full` unrounded), `ratio_exact` = trainable / total. `network_total` = total + LoRA parameters (all parameters of the LoRA network).
"""

import argparse
import json
import os
import sys

from lorakit import contest, params
from lorakit.ckpt_io import ADAPTER_CONFIG, ckpt_index, is_lora, is_state_tensor, read_adapter_config
from lorakit.config import load_config
from lorakit.io import KitError, run_main, write_json


def count_checkpoint(path, cfg=None):
    """Counts from a full (LoRA) checkpoint or an adapter.ckpt; base total from the file, the adapter's
    config, or the closed form of `cfg`, in that order."""
    if not os.path.isfile(path):
        raise KitError("--checkpoint %s: no such file" % path)
    index = ckpt_index(path)
    if not index:
        raise KitError("%s: no tensors" % path)
    lora = {n: s for n, (s, _) in index.items() if is_lora(n)}
    base = {n: s for n, (s, _) in index.items() if not is_lora(n) and not is_state_tensor(n)}
    lora_total = sum(params.numel(s) for s in lora.values())
    base_total = sum(params.numel(s) for s in base.values())
    source = "checkpoint"
    if not base:  # an adapter file: the base size comes from its config or from --config
        source = "adapter"
        adapter_cfg = os.path.join(os.path.dirname(os.path.abspath(path)), ADAPTER_CONFIG)
        if os.path.isfile(adapter_cfg):
            base_total = int(read_adapter_config(adapter_cfg).get("base_model", {}).get("total_params") or 0)
        if not base_total and cfg is not None:
            base_total = params.count_from_config(cfg)["total"]
        if not base_total:
            raise KitError("%s holds only LoRA tensors and no %s or --config says the base size"
                           % (path, ADAPTER_CONFIG))
    pet = None
    if cfg is not None:
        pet = params.pet_config_of(cfg)
    names = list(base) + list(lora)
    trainable = params.trainable_names(names, pet) if (pet or lora) else names
    sizes = dict(base)
    sizes.update(lora)
    out = params.summarize(base_total, sum(params.numel(sizes[n]) for n in trainable), lora_total, source)
    out["checkpoint"] = os.path.abspath(path)
    out["lora_tensors"] = len(lora)
    ranks = sorted({int(s[0]) for n, s in lora.items() if n.endswith("_a")})
    out["lora_rank"] = ranks[0] if len(ranks) == 1 else ranks
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--config", "--profile", dest="config",
                    help="profile name (yaml/<name>.yaml) or yaml path, e.g. llama3-8b or RUN/train/config.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override; `pet_config.X` and `model_config.X` are short for "
                         "`model.model_config.pet_config.X` / `model.model_config.X` (repeatable)")
    ap.add_argument("--checkpoint", help="count a .ckpt instead (full LoRA checkpoint or adapter.ckpt)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--out", help="also write the JSON object to this file (e.g. RUN/eval/params.json)")
    args = ap.parse_args(argv)
    if not args.config and not args.checkpoint:
        ap.error("give --config and/or --checkpoint")
    cfg = None
    if args.config:
        cfg = load_config(args.config, [params.expand_override(o) for o in args.overrides])
    elif args.overrides:
        ap.error("--set needs --config")
    if args.checkpoint:
        result = count_checkpoint(args.checkpoint, cfg)
        if cfg is not None:
            closed = params.count_from_config(cfg)
            result["config_trainable"] = closed["trainable"]
            result["config_total"] = closed["total"]
            result["agrees_with_config"] = (closed["trainable"] == result["trainable"]
                                            and (result["source"] == "adapter" or closed["total"] == result["total"]))
    else:
        result = params.count_from_config(cfg)
        result["config"] = args.config
    if args.out:
        write_json(args.out, result)
    if args.json:
        print(json.dumps(result))
    else:
        print("source         %s" % result["source"])
        print("trainable      {:,}".format(result["trainable"]))
        print("total (base)   {:,}".format(result["total"]))
        print("LoRA params    {:,}  (network total {:,})".format(result["lora_params"], result["network_total"]))
        print("ratio_contest  %s  (trainable / %s; full %s)" % (contest.LEADERBOARD_FORMAT % result["ratio_contest"],
                                                               contest.CONTEST_DENOMINATOR_TEXT,
                                                               contest.STORED_FORMAT % result["ratio_contest_full"]))
        if result["ratio_exact"] is not None:
            print("ratio_exact    %s  (trainable / total)" % (contest.STORED_FORMAT % result["ratio_exact"]))
        if "agrees_with_config" in result:
            print("matches config %s" % ("yes" if result["agrees_with_config"] else "NO"))
    if result.get("agrees_with_config") is False:
        print("count_params: warning: checkpoint counts differ from the config's closed form", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
