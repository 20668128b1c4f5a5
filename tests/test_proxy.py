"""tools/proxy.py: stratified subsets (the proxy's eval sets), the timed run record, the README block (fast; the
whole `make proxy` is the run documented in docs/benchmarks.md, too long for the suite)."""

import json
import sys
from pathlib import Path

import pytest

import proxy
from lorakit.io import KitError

SAMPLE = str(Path(__file__).resolve().parent / "data" / "contest_sample.jsonl")


def rows(path):
    return [json.loads(x) for x in open(path, encoding="utf-8") if x.strip()]


def test_evenly_spaced():
    assert proxy.evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7]
    assert proxy.evenly_spaced([1, 2], 5) == [1, 2]


def test_sample_per_family_from_the_real_records(tmp_path):
    out = tmp_path / "contest.jsonl"
    assert proxy.main(["sample", "--input", SAMPLE, "--families", "add,sub", "--per-family", "8", "--out", str(out)]) == 0
    got = rows(out)
    from lorakit.families import classify

    assert [classify(r["problem"]) for r in got] == ["add"] * 8 + ["sub"] * 8
    every = [r for r in rows(SAMPLE) if classify(r["problem"]) == "add"]
    assert got[:8] == [every[(i * len(every)) // 8] for i in range(8)]  # evenly spaced in file order
    again = tmp_path / "again.jsonl"
    proxy.main(["sample", "--input", SAMPLE, "--families", "add,sub", "--per-family", "8", "--out", str(again)])
    assert again.read_bytes() == out.read_bytes()


def test_sample_excludes_training_problems_and_long_contexts(tmp_path):
    first = rows(SAMPLE)[:3]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in first), encoding="utf-8")
    out = tmp_path / "held.jsonl"
    proxy.main(["sample", "--input", SAMPLE, "--exclude", str(train), "--n", "2000", "--out", str(out)])
    problems = {r["problem"] for r in rows(out)}
    assert len(problems) == 996 - 3 and not problems & {r["problem"] for r in first}
    squad = tmp_path / "squad.jsonl"
    squad.write_text("".join(json.dumps({"id": str(i), "context": "x" * n, "question": "q", "answers": ["x"]}) + "\n"
                             for i, n in enumerate([100, 900, 300, 700, 500])), encoding="utf-8")
    proxy.main(["sample", "--input", str(squad), "--n", "2", "--max-context-chars", "600", "--out", str(out)])
    assert [r["id"] for r in rows(out)] == ["0", "2"]
    with pytest.raises(KitError, match="no records of sqrt"):
        proxy.main(["sample", "--input", str(train), "--families", "sqrt", "--n", "1", "--out", str(out)])


def test_timed_records_exit_code_wall_and_cpu(tmp_path):
    out = tmp_path / "t.json"
    rc = proxy.main(["timed", "--out", str(out), "--", sys.executable, "-c",
                     "import sys; s = sum(i * i for i in range(3000000)); sys.exit(3)"])
    rec = json.loads(out.read_text())
    assert rc == 3 and rec["exit_code"] == 3
    assert rec["wall_s"] >= 0 and rec["cpu_s"] > 0.05 and rec["loadavg_1min"]["samples"] >= 1


def test_readme_block_is_replaced_in_place_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("a\n%s\nold\n%s\nb\n" % (proxy.README_BEGIN, proxy.README_END), encoding="utf-8")
    proxy.replace_block(readme, proxy.README_BEGIN + "\nnew\n" + proxy.README_END)
    assert readme.read_text(encoding="utf-8") == "a\n%s\nnew\n%s\nb\n" % (proxy.README_BEGIN, proxy.README_END)
    readme.write_text("no block\n", encoding="utf-8")
    with pytest.raises(KitError, match="no proxy block"):
        proxy.replace_block(readme, "x")
