"""Smoke run of the tiny profile through MindFormers' own trainer path (run in a subprocess by
tests/test_smoke.py, because the MindSpore context is process-global).

Steps: write a small MindRecord of a learnable pattern, finetune the tiny Llama3-shaped model with
LoRA via `mindformers.Trainer`, record the per-step loss, reload the saved checkpoint into a fresh
network and greedy-generate tokens. Prints one JSON line with what it observed.
"""

import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))


def write_mindrecord(path, seq_len, n_rows, seed=0):
    from mindspore.mindrecord import FileWriter

    rng = np.random.default_rng(seed)
    writer = FileWriter(path, shard_num=1, overwrite=True)
    writer.add_schema({"input_ids": {"type": "int32", "shape": [-1]},
                       "labels": {"type": "int32", "shape": [-1]}}, "smoke")
    rows = []
    period = np.array([5, 6, 7, 8], dtype=np.int32)
    for _ in range(n_rows):
        # shifts of one short cycle: learnable by LoRA on a frozen random base, so the loss must fall
        shift = int(rng.integers(0, len(period)))
        ids = np.resize(np.roll(period, shift), seq_len + 1).astype(np.int32)
        rows.append({"input_ids": ids, "labels": ids.copy()})
    writer.write_raw_data(rows)
    writer.commit()


def main():
    from mindspore.train import Callback

    from lorakit.config import load_config
    from lorakit.mf import build_model, generate_rows, to_mf_config
    from lorakit.tokenizer import load_tokenizer

    out = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 24
    os.makedirs(out, exist_ok=True)
    os.chdir(out)  # MindFormers writes ./output (the contest scripts refuse any other output_dir)
    cfg = load_config("tiny", [
        "model.model_config.seq_length=32", "runner_config.batch_size=4", "train_dataset.batch_size=4",
        "lr_schedule.learning_rate=2e-2",
        "callbacks.1.save_checkpoint_steps=%d" % steps,
    ])
    mc = cfg["model"]["model_config"]
    data = os.path.join(out, "smoke.mindrecord")
    write_mindrecord(data, mc["seq_length"], steps * 4)
    cfg["train_dataset"]["data_loader"]["dataset_dir"] = data

    losses = []

    class LossRecorder(Callback):
        def on_train_step_end(self, run_context):
            outputs = run_context.original_args().net_outputs
            loss = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
            losses.append(float(loss.asnumpy()))

    from mindformers import Trainer

    trainer = Trainer(args=to_mf_config(cfg), task="text_generation", callbacks=[LossRecorder()])
    trainer.finetune()
    ckpts = sorted(glob.glob(os.path.join(out, "output", "checkpoint", "rank_0", "*.ckpt")))
    net = build_model(cfg, checkpoint=ckpts[-1] if ckpts else None)
    trainable = sum(int(np.prod(p.shape)) for p in net.trainable_params())
    tok = load_tokenizer("tiny")  # its special ids are the tiny profile's bos/eos/pad
    completions = generate_rows(net, tok, [[5, 6, 7, 8], [100, 101, 102]], max_new=4, min_new=1)
    print(json.dumps({"losses": losses, "checkpoints": ckpts, "trainable": trainable,
                      "completions": completions}))


if __name__ == "__main__":
    main()
