"""package.py: builds submission/<team>/ + <team>.zip atomically from a run folder, refuses bad inputs whole."""

import json
import shutil
import zipfile

import pytest

import package
import submission_fixtures as sf
from lorakit import manifest as mf
from lorakit.io import KitError


@pytest.fixture
def run(fixture_run, tmp_path):
    """A private copy of the session's fixture run (conftest; the eval inputs it names stay where they are)."""
    dst = tmp_path / "run"
    shutil.copytree(str(fixture_run), str(dst))
    return dst


def build(run, out, *extra, team="acme"):
    return package.main(["--team", team, "--run", str(run), "--out-dir", str(out)] + list(extra))


def test_builds_folder_zip_manifest_and_report(run, tmp_path, capsys):
    out = tmp_path / "submission"
    assert build(run, out) == 0
    assert "verified" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["acme", "acme.zip"]  # no staging leftovers
    sub = out / "acme"
    m = json.loads((sub / "manifest.json").read_text(encoding="utf-8"))
    assert mf.schema_errors(m) == []
    paths = [f["path"] for f in m["files"]]
    for required in ("adapter/adapter.ckpt", "adapter/adapter_config.json", "config/train.yaml", "config/eval.yaml",
                     "eval/params.json", "eval/math_report.json", "eval/math_report.md", "eval/math_report.png",
                     "eval/predictions.jsonl", "eval/math_gold.jsonl", "eval/squad_predictions.jsonl",
                     "eval/squad_report.json", "eval/squad_records.jsonl", "train/loss.png", "train/loss.jsonl",
                     "train/run.json", "logs/train/worker_0.log", "patches/series", "REPORT.md"):
        assert required in paths, required
    assert m["params"]["trainable"] == 3584 and m["params"]["total"] == 256320
    assert m["metrics"]["math"]["policies"]["prediction-precision"]["correct"] == sf.N_MATH - sf.N_WRONG
    assert abs(m["metrics"]["score"]["value"] - ((1 - 3584 / 256320) * 0.3 + 0.75 * 0.7)) < 1e-9
    assert m["patches"]["series"] == [p[len("patches/"):] for p in paths if p.startswith("patches/0")]
    report = (sub / "REPORT.md").read_text(encoding="utf-8")
    for heading in ("Algorithm", "Hyper-parameters", "Weights", "Environment", "SQuAD after fine-tuning",
                    "Math inference", "Trainable-parameter ratio"):
        assert heading in report, heading
    assert "%.6f" % m["metrics"]["score"]["value"] in report and "3584" in report
    assert "2 × 8 × (64 + 32) = 1536" in report and "2 × 8 × (64 + 64) = 2048" in report
    assert "$" not in report.replace("\\$", "")  # every template placeholder filled
    # no absolute path anywhere: the run's /tmp paths became relative or [outside]/name
    all_files = [f["path"] for f in m["files"]] + ["manifest.json"]
    assert mf.scan_absolute_paths(sub, all_files) == []
    assert "[outside]/train.mindrecord" in (sub / "logs" / "train" / "worker_0.log").read_text(encoding="utf-8")
    with zipfile.ZipFile(str(out / "acme.zip")) as zf:
        assert sorted(zf.namelist()) == sorted("acme/" + p for p in all_files)


def test_missing_inputs_listed_at_once_and_nothing_written(run, tmp_path):
    (run / "eval" / "squad_predictions.jsonl").unlink()
    (run / "train" / "loss.png").unlink()
    out = tmp_path / "submission"
    with pytest.raises(KitError) as err:
        build(run, out)
    msg = str(err.value)
    assert msg.startswith("missing inputs, nothing written:")
    assert "squad_predictions.jsonl" in msg and "loss.png" in msg
    assert list(out.iterdir()) == []


def test_stale_math_report_refused(run, tmp_path):
    path = run / "eval" / "math_report.json"
    rep = json.loads(path.read_text(encoding="utf-8"))
    rep["policies"]["exact"]["correct"] += 1
    path.write_text(json.dumps(rep), encoding="utf-8")
    out = tmp_path / "submission"
    with pytest.raises(KitError, match="says exact correct=19 but its predictions score 18.*stale"):
        build(run, out)
    assert list(out.iterdir()) == []


def test_adapter_not_matching_config_refused(run, tmp_path):
    path = run / "train" / "config.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("lora_rank: 8", "lora_rank: 4"), encoding="utf-8")
    with pytest.raises(KitError, match="disagree on rank"):
        build(run, tmp_path / "submission")


def test_failed_gate_is_not_published_and_old_one_is_kept(run, tmp_path):
    out = tmp_path / "submission"
    assert build(run, out) == 0
    before = (out / "acme" / "manifest.json").read_bytes()
    with pytest.raises(KitError, match="does not verify.*squad: .*gate not met"):
        build(run, out, "--squad-thresholds", "99", "99")
    assert (out / "acme" / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["acme", "acme.zip"]


def test_rebuild_replaces_atomically(run, tmp_path):
    out = tmp_path / "submission"
    assert build(run, out, "--no-zip") == 0
    (out / "acme.zip").write_bytes(b"stale")
    assert build(run, out, "--no-zip") == 0
    assert sorted(p.name for p in out.iterdir()) == ["acme"]  # stale zip removed, no .old or staging folders


def test_patches_changed_since_training_refused(run, tmp_path):
    path = run / "train" / "run.json"
    rec = json.loads(path.read_text(encoding="utf-8"))
    rec["patches"]["patches"] = [{"name": "0001-something-else.patch", "sha256": "0" * 64}]
    path.write_text(json.dumps(rec), encoding="utf-8")
    with pytest.raises(KitError, match="mindformers_patches/ changed since the training run"):
        build(run, tmp_path / "submission")


def test_bad_team_name(run, tmp_path):
    with pytest.raises(KitError, match="--team"):
        build(run, tmp_path / "submission", team="../evil")


def test_series_with_inline_comments_packages_and_verifies(run, tmp_path, monkeypatch):
    """`#` starts a comment anywhere on a series line, for package and verify alike (lorakit.patches): packaging
    used to look for a patch file named `0001-... # note` and refuse a valid run."""
    from lorakit import patches
    from lorakit.paths import PATCHES_DIR

    pdir = tmp_path / "patches"
    shutil.copytree(str(PATCHES_DIR), str(pdir))
    names = [n for _, n in patches.read_series(pdir / "series")]
    (pdir / "series").write_text("# the kit's patches\n" + "".join("%s  # note %d\n" % (n, k)
                                                                   for k, n in enumerate(names)), encoding="utf-8")
    monkeypatch.setattr(patches, "PATCHES_DIR", pdir)
    out = tmp_path / "submission"
    assert build(run, out, "--no-zip") == 0
    m = json.loads((out / "acme" / "manifest.json").read_text(encoding="utf-8"))
    assert m["patches"]["series"] == names and len(names) == 5
