"""Parameter counts: CONTEST.md section 5 in closed form, the CLI acceptance, and MindFormers' own count."""

import json
import subprocess
import sys

import pytest

from lorakit import params
from lorakit.config import load_config
from lorakit.io import KitError
from lorakit.paths import REPO

QV, QVO, QKVO = ".*wq|.*wv", ".*wq|.*wv|.*wo", ".*wq|.*wk|.*wv|.*wo"

# CONTEST.md section 5, every row: (rank, target_modules, params, ratio / 8.03e9 as printed)
CONTEST_ROWS = [
    (4, QV, 1703936, 0.000212196),
    (8, QV, 3407872, 0.000424393),
    (8, QVO, 5505024, 0.000685557),
    (12, QV, 5111808, 0.000636589),
    (16, QV, 6815744, 0.000848785),
    (16, QKVO, 13631488, 0.00169757),
    (64, QKVO, 54525952, 0.00679028),
]


def cfg_8b(rank, targets, extra=()):
    return load_config("llama3-8b", ["model.model_config.pet_config.lora_rank=%d" % rank,
                                     "model.model_config.pet_config.target_modules=%s" % targets] + list(extra))


@pytest.mark.parametrize("rank,targets,expected,ratio", CONTEST_ROWS)
def test_contest_rows(rank, targets, expected, ratio):
    out = params.count_from_config(cfg_8b(rank, targets))
    assert out["trainable"] == expected
    assert out["ratio_contest"] == ratio
    assert out["total"] == 8030261248
    assert out["network_total"] == 8030261248 + expected


def test_per_matrix_formula_and_ffn_targets():
    # r * (d_in + d_out): wq, wo 8192 r; wk, wv 5120 r; w1, w2, w3 18432 r (32 layers)
    mc = cfg_8b(8, QV)["model"]["model_config"]
    per = {}
    for name, (shape, _) in params.lora_param_table(mc, {"lora_rank": 1, "target_modules": "w.*"}).items():
        proj = name.split(".")[-2]
        per[proj] = per.get(proj, 0) + shape[0] * shape[1]
    assert per == {k: 32 * v for k, v in {"wq": 8192, "wk": 5120, "wv": 5120, "wo": 8192,
                                          "w1": 18432, "w2": 18432, "w3": 18432}.items()}


def test_regex_semantics_follow_mindformers():
    mc = cfg_8b(8, QV)["model"]["model_config"]
    # a matched non-Linear cell is skipped without descending: nothing inside `attention` gets LoRA
    assert params.lora_targets(mc, ".*attention.*") == []
    # re.match anchors at the start of the cell's own name: 'q' matches nothing, 'wq' only wq
    assert params.lora_targets(mc, "q") == []
    assert len(params.lora_targets(mc, "wq")) == 32
    # the regex sees local names, not dotted paths
    assert params.lora_targets(mc, r"model\.layers\.0\.attention\.wq") == []
    # exclude_layers skips whole subtrees by their own name
    kept = params.lora_targets(mc, "wq", exclude_layers=["1.*", "2.*", "3.*"])  # re.match: "1" also hits 10-19
    assert [n for n, _ in kept] == ["model.layers.%d.attention.wq" % i for i in (0, 4, 5, 6, 7, 8, 9)]
    with pytest.raises(KitError):
        params.lora_targets(mc, "(")
    with pytest.raises(KitError):
        params.lora_targets(mc, "")


def test_freeze_rules():
    names = ["model.norm_out.weight", "model.layers.0.attention.wq.weight",
             "model.layers.0.attention.wq.mindpet_delta_lora_a"]
    assert params.trainable_names(names, {"target_modules": "wq"}) == names[2:]
    assert params.trainable_names(names, {"freeze_exclude": ["*norm*"]}) == [names[0], names[2]]


def run_cli(*args):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "count_params.py")] + list(args),
                          capture_output=True, text=True, cwd=str(REPO))
    return proc


def test_cli_acceptance():
    proc = run_cli("--config", "llama3-8b", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["trainable"] == 3407872
    assert out["ratio_contest"] == 0.000424393
    assert round(out["ratio_contest_full"], 9) == 0.000424393
    assert out["total"] == 8030261248 and out["ratio_exact"] == pytest.approx(3407872 / 8030261248, rel=1e-11)
    for key in ("pet_config.", "model.model_config.pet_config."):
        proc = run_cli("--config", "llama3-8b", "--set", key + "lora_rank=64",
                       "--set", key + "target_modules=.*wq|.*wk|.*wv|.*wo", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["trainable"] == 54525952


def test_cli_bad_input():
    proc = run_cli("--config", "llama3-8b", "--set", "pet_config.target_modules=(", "--json")
    assert proc.returncode == 2 and "not a valid regex" in proc.stderr and proc.stdout == ""
    proc = run_cli("--config", "no-such-profile")
    assert proc.returncode == 2 and "unknown profile" in proc.stderr


# ---------------------------------------------------------------- against MindFormers itself

MF_CASES = [
    {},
    {"model.model_config.pet_config.target_modules": QKVO, "model.model_config.pet_config.lora_rank": 4},
    {"model.model_config.pet_config.target_modules": "w.*"},
    {"model.model_config.pet_config.target_modules": ".*attention.*"},
    {"model.model_config.pet_config.target_modules": ".*w[13]",
     "+model.model_config.pet_config.exclude_layers": ["1"]},  # `+`: a key the profile does not have
    {"+model.model_config.pet_config.freeze_exclude": ["*norm*"]},
]


@pytest.mark.slow
def test_agrees_with_mindformers_network():
    """Build the tiny LoRA network through MindFormers (build_network + get_pet_model, as the Trainer does) and
    compare every parameter name, shape and trainable flag with the closed form."""
    from lorakit import mf

    for case in MF_CASES:
        overrides = ["%s=%s" % (k, json.dumps(v)) for k, v in case.items()]
        cfg = load_config("tiny", overrides)
        net = mf.build_model(cfg)
        mc = cfg["model"]["model_config"]
        table = params.base_param_table(mc)
        table.update(params.lora_param_table(mc, mc["pet_config"]))
        got = {p.name: tuple(p.shape) for p in net.get_parameters()}
        assert got == {n: tuple(s) for n, (s, _) in table.items()}, case
        mf_trainable = sum(int(p.size) for p in net.trainable_params())
        assert params.count_from_config(cfg)["trainable"] == mf_trainable, case
        assert sorted(p.name for p in net.trainable_params()) == \
            sorted(params.trainable_names(list(table), mc["pet_config"])), case
