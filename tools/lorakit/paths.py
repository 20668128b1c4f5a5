"""Where things live in a checkout of the kit."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
YAML_DIR = REPO / "yaml"
PATCHES_DIR = REPO / "mindformers_patches"
SCHEMA_DIR = REPO / "submission" / "schema"
# generated and downloaded files (tokenizer, data, runs) go below CACHE unless the user says otherwise
CACHE = Path(os.environ.get("KIT_CACHE", REPO / ".cache"))
RUNS = Path(os.environ.get("KIT_RUNS", REPO / "runs"))


def profile_yaml(profile):
    """yaml/<profile>.yaml, or the path itself when a file path is given."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    candidate = YAML_DIR / (profile + ".yaml")
    if not candidate.exists():
        known = sorted(x.stem for x in YAML_DIR.glob("*.yaml"))
        from .io import KitError

        raise KitError("unknown profile %r (known: %s)" % (profile, ", ".join(known)))
    return candidate
