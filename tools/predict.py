#!/usr/bin/env python3
"""Batched greedy inference through MindFormers: problems JSONL -> predictions JSONL {id, family, prompt, completion}.

  predict.py --input test.jsonl --out runs/tiny/eval/predictions.jsonl --config tiny \\
             --checkpoint runs/tiny/train/.../tiny.ckpt --tokenizer tiny --template vicuna --batch-size 16

Input rows: math problems {problem[, id, solution]} rendered with --template (the one the model was trained
with, lorakit.templates, so train and inference prompts cannot drift), or SQuAD records from `squad.py prepare`
{id, context, question} rendered with the contest's SQuAD prompt. A row's id is its `id`, else its 1-based
record number. The model sees BOS + prompt (as in training; SQuAD records without BOS, as the stock eval feeds
them; --bos overrides), decodes greedily with min_new_tokens >= 1 and max_new_tokens (--max-new-tokens, else the
recipe's token report, else the config), and the completion is only the new tokens, cut at EOS, specials dropped:
the prompt is never echoed. Every row's completion is also cut to max_new_tokens (in a batch MindFormers lets
short prompts run on to the longest prompt's limit), so results do not depend on the batch size.

Resumable: ids already in --out are skipped, new rows are appended one batch at a time (whole lines, flushed and
fsynced); a truncated last line left by a crash is dropped before appending. Never duplicated.
On CPU use_past is forced off (the KV-cache path uses Ascend-only ops); on Ascend the profile's setting is kept
(yaml/llama3-8b-predict.yaml turns it on). A use_past profile is checked on every device before anything is built:
float16 compute (MindFormers builds the KV cache in float16) and batch x seq_length within num_blocks x block_size.
A checkpoint without LoRA tensors (folded by `ckpt.py fold-lora`, or a base model) is run without pet_config, so no
LoRA branch is built; --adapter always builds one.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lorakit import inference
from lorakit.config import dump_config, model_config
from lorakit.inference import (
    adapter_files,
    check_tokenizer,
    check_use_past,
    decode_completion,
    encode_items,
    fit_seq_length,
    load_network,
    prompt_text,
    read_items,
    token_report_budget,  # noqa: F401 - part of predict's interface (tests, docs)
)
from lorakit.io import KitError, atomic_open, file_fingerprint, iter_jsonl, read_json, run_main, write_json
from lorakit.layout import predict_record_of
from lorakit.records import DataReport

# ---------------------------------------------------------------------------------------------- resume

def done_ids(out, known):
    """Ids already predicted in `out`. A truncated last line (crash mid-write) is cut off; anything else wrong is
    an error. Ids not in the input mean the file belongs to another input."""
    out = Path(out)
    if not out.exists():
        return set(), 0
    raw = out.read_bytes()
    dropped = 0
    if raw and not raw.endswith(b"\n"):
        keep = raw[: raw.rfind(b"\n") + 1]
        with atomic_open(out, "wb") as fh:
            fh.write(keep)
        dropped = 1
        print(f"predict: {out}: dropped a truncated last line (an interrupted run); it will be redone",
              file=sys.stderr)
    ids = set()
    for lineno, row in iter_jsonl(out):
        rid = row.get("id")
        if rid in (None, "") or not isinstance(row.get("completion"), str):
            raise KitError("%s:%d: not a prediction row (needs id and completion)" % (out, lineno))
        rid = str(rid)
        if rid in ids:
            raise KitError("%s:%d: duplicate id %r" % (out, lineno, rid))
        if rid not in known:
            raise KitError("%s:%d: id %r is not in the input: --out belongs to another input file" % (out, lineno, rid))
        ids.add(rid)
    return ids, dropped


# ---------------------------------------------------------------------------------------------- config


# ---------------------------------------------------------------------------------------------- model


def resolve_config(args):
    """lorakit.inference.resolve_config with this command line's options."""
    return inference.resolve_config(args.config, args.set or [], batch_size=args.batch_size,
                                    max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
                                    token_report=args.token_report, adapter=args.adapter, no_pet=args.no_pet,
                                    checkpoint=getattr(args, "checkpoint", None))


# ---------------------------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="problems JSONL (problem[, id]) or squad records (id, context, "
                                                   "question)")
    ap.add_argument("--out", required=True, help="predictions JSONL (appended to; done ids are skipped)")
    ap.add_argument("--config", default="tiny", help="profile name (yaml/<name>.yaml) or yaml path (default tiny)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    ap.add_argument("--checkpoint", default=None, help="model checkpoint (base, trained with LoRA, or folded)")
    ap.add_argument("--adapter", default=None, help="adapter folder (adapter.ckpt + adapter_config.json) loaded "
                                                    "over the checkpoint; its config sets pet_config")
    ap.add_argument("--no-pet", action="store_true", help="build the network without pet_config (automatic when --checkpoint holds no LoRA "
                         "tensors, e.g. a folded one)")
    ap.add_argument("--tokenizer", default="tiny", help="tokenizer.model path, an imported model's tokenizer.json "
                                                        "(or its folder), or `tiny` (default)")
    ap.add_argument("--template", default=None,
                    help="prompt template for `problem` rows: the one the model was trained with (default: the "
                         "`template` of --token-report, else lorakit.templates.DEFAULT_TEMPLATE, vicuna)")
    ap.add_argument("--batch-size", type=int, default=8, help="rows per generate call (default 8)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: --token-report, else the config")
    ap.add_argument("--token-report", default=None,
                    help="convert_dataset.py's data report: answer-token budget and the training template")
    ap.add_argument("--min-new-tokens", type=int, default=None, help=">= 1 (default: config, else 1)")
    ap.add_argument("--bos", choices=("auto", "yes", "no"), default="auto",
                    help="auto: BOS before problems (as training rows), none before SQuAD records (as the stock eval)")
    ap.add_argument("--overlong", choices=("truncate", "skip", "error"), default="truncate",
                    help="prompt longer than seq_length - max_new_tokens: keep its end (default), skip it, or fail")
    ap.add_argument("--seq-length", default="auto",
                    help="auto (default): the longest prompt + max_new_tokens rounded up to 16, at most the profile's; "
                         "config: the profile's; or a number")
    ap.add_argument("--limit", type=int, default=None, help="only the first N input rows")
    ap.add_argument("--dump-config", default=None, help="write the resolved predict config (yaml) here")
    ap.add_argument("--record", default=None, help="run record JSON (default: <out>.run.json)")
    ap.add_argument("--json", action="store_true", help="print the run record as one JSON object")
    args = ap.parse_args(argv)
    if args.batch_size < 1:
        raise KitError("--batch-size must be >= 1")

    from lorakit.templates import DEFAULT_TEMPLATE, TEMPLATES
    from lorakit.tokenizer import load_tokenizer

    trained = None
    if args.token_report:
        trained = DataReport(read_json(args.token_report)).template
    template = args.template or trained or DEFAULT_TEMPLATE
    template_from = "--template" if args.template else ("token report" if trained else "default")
    if trained and template != trained:
        print("predict: warning: template %r differs from the one the data was made with (%r): train/inference "
              "prompt mismatch" % (template, trained), file=sys.stderr)
    if template not in TEMPLATES:
        raise KitError("unknown template {!r} (known: {})".format(template, ", ".join(TEMPLATES)))
    if not args.checkpoint:
        print("predict: warning: no --checkpoint: the network keeps its random initial weights", file=sys.stderr)
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise KitError(f"checkpoint not found: {args.checkpoint}")
    if args.adapter:
        adapter_files(args.adapter)
    cfg, info = resolve_config(args)
    items = read_items(args.input, template, args.bos, args.limit)
    done, dropped = done_ids(args.out, {it.id for it in items})
    pending = [it for it in items if it.id not in done]
    tok = load_tokenizer(args.tokenizer)
    check_tokenizer(tok, cfg)
    seq_length = int(model_config(cfg)["seq_length"])
    max_new, min_new = info["max_new_tokens"], info["min_new_tokens"]
    encoded, truncated, skipped = encode_items(tok, pending, seq_length, max_new, args.overlong)
    if args.dump_config:
        dump_config(cfg, args.dump_config)

    record = {"input": str(args.input), "out": str(args.out), "config": str(args.config), "overrides": args.set,
              "template": template, "template_from": template_from, "trained_template": trained, "bos": args.bos, "batch_size": args.batch_size, "records": len(items),
              "already_done": len(done), "truncated_line_dropped": dropped, "predicted": 0,
              "prompts_truncated": len(truncated), "prompts_skipped": len(skipped), "skipped_ids": skipped[:20],
              "checkpoint": file_fingerprint(args.checkpoint) if args.checkpoint else None,
              "checkpoint_path": args.checkpoint, "adapter": args.adapter, "tokenizer": str(args.tokenizer),
              "tokenizer_sha256": tok.sha256, "seq_length": seq_length}
    record.update(info)
    todo = [it for it in pending if it.id in encoded]
    record["seq_length_run"] = fit_seq_length(cfg, [encoded[it.id] for it in todo], max_new, args.seq_length)
    check_use_past(cfg, dict(info, config=args.config), args.batch_size)
    if skipped:  # written as empty answers (scored wrong, never retried) so every id appears exactly once
        skip = set(skipped)
        rows = [{"id": it.id, "family": it.family, "prompt": prompt_text(it, tok), "completion": "",
                 "skipped": "prompt longer than seq_length - max_new_tokens"} for it in pending if it.id in skip]
        _append(args.out, [json.dumps(r, ensure_ascii=False) + "\n" for r in rows])
    stats = {"generated_tokens": 0, "seconds": 0.0, "first_batch_seconds": None, "first_batch_tokens": 0}
    if todo:
        from lorakit import mf

        net = load_network(cfg, args.checkpoint, args.adapter)
        from tqdm import tqdm

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        cut = set(truncated)
        bar = tqdm(total=len(todo), unit="row", desc="predict", file=sys.stderr, dynamic_ncols=True)
        with open(out, "a", encoding="utf-8", newline="\n") as fh:
            for start in range(0, len(todo), args.batch_size):
                batch = todo[start: start + args.batch_size]
                t0 = time.perf_counter()
                news = mf.generate_rows(net, tok, [encoded[it.id] for it in batch], max_new, min_new,
                                     pad_to=args.batch_size)
                dt = time.perf_counter() - t0
                lines = []
                ntok = 0
                for it, new in zip(batch, news):
                    ntok += len(new)
                    row = {"id": it.id, "family": it.family, "prompt": prompt_text(it, tok),
                           "completion": decode_completion(tok, new, max_new)}
                    if it.id in cut:
                        row["prompt_truncated"] = True
                    lines.append(json.dumps(row, ensure_ascii=False) + "\n")
                _write_lines(fh, lines)
                if stats["first_batch_seconds"] is None:
                    stats["first_batch_seconds"], stats["first_batch_tokens"] = dt, ntok
                stats["generated_tokens"] += ntok
                stats["seconds"] += dt
                record["predicted"] += len(batch)
                bar.update(len(batch))
                bar.set_postfix(tok_s="%.1f" % (stats["generated_tokens"] / max(stats["seconds"], 1e-9)))
        bar.close()
    record.update(stats)
    record["tokens_per_s"] = stats["generated_tokens"] / stats["seconds"] if stats["seconds"] else None
    later_s = stats["seconds"] - (stats["first_batch_seconds"] or 0.0)
    later_t = stats["generated_tokens"] - stats["first_batch_tokens"]
    record["tokens_per_s_after_first_batch"] = later_t / later_s if later_s > 0 and later_t > 0 else None
    write_json(args.record or predict_record_of(args.out), record)
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        print("predict: %d new predictions (%d already done, %d prompts truncated, %d skipped) -> %s"
              % (record["predicted"], len(done), len(truncated), len(skipped), args.out), file=sys.stderr)
    return 0


def _write_lines(fh, lines):
    """Whole lines in one write, flushed and fsynced: a crash leaves at most one truncated last line."""
    fh.write("".join(lines))
    fh.flush()
    os.fsync(fh.fileno())


def _append(path, lines):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", newline="\n") as fh:
        _write_lines(fh, lines)


if __name__ == "__main__":
    run_main(main)
