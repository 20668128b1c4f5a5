"""lorakit.layout is the one place where run and submission artefacts live: the Makefile includes the same paths
(layout.mk, generated), and no tool or Makefile rule spells a run path of its own."""

import re

from conftest import REPO
from lorakit import layout


def test_layout_mk_is_generated_from_lorakit_layout():
    assert (REPO / "layout.mk").read_text(encoding="utf-8") == layout.make_include(), \
        "layout.mk is stale: run `make layout`"


def test_makefile_spells_no_run_path_of_its_own():
    """Every file path below a run folder ($(RUN), the demo's $(D), the proxy's $(P)) or an imported model's folder
    comes from layout.mk (L*_ variables); a bare folder name ($(P)/stock: a run folder) is not a file path."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "include layout.mk" in text
    paths = re.findall(r"\$\((?:RUN|D|P|BASE_MODEL_DIR|PROXY_DIR)\)/[^\s,;|)\"']*", text)
    assert len(paths) > 40  # the pattern finds the Makefile's paths
    own = [p for p in paths if "$(L" not in p and re.search(r"/.*[/.]", p)]
    # the demo's own inputs (generated data, its base corpus) are not artefacts of a run
    own = [p for p in own if not re.match(r"\$\(D\)/(gen|base_data)/", p)]
    assert own == [], own
    used = set(re.findall(r"\$\((L[A-Z]?_\w+)\)", text))
    defined = set(re.findall(r"^(L[A-Z]?_\w+) :=", layout.make_include(), re.M))
    assert used and used <= defined, sorted(used - defined)


def test_packaged_files_exist_in_both_layouts():
    names = dict(layout.RUN.items())
    sub = dict(layout.SUBMISSION.items())
    for run_rel, sub_rel, _required in layout.packaged_files():
        assert run_rel in names.values() and sub_rel in sub.values()
    assert layout.RUN.predict_record == layout.predict_record_of(layout.RUN.predictions)
    assert layout.RUN.at("/r").adapter.as_posix() == "/r/adapter/adapter.ckpt"


def test_stage_folders_compose_the_run_folder():
    """What a tool writes into its --out-dir is what the run layout names below the stage's folder."""
    assert layout.RUN.run_record == "train/" + layout.TRAIN.run_record
    assert layout.RUN.adapter_config == "adapter/" + layout.ADAPTER.config
    assert layout.RUN.data_report == "data/" + layout.DATA.report
    assert layout.RUN.math_report == layout.RUN.eval_dir + "/" + layout.MATH_REPORT.json
