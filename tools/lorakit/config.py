"""Kit configs: MindFormers yaml written once as a base plus thin overlays, resolved to one plain yaml.

A profile file may name `_base_: other.yaml` (relative to itself); the overlay is deep-merged over
the base (dicts merge, everything else replaces). `--set a.b.c=value` overrides follow, with the
value parsed as YAML (so `1e-4`, `true`, `[1, 2]` and quoted strings work). The key must exist in the
resolved config (a typo is refused with the closest valid key); `--set +a.b.c=value` adds a new one. The resolved dict is
what MindFormers sees: no `_base_`, and `*_dataset_task.dataset_config` pointing at the same
mapping as `train_dataset` / `eval_dataset`, as MindFormers' own yamls do with anchors.
"""

import copy
import re
from pathlib import Path

import yaml

from .io import KitError, atomic_open
from .paths import profile_yaml

BASE_KEY = "_base_"
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _load_yaml_file(path):
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise KitError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    except yaml.YAMLError as exc:
        raise KitError("%s: bad YAML: %s" % (path, str(exc).replace("\n", " "))) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KitError("%s: top level must be a mapping" % path)
    return data


def deep_merge(base, overlay):
    """Return base with overlay merged in; neither argument is modified."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_layers(path, _seen=None):
    """Load a yaml and its `_base_` chain, merged, without resolving links or overrides."""
    path = Path(path).resolve()
    seen = _seen or []
    if path in seen:
        raise KitError("%s: _base_ cycle: %s" % (path, " -> ".join(str(p) for p in seen)))
    data = _load_yaml_file(path)
    base_name = data.pop(BASE_KEY, None)
    if base_name is None:
        return data
    base = load_layers(path.parent / base_name, seen + [path])
    return deep_merge(base, data)


def parse_override(item):
    if "=" not in item:
        raise KitError("override %r is not key=value" % item)
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise KitError("override %r has an empty key" % item)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and raw.strip()[:1] not in ("'", "\"") and _FLOAT_RE.match(value.strip()):
        value = float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string; a user means the number
    return key, value


def get_path(cfg, dotted, default=None):
    node = cfg
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def set_path(cfg, dotted, value):
    parts = dotted.split(".")
    node = cfg
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit():
            node = node[int(part)]
            continue
        if part not in node or not isinstance(node[part], (dict, list)):
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list) and last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


_ABSENT = object()


def dotted_keys(node, prefix=""):
    """Every dotted key of a config (list items by index), for suggestions."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        key = "%s%s" % (prefix, k)
        out.append(key)
        out += dotted_keys(v, key + ".")
    return out


def apply_overrides(cfg, overrides, strict=False):
    """Set each `key=value`. strict (user input): the key must already exist (`+key=value` adds one); an unknown
    key is a KitError naming the closest valid one."""
    for item in overrides or ():
        add = item.startswith("+")
        key, value = parse_override(item[1:] if add else item)
        if strict and not add and get_path(cfg, key, _ABSENT) is _ABSENT:
            import difflib

            close = difflib.get_close_matches(key, dotted_keys(cfg), n=1, cutoff=0.6)
            raise KitError("--set %s: no such key in the config%s (write --set +%s=... to add a new key)"
                           % (key, "; did you mean %s?" % close[0] if close else "", key))
        set_path(cfg, key, value)
    return cfg


def link_datasets(cfg):
    """Make `X_dataset_task.dataset_config` the very same mapping as `X_dataset` (MindFormers reads both)."""
    for kind in ("train", "eval"):
        task = cfg.get(kind + "_dataset_task")
        if isinstance(task, dict) and isinstance(cfg.get(kind + "_dataset"), dict):
            task["dataset_config"] = cfg[kind + "_dataset"]
    return cfg


def load_config(profile_or_path, overrides=()):
    """Resolve a profile name (yaml/<name>.yaml) or a yaml path into one MindFormers config dict."""
    cfg = load_layers(profile_yaml(str(profile_or_path)))
    apply_overrides(cfg, overrides, strict=True)
    return link_datasets(cfg)


def dump_config(cfg, path):
    """Write a resolved config as plain YAML (anchors for the linked dataset mappings)."""
    with atomic_open(path) as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False, allow_unicode=True, default_flow_style=False)


def model_config(cfg):
    mc = get_path(cfg, "model.model_config")
    if not isinstance(mc, dict):
        raise KitError("config has no model.model_config mapping")
    return mc


def pet_config(cfg):
    """The LoRA section (`model.model_config.pet_config`) or None."""
    return model_config(cfg).get("pet_config")


def device_count(cfg):
    """Devices (workers) a resolved config trains on: data_parallel x model_parallel x pipeline_stage with
    use_parallel on, else 1."""
    if not cfg.get("use_parallel"):
        return 1
    n = 1
    for key in ("data_parallel", "model_parallel", "pipeline_stage"):
        n *= int(get_path(cfg, "parallel_config." + key, 1) or 1)
    return n
