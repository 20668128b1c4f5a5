"""Fixture helpers of the train tests (tests/test_finetune.py, tests/test_launch.py): a tiny MindRecord in the
converter's layout (input_ids, labels: int32, length seq_length + 1) holding a learnable token pattern."""

import numpy as np


def write_tiny_mindrecord(path, n_rows, seq_length=128, vocab=1280, seed=0):
    """Rows that cycle through a short run of token ids from a random start: a LoRA on a frozen random base
    learns to continue them, so the loss must fall. The first 8 label positions are -100 (a prompt)."""
    from mindspore.mindrecord import FileWriter

    rng = np.random.default_rng(seed)
    writer = FileWriter(str(path), shard_num=1, overwrite=True)
    writer.add_schema({"input_ids": {"type": "int32", "shape": [-1]},
                       "labels": {"type": "int32", "shape": [-1]}}, "kit_train_test")
    cycle = np.array([17, 301, 42, 977, 5, 640], dtype=np.int32)
    rows = []
    for _ in range(n_rows):
        shift = int(rng.integers(0, len(cycle)))
        ids = np.resize(np.roll(cycle, shift), seq_length + 1).astype(np.int32)
        ids[0] = vocab - 256  # BOS of the tiny tokenizer
        labels = ids.copy()
        labels[:8] = -100
        rows.append({"input_ids": ids, "labels": labels})
    assert int(max(r["input_ids"].max() for r in rows)) < vocab
    writer.write_raw_data(rows)
    writer.commit()
    return path
