"""Checkpoint I/O, extract-lora / fold-lora / inspect / merge-shards on tiny checkpoints (CPU)."""

import collections
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import ckpt_fixtures as F
from conftest import run_tool
from lorakit import ckpt_io
from lorakit.io import KitError
from lorakit.paths import REPO


def run_ckpt(*args):
    return run_tool("ckpt", *args, timeout=600)


def ckpt_main(*args):
    """In-process ckpt.py (no MindSpore import for extract/fold/inspect): returns (rc, stdout JSON)."""
    import ckpt

    return ckpt.main([str(a) for a in args])


@pytest.fixture(scope="module")
def cfg():
    return F.tiny_cfg()


@pytest.fixture(scope="module")
def files(tmp_path_factory, cfg):
    """base.ckpt (no LoRA), full.ckpt (same base weights + trained-looking LoRA + optimizer state)."""
    d = tmp_path_factory.mktemp("ckpt")
    full = F.random_full(cfg, seed=3)
    base = collections.OrderedDict((n, t) for n, t in full.items() if not ckpt_io.is_lora(n))
    ckpt_io.write_ckpt(d / "base.ckpt", base)
    with_state = collections.OrderedDict(full)
    with_state["adam_m.model.layers.0.attention.wq.mindpet_delta_lora_a"] = full[
        "model.layers.0.attention.wq.mindpet_delta_lora_a"]
    with_state["step_num"] = ckpt_io.NpTensor(np.array([50], np.int64), "Int64")
    ckpt_io.write_ckpt(d / "full.ckpt", with_state)
    return d, full, base


def extract(d, src="full.ckpt", out="adapter", extra=()):
    return ckpt_main("extract-lora", "--checkpoint", d / src, "--config", "tiny", "--base", d / "base.ckpt",
                     "--out-dir", d / out, *extra)


# ---------------------------------------------------------------- file format

@pytest.mark.slow
def test_writer_matches_mindspore_both_ways(tmp_path):
    import mindspore as ms

    rng = np.random.default_rng(0)
    t = collections.OrderedDict()
    t["a.weight"] = ckpt_io.NpTensor(rng.standard_normal((5, 7)).astype(np.float32), "Float32")
    t["b.weight"] = ckpt_io.from_float32(rng.standard_normal((3, 4)).astype(np.float32), "BFloat16")
    t["c"] = ckpt_io.NpTensor(rng.standard_normal(4).astype(np.float16), "Float16")
    t["n"] = ckpt_io.NpTensor(np.arange(6, dtype=np.int32).reshape(2, 3), "Int32")
    ckpt_io.ms_save(tmp_path / "ms.ckpt", t)
    ckpt_io.write_ckpt(tmp_path / "kit.ckpt", t)
    assert (tmp_path / "ms.ckpt").read_bytes() == (tmp_path / "kit.ckpt").read_bytes()
    for name in ("ms.ckpt", "kit.ckpt"):
        mine, theirs = ckpt_io.read_ckpt(tmp_path / name), ckpt_io.ms_load(tmp_path / name)
        for k, v in t.items():
            assert mine[k].ttype == theirs[k].ttype == v.ttype
            assert np.array_equal(mine[k].array, v.array) and np.array_equal(theirs[k].array, v.array)
    # bf16 conversion = MindSpore's cast (round to nearest even), incl. ties, huge values and NaN
    x = np.concatenate([rng.standard_normal(20000).astype(np.float32) * 100,
                        np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.0e38, -0.0, np.nan], np.float32)])
    ours = ckpt_io.from_float32(x, "BFloat16")
    ref = ckpt_io.from_ms(ms.Tensor(x).astype(ms.bfloat16))
    assert np.array_equal(ours.array[:-1], ref.array[:-1]) and np.isnan(ckpt_io.to_float32(ours)[-1])


def test_sliced_large_tensor_roundtrip(tmp_path, monkeypatch):
    """Tensors above MindSpore's 512 MB slice are written as several values with one tag; shrink the slice."""
    import mindspore as ms

    monkeypatch.setattr(ckpt_io, "SLICE_BYTES", 1000)
    arr = np.arange(3000, dtype=np.float32).reshape(30, 100)
    ckpt_io.write_ckpt(tmp_path / "s.ckpt", {"big": arr, "after": np.ones(3, np.float32)})
    assert np.array_equal(ms.load_checkpoint(str(tmp_path / "s.ckpt"))["big"].asnumpy(), arr)
    got = ckpt_io.read_ckpt(tmp_path / "s.ckpt")
    assert np.array_equal(got["big"].array, arr) and list(got) == ["big", "after"]


def test_crc_trailer_is_accepted(tmp_path):
    import mindspore as ms

    arr = np.arange(5, dtype=np.float32)
    ms.save_checkpoint({"a": ms.Parameter(ms.Tensor(arr))}, str(tmp_path / "crc.ckpt"), crc_check=True)
    assert (tmp_path / "crc.ckpt").read_bytes()[-17:].startswith(b"crc_num")
    assert np.array_equal(ckpt_io.read_ckpt(tmp_path / "crc.ckpt")["a"].array, arr)


def test_truncated_and_foreign_files(tmp_path):
    ckpt_io.write_ckpt(tmp_path / "ok.ckpt", {"x": np.ones((64, 64), np.float32)})
    data = (tmp_path / "ok.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(KitError, match="truncated"):
        ckpt_io.read_ckpt(tmp_path / "cut.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"\x00\x01junk" * 10)
    with pytest.raises(KitError, match="not a MindSpore checkpoint"):
        ckpt_io.read_ckpt(tmp_path / "junk.ckpt")


# ---------------------------------------------------------------- extract / fold

def test_extract_fold_roundtrip(files, capsys):
    d, full, base = files
    assert extract(d, extra=["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tensors"] == 8 and out["trainable_params"] == 3584 and out["scaling"] == 2.0
    acfg = ckpt_io.read_adapter_config(d / "adapter" / "adapter_config.json")
    schema = REPO / "submission" / "schema" / "adapter_config.schema.json"  # what verify.py checks submissions with
    if schema.exists():
        import jsonschema

        jsonschema.validate(acfg, json.loads(schema.read_text(encoding="utf-8")))
    assert (acfg["lora_rank"], acfg["lora_alpha"], acfg["target_modules"]) == (8, 16, ".*wq|.*wv")
    assert acfg["base_model"]["total_params"] == 256320
    assert acfg["base_model"]["checkpoint"]["sha256"] == ckpt_io.fingerprint(d / "base.ckpt")["sha256"]
    adapter = ckpt_io.read_ckpt(d / "adapter" / "adapter.ckpt")
    assert sorted(adapter) == sorted(n for n in full if ckpt_io.is_lora(n))  # no adam_m.*, no base weights
    assert [t["name"] for t in acfg["tensors"]] == list(adapter)
    for n, t in adapter.items():
        assert np.array_equal(t.array, full[n].array)

    assert ckpt_main("fold-lora", "--base", d / "base.ckpt", "--adapter", d / "adapter", "--out",
                     d / "folded.ckpt") == 0
    folded = ckpt_io.read_ckpt(d / "folded.ckpt")
    assert list(folded) == list(base)
    n_folded = 0
    for name, t in base.items():
        cell = name[: -len(".weight")]
        if cell + ".mindpet_delta_lora_a" in full:
            a = full[cell + ".mindpet_delta_lora_a"].array.astype(np.float64)
            b = full[cell + ".mindpet_delta_lora_b"].array.astype(np.float64)
            ref = t.array.astype(np.float64) + 2.0 * (b @ a)
            np.testing.assert_allclose(folded[name].array, ref, rtol=0, atol=1e-6)
            assert not np.array_equal(folded[name].array, t.array)
            n_folded += 1
        else:
            assert np.array_equal(folded[name].array, t.array)
    assert n_folded == 4
    record = json.loads((d / "folded.fold.json").read_text())
    assert record["scaling"] == 2.0 and record["folded"] == 4

    # a full LoRA checkpoint as the base folds the same and loses its LoRA / optimizer tensors
    assert ckpt_main("fold-lora", "--base", d / "full.ckpt", "--adapter", d / "adapter", "--out",
                     d / "folded2.ckpt") == 0
    assert (d / "folded2.ckpt").read_bytes() == (d / "folded.ckpt").read_bytes()


def test_fold_bf16_base_is_closer_than_storage_dtype_math(tmp_path, cfg):
    """bf16 base: fold in float32 then round once; result = RNE(fp32 math) and beats bf16 arithmetic."""
    full = F.random_full(cfg, seed=5)
    base = collections.OrderedDict()
    for n, t in full.items():
        if not ckpt_io.is_lora(n):
            base[n] = ckpt_io.from_float32(t.array, "BFloat16")
    ckpt_io.write_ckpt(tmp_path / "base.ckpt", base)
    lora = collections.OrderedDict((n, t) for n, t in full.items() if ckpt_io.is_lora(n))
    ckpt_io.write_ckpt(tmp_path / "ad" / "adapter.ckpt", lora) if (tmp_path / "ad").mkdir() is None else None
    acfg = {"format": ckpt_io.ADAPTER_FORMAT, "pet_type": "lora", "lora_rank": 8, "lora_alpha": 16, "scaling": 2.0,
            "target_modules": ".*wq|.*wv",
            "tensors": [{"name": n, "shape": list(t.array.shape), "dtype": t.ttype} for n, t in lora.items()]}
    ckpt_io.write_adapter_config(tmp_path / "ad" / "adapter_config.json", acfg)
    assert ckpt_main("fold-lora", "--base", tmp_path / "base.ckpt", "--adapter", tmp_path / "ad",
                     "--out", tmp_path / "f.ckpt") == 0
    folded = ckpt_io.read_ckpt(tmp_path / "f.ckpt")
    w = "model.layers.1.attention.wv.weight"
    assert folded[w].ttype == "BFloat16"
    a, b = lora[w[:-6] + "mindpet_delta_lora_a"].array, lora[w[:-6] + "mindpet_delta_lora_b"].array
    w32 = ckpt_io.to_float32(base[w])
    exact = w32.astype(np.float64) + 2.0 * (b.astype(np.float64) @ a.astype(np.float64))
    assert np.array_equal(folded[w].array, ckpt_io.from_float32(w32 + np.float32(2.0) * (b @ a), "BFloat16").array)

    def bf(x):
        return ckpt_io.to_float32(ckpt_io.from_float32(x, "BFloat16"))

    naive = bf(w32 + bf(bf(bf(b) @ bf(a)) * np.float32(2.0)))  # every op rounded to bf16, like the stock tool
    ours_err = np.abs(ckpt_io.to_float32(folded[w]) - exact).max()
    assert ours_err <= np.abs(naive - exact).max()


def _adapter_copy(d, name):
    dst = d / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(d / "adapter", dst)
    return dst


def test_fold_refusals(files):
    d, full, base = files
    if not (d / "adapter" / "adapter_config.json").exists():
        assert extract(d) == 0

    def fold(adapter, base_file="base.ckpt"):
        with pytest.raises(KitError) as err:
            ckpt_main("fold-lora", "--base", d / base_file, "--adapter", adapter, "--out", d / "never.ckpt")
        assert not (d / "never.ckpt").exists()
        return str(err.value)

    # no adapter_config.json: no scaling, and no default of 1
    ad = _adapter_copy(d, "ad_nocfg")
    os.unlink(ad / "adapter_config.json")
    assert "no default" in fold(ad)
    # scaling that is not alpha / r
    ad = _adapter_copy(d, "ad_scale")
    c = json.loads((ad / "adapter_config.json").read_text())
    c["scaling"] = 1.0
    (ad / "adapter_config.json").write_text(json.dumps(c))
    assert "lora_alpha / lora_rank" in fold(ad)
    # a lone A without its B
    ad = _adapter_copy(d, "ad_lone")
    t = ckpt_io.read_ckpt(ad / "adapter.ckpt")
    gone = "model.layers.1.attention.wv.mindpet_delta_lora_b"
    del t[gone]
    ckpt_io.write_ckpt(ad / "adapter.ckpt", t)
    c = json.loads((ad / "adapter_config.json").read_text())
    c["tensors"] = [x for x in c["tensors"] if x["name"] != gone]
    (ad / "adapter_config.json").write_text(json.dumps(c))
    assert "lora_a without lora_b" in fold(ad)
    # shapes that do not fit the base weight (a base with another kv width)
    other = collections.OrderedDict(base)
    other["model.layers.0.attention.wv.weight"] = ckpt_io.NpTensor(np.zeros((16, 64), np.float32), "Float32")
    ckpt_io.write_ckpt(d / "base_other.ckpt", other)
    assert "B @ A is [32, 64]" in fold(d / "adapter", "base_other.ckpt")
    # a target the base does not have
    lacking = collections.OrderedDict((n, t) for n, t in base.items() if n != "model.layers.1.attention.wq.weight")
    ckpt_io.write_ckpt(d / "base_lacking.ckpt", lacking)
    assert "lacks 1 weight" in fold(d / "adapter", "base_lacking.ckpt")


def test_extract_refusals(files, cfg, tmp_path):
    d, full, base = files

    def refuse(src, extra=()):
        with pytest.raises(KitError) as err:
            ckpt_main("extract-lora", "--checkpoint", src, "--config", "tiny", "--out-dir", tmp_path / "no",
                      *extra)
        assert not (tmp_path / "no" / "adapter_config.json").exists()
        return str(err.value)

    assert "rank 8, the config says 16" in refuse(d / "full.ckpt", ["--set", "pet_config.lora_rank=16"])
    assert "does not match the config's LoRA" in refuse(d / "full.ckpt", ["--set",
                                                                          "pet_config.target_modules=.*wq"])
    assert "no LoRA tensors" in refuse(d / "base.ckpt")
    zero = collections.OrderedDict(full)
    zero["model.layers.0.attention.wq.mindpet_delta_lora_a"] = ckpt_io.NpTensor(np.zeros((8, 64), np.float32),
                                                                                "Float32")
    ckpt_io.write_ckpt(tmp_path / "zero_a.ckpt", zero)
    assert "all zero" in refuse(tmp_path / "zero_a.ckpt")
    lone = collections.OrderedDict((n, t) for n, t in full.items()
                                   if n != "model.layers.0.attention.wq.mindpet_delta_lora_b")
    ckpt_io.write_ckpt(tmp_path / "lone.ckpt", lone)
    assert "without lora_b" in refuse(tmp_path / "lone.ckpt")


def test_inspect_flags_and_cli(files, tmp_path):
    d, full, _ = files
    bad = collections.OrderedDict(full)
    bad["model.layers.1.attention.wq.mindpet_delta_lora_b"] = ckpt_io.NpTensor(np.zeros((64, 8), np.float32),
                                                                               "Float32")
    bad["model.layers.1.attention.wv.mindpet_delta_lora_a"] = ckpt_io.NpTensor(np.zeros((0, 64), np.float32),
                                                                               "Float32")
    ckpt_io.write_ckpt(tmp_path / "bad.ckpt", bad)
    proc = run_ckpt("inspect", tmp_path / "bad.ckpt", "--check", "--json")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["flagged_lora"] == ["model.layers.1.attention.wq.mindpet_delta_lora_b (all-zero)",
                                   "model.layers.1.attention.wv.mindpet_delta_lora_a (empty)"]
    assert out["lora_params"] == 3584 - 8 * 64 and out["tensors"] == 29
    norms = {r["name"]: r["norm"] for r in out["rows"]}
    w = "model.layers.0.attention.wq.weight"
    assert norms[w] == pytest.approx(float(np.linalg.norm(full[w].array.astype(np.float64))), rel=1e-12)
    proc = run_ckpt("inspect", d / "full.ckpt", "--check")
    assert proc.returncode == 0 and "8 LoRA tensors" in proc.stdout
    proc = run_ckpt("fold-lora", "--base", d / "base.ckpt", "--adapter", tmp_path / "nothing", "--out",
                    tmp_path / "x.ckpt")
    assert proc.returncode == 2 and proc.stderr.startswith("ckpt.py: error:") and len(proc.stderr.splitlines()) == 1


# ---------------------------------------------------------------- merge-shards

@pytest.mark.slow
@pytest.mark.parametrize("mp,two_d,fmt,dtype", [(2, False, "protobuf", None), (4, True, "protobuf", None),
                                                (4, False, "json", "BFloat16")])
def test_merge_model_parallel_bit_exact(tmp_path, cfg, mp, two_d, fmt, dtype):
    full = F.random_full(cfg, seed=mp, dtype=dtype)
    F.make_sharded_run(tmp_path, full, mp, two_d=two_d, fmt=fmt)
    proc = run_ckpt("merge-shards", "--src", tmp_path, "--out", tmp_path / "merged.ckpt", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(proc.stdout)
    assert rec["step"] == [10] and rec["step_from"] == "step_num" and rec["ranks"] == mp
    merged = ckpt_io.read_ckpt(tmp_path / "merged.ckpt")
    assert list(merged) == list(full)  # step_num (trainer state) dropped
    for n, t in full.items():
        assert merged[n].ttype == t.ttype and np.array_equal(merged[n].array, t.array), n


@pytest.mark.slow
def test_merge_picks_newest_step_not_last_name(tmp_path, cfg):
    """rank_r holds x-1_10.ckpt (newest) and x-1_9.ckpt (stale); by name '9' > '10'. MindSpore alone takes
    the stale one; merge-shards must not."""
    import mindspore as ms

    full = F.random_full(cfg, seed=7)
    F.make_sharded_run(tmp_path, full, 2, extra_state=False)  # no step_num: the file name decides
    strategy = str(tmp_path / "strategy" / "ckpt_strategy_rank_0.ckpt")
    ms.transform_checkpoints(str(tmp_path / "checkpoint"), str(tmp_path / "stock"), "m", strategy, None)
    stock = ckpt_io.read_ckpt(tmp_path / "stock" / "rank_0" / "m0.ckpt")
    w = "model.layers.0.attention.wq.weight"
    assert not np.array_equal(stock[w].array, full[w].array)  # the trap is real
    proc = run_ckpt("merge-shards", "--src", tmp_path / "checkpoint", "--strategy", tmp_path / "strategy",
                    "--out", tmp_path / "merged.ckpt", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["step_from"] == "file name epoch_step"
    merged = ckpt_io.read_ckpt(tmp_path / "merged.ckpt")
    assert all(np.array_equal(merged[n].array, t.array) for n, t in full.items())
    proc = run_ckpt("merge-shards", "--src", tmp_path / "checkpoint", "--strategy", tmp_path / "strategy",
                    "--step", 9, "--out", tmp_path / "merged9.ckpt")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_ckpt("merge-shards", "--src", tmp_path / "checkpoint", "--step", 11, "--out", tmp_path / "m11.ckpt")
    assert proc.returncode == 2 and "no checkpoint of step 11" in proc.stderr


@pytest.mark.slow
def test_merge_refuses_trainable_only_strategy(tmp_path, cfg):
    full = F.random_full(cfg, seed=8)
    F.make_sharded_run(tmp_path, full, 2, strategy_names=[n for n in full if ckpt_io.is_lora(n)])
    proc = run_ckpt("merge-shards", "--src", tmp_path, "--out", tmp_path / "merged.ckpt")
    assert proc.returncode == 2
    assert "only_trainable_params: False" in proc.stderr and "frozen weights missing" in proc.stderr
    assert not (tmp_path / "merged.ckpt").exists()


@pytest.mark.slow
def test_merge_data_parallel(tmp_path, cfg):
    full = F.random_full(cfg, seed=9)
    for r in range(2):
        os.makedirs(tmp_path / "checkpoint" / ("rank_%d" % r))
        t = collections.OrderedDict(full)
        t["global_step"] = ckpt_io.NpTensor(np.array([20], np.int32), "Int32")
        ckpt_io.write_ckpt(tmp_path / "checkpoint" / ("rank_%d" % r) / ("tiny_rank_%d-1_20.ckpt" % r), t)
    proc = run_ckpt("merge-shards", "--src", tmp_path, "--out", tmp_path / "merged.ckpt", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["mode"].startswith("data parallel")
    assert (tmp_path / "merged.ckpt").read_bytes() == ckpt_io_bytes(tmp_path / "ref.ckpt", full)
    # ranks that differ without a strategy are a model-parallel run missing its strategy files
    t = collections.OrderedDict(full)
    t["model.norm_out.weight"] = ckpt_io.NpTensor(full["model.norm_out.weight"].array * 2, "Float32")
    t["global_step"] = ckpt_io.NpTensor(np.array([20], np.int32), "Int32")
    ckpt_io.write_ckpt(tmp_path / "checkpoint" / "rank_1" / "tiny_rank_1-1_20.ckpt", t)
    proc = run_ckpt("merge-shards", "--src", tmp_path, "--out", tmp_path / "merged2.ckpt")
    assert proc.returncode == 2 and "ranks differ" in proc.stderr and "model.norm_out.weight" in proc.stderr


def ckpt_io_bytes(path, tensors):
    ckpt_io.write_ckpt(path, tensors)
    return path.read_bytes()


@pytest.mark.slow
def test_folded_logits_match_unfolded_lora_network(files):
    """MindFormers LoRA network + full LoRA checkpoint (B non-zero) vs plain network + folded checkpoint.
    Tolerance: max |logit difference| <= 1e-6 (float32 CPU; measured ~2e-8) and under 1/1000 of what the
    LoRA changes (so the check cannot pass with LoRA ignored on both sides)."""
    d, full, base = files
    if not (d / "folded.ckpt").exists():
        assert extract(d) == 0
        assert ckpt_main("fold-lora", "--base", d / "base.ckpt", "--adapter", d / "adapter", "--out",
                         d / "folded.ckpt") == 0
    env = dict(os.environ, PYTHONPATH=str(REPO / "tools"))
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "ckpt_fixtures.py"), d / "full.ckpt",
                           d / "folded.ckpt", d / "base.ckpt"], capture_output=True, text=True, env=env,
                          timeout=600, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["lora_trainable"] == 3584
    assert out["max_abs_diff_base"] > 1e-3  # LoRA B is non-zero: the adapter visibly changes the logits
    assert out["max_abs_diff_folded"] <= 1e-6
    assert out["max_abs_diff_folded"] < out["max_abs_diff_base"] / 1000
    assert out["argmax_agree_folded"] == 1.0


def test_step_choice_by_number_for_kit_and_stock_names(tmp_path):
    import ckpt

    full = {"model.norm_out.weight": np.ones(4, np.float32)}
    d = tmp_path / "rank_0"
    d.mkdir()
    for name in ("tiny_rank_0-step000008-epoch1.ckpt", "tiny_rank_0-step000016-epoch1.ckpt",
                 "tiny_rank_0-step000100-epoch2.ckpt"):
        ckpt_io.write_ckpt(d / name, full)
    chosen, step, how = ckpt.choose_checkpoints({0: str(d)})
    assert os.path.basename(chosen[0]) == "tiny_rank_0-step000100-epoch2.ckpt" and step == (100,)
    assert how == "file name step"
    e = tmp_path / "stock" / "rank_0"
    e.mkdir(parents=True)
    for name in ("llama3_8b_rank_0-2_9.ckpt", "llama3_8b_rank_0-2_10.ckpt", "llama3_8b_rank_0-1_99.ckpt"):
        ckpt_io.write_ckpt(e / name, full)
    chosen, step, how = ckpt.choose_checkpoints({0: str(e)})
    assert os.path.basename(chosen[0]) == "llama3_8b_rank_0-2_10.ckpt" and step == (2, 10)


def test_count_params_from_training_checkpoint(files, capsys):
    import count_params

    d, _, _ = files
    assert count_params.main(["--checkpoint", str(d / "full.ckpt"), "--config", "tiny", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # adam_m.* and step_num are optimizer/trainer state, not parameters
    assert (out["trainable"], out["total"], out["lora_params"]) == (3584, 256320, 3584)
    assert out["agrees_with_config"] is True and out["lora_rank"] == 8
