"""MindFormers glue shared by the tools that build a model outside the Trainer (predict, tests, checks).

Everything goes through MindFormers itself: `MindFormerConfig`, `build_context`, `build_network`
(which applies `pet_config` through `mindformers.pet.get_pet_model`, exactly as the Trainer does) and
the model's own `generate`. MindSpore/MindFormers are imported inside the functions so that the rest
of lorakit imports on machines without them.
"""

import copy
import logging
import os

import numpy as np

from .io import KitError

_CONTEXT_SET = False


def quiet_logs():
    """MindFormers logs every generation config at INFO; tools show their own progress instead."""
    os.environ.setdefault("GLOG_v", "3")
    logging.getLogger("mindformers").setLevel(logging.WARNING)


def to_mf_config(cfg):
    from mindformers import MindFormerConfig

    return MindFormerConfig(**copy.deepcopy(cfg))


def set_context(cfg):
    """Set the MindSpore context from the config once per process (device, mode, parallel)."""
    global _CONTEXT_SET
    if _CONTEXT_SET:
        return
    from mindformers.core.context import build_context

    build_context(to_mf_config(cfg))
    _CONTEXT_SET = True


def build_model(cfg, checkpoint=None, strict=True):
    """Build the configured network (with LoRA when pet_config is set) and load `checkpoint` into it.

    A base checkpoint (no LoRA tensors) may be loaded into a LoRA network: the LoRA tensors keep their
    initial values (A random, B zero). With strict=True every non-LoRA parameter must come from the
    checkpoint, so a wrong or truncated file fails here instead of silently leaving random weights.
    """
    import mindspore as ms
    from mindformers.models.build_model import build_network

    set_context(cfg)
    mfc = to_mf_config(cfg)
    mfc.model.model_config.checkpoint_name_or_path = ""
    net = build_network(mfc.model)
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise KitError("checkpoint not found: %s" % checkpoint)
        params = ms.load_checkpoint(checkpoint)
        not_loaded, _ = ms.load_param_into_net(net, params, strict_load=False)
        missing = [n for n in not_loaded if "mindpet_delta_lora" not in n]
        if strict and missing:
            raise KitError("%s lacks %d parameters of the network, e.g. %s"
                           % (checkpoint, len(missing), ", ".join(missing[:3])))
    net.set_train(False)
    return net


def model_seq_length(cfg):
    return int(cfg["model"]["model_config"]["seq_length"])


def generate_batch(net, prompts, pad_id, eos_id, max_new_tokens, min_new_tokens=1):
    """Greedy-decode a batch of prompt token lists; return only the new tokens of each, cut at EOS.

    MindFormers' `generate` wants right-padded equal-length rows and returns prompt + completion;
    the prompt is removed here by each row's own length so it can never leak into a completion.
    """
    if not prompts:
        return []
    width = max(len(p) for p in prompts)
    batch = np.full((len(prompts), width), pad_id, dtype=np.int32)
    for i, p in enumerate(prompts):
        batch[i, : len(p)] = p
    outputs = net.generate(batch.tolist(), max_new_tokens=int(max_new_tokens), min_new_tokens=int(min_new_tokens),
                           do_sample=False, pad_token_id=int(pad_id), eos_token_id=int(eos_id))
    completions = []
    for prompt, out in zip(prompts, outputs):
        new = [int(t) for t in list(out)[len(prompt):]]
        if eos_id in new:
            new = new[: new.index(eos_id)]
        completions.append([t for t in new if t != pad_id])
    return completions
