#!/usr/bin/env python3
"""Apply, check or revert the kit's MindFormers patches (mindformers_patches/series).

--target is either a MindFormers source root (holds mindformers/__init__.py, e.g. the
unzipped contest fork) or the installed package folder itself (.../site-packages/mindformers).
The diffs name files as a/mindformers/<path>; they are applied by a small pure-Python
unified-diff applier (no `patch` binary needed): exact context, hunks may sit at another
line offset, CRLF files are matched too.

  apply   applies every patch not yet applied; an applied patch says "already applied", so a
          second run changes nothing. A partly applied patch (some of its files patched) is
          completed. All patches are first applied in memory; files are only written when the
          whole series applies, each one via a temp file + rename (never half-written), and
          its stale __pycache__/*.pyc is removed.
  check   dry run: exit 0 if `apply` would succeed (or has nothing to do); with --applied,
          exit 0 only if every patch is already applied (exit 1 otherwise).
  revert  undoes the applied patches in reverse order (files come back byte-identical).

Exit codes: 0 ok, 1 `check --applied` found patches not applied yet, 2 a patch does not
apply (the message names the patch and the file) or bad input.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from lorakit import patches as patches_lib
from lorakit.io import KitError, run_main, unreadable
from lorakit.paths import PATCHES_DIR

PACKAGE = "mindformers"
HUNK_RE = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")

# per-file states
PENDING, APPLIED, CONFLICT, AMBIGUOUS = "not applied", "applied", "does not apply", "ambiguous"


class FilePatch:
    """The hunks of one file in one patch."""

    def __init__(self, patch_name, relpath):
        self.patch_name = patch_name
        self.relpath = relpath  # path inside the mindformers package, posix style
        self.hunks = []  # list of (old_start, old_lines, new_lines)


class Patch:
    def __init__(self, name, path, header, files):
        self.name, self.path, self.header, self.files = name, path, header, files

    @property
    def subject(self):
        for line in self.header.splitlines():
            if line.lower().startswith("subject:"):
                return line.split(":", 1)[1].strip()
        return next((line.strip() for line in self.header.splitlines() if line.strip()), "")


def _strip_path(raw, patch_name, lineno):
    """b'a/mindformers/x/y.py\\t2024-...' -> 'x/y.py' (path inside the package)."""
    text = raw.split(b"\t")[0].strip().decode("utf-8", "replace")
    parts = text.split("/")
    if len(parts) >= 2 and parts[0] in ("a", "b"):
        parts = parts[1:]
    if len(parts) < 2 or parts[0] != PACKAGE or any(p in ("", ".", "..") for p in parts[1:]):
        raise KitError(f"{patch_name}:{lineno}: file path {text!r} is not under {PACKAGE}/ "
                       f"(expected a/{PACKAGE}/...)")
    return "/".join(parts[1:])


def parse_patch(path):
    """Parse a unified diff: (header text, [FilePatch]). Text before the first '--- ' is the header."""
    name = Path(path).name
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise unreadable(path, exc) from None
    lines = data.splitlines(keepends=True)
    files, header, i = [], None, 0
    current = None
    while i < len(lines):
        line = lines[i]
        if line.startswith(b"--- ") and i + 1 < len(lines) and lines[i + 1].startswith(b"+++ "):
            if header is None:
                header = b"".join(lines[:i]).decode("utf-8", "replace")
            old_path = line[4:]
            new_path = lines[i + 1][4:]
            if old_path.split(b"\t")[0].strip() == b"/dev/null" or new_path.split(b"\t")[0].strip() == b"/dev/null":
                raise KitError(f"{name}:{i + 1}: creating or deleting files is not supported")
            rel = _strip_path(new_path, name, i + 2)
            if _strip_path(old_path, name, i + 1) != rel:
                raise KitError(f"{name}:{i + 1}: renames are not supported")
            current = FilePatch(name, rel)
            files.append(current)
            i += 2
            continue
        m = HUNK_RE.match(line)
        if m:
            if current is None:
                raise KitError(f"{name}:{i + 1}: hunk before any '--- a/... +++ b/...' file header")
            old_start = int(m.group(1))
            old_count = int(m.group(2)) if m.group(2) is not None else 1
            new_count = int(m.group(4)) if m.group(4) is not None else 1
            old, new = [], []
            i += 1
            last = None
            while (len(old) < old_count or len(new) < new_count
                   or (i < len(lines) and lines[i].startswith(b"\\"))):
                if i >= len(lines):
                    raise KitError(f"{name}:{i}: hunk is truncated (expected -{old_count} +{new_count} lines)")
                body = lines[i]
                tag, text = body[:1], body[1:]
                if body.startswith(b"\\"):  # "\ No newline at end of file" for the previous line
                    if last is None:
                        raise KitError(f"{name}:{i + 1}: stray backslash line")
                    for seq in last:
                        seq[-1] = seq[-1].rstrip(b"\r\n")
                elif tag == b" " or body in (b"\n", b"\r\n"):
                    text = text if tag == b" " else body
                    old.append(text)
                    new.append(text)
                    last = (old, new)
                elif tag == b"-":
                    old.append(text)
                    last = (old,)
                elif tag == b"+":
                    new.append(text)
                    last = (new,)
                else:
                    raise KitError(f"{name}:{i + 1}: unexpected line inside a hunk")
                i += 1
                if len(old) > old_count or len(new) > new_count:
                    raise KitError(f"{name}:{i}: hunk has more lines than its @@ header says")
            current.hunks.append((old_start, old, new))
            continue
        i += 1
    if not files or not any(f.hunks for f in files):
        raise KitError(f"{name}: no unified-diff hunks found")
    return (header or ""), files


def read_series(series):
    """The Patch objects of a series file (lorakit.patches' rule), each file parsed."""
    series = Path(series)
    patches = []
    for lineno, entry in patches_lib.read_series(series):
        path = series.parent / entry
        if not path.is_file():
            raise KitError(f"{series}:{lineno}: patch file {path} not found")
        header, files = parse_patch(path)
        patches.append(Patch(entry, path, header, files))
    if not patches:
        raise KitError(f"{series}: lists no patches")
    return patches


def package_dir(target):
    """The mindformers package folder for a source root or the package folder itself."""
    target = Path(target)
    if (target / PACKAGE / "__init__.py").is_file():
        return target / PACKAGE
    if (target / "__init__.py").is_file() and (target / "version_control.py").is_file():
        return target
    if not target.exists():
        raise KitError(f"--target {target} does not exist")
    raise KitError(f"--target {target} is neither a MindFormers source root (with {PACKAGE}/__init__.py) nor the "
                   f"installed {PACKAGE} package folder")


def _adapt_eol(lines, crlf):
    if not crlf:
        return lines
    return [ln[:-1] + b"\r\n" if ln.endswith(b"\n") and not ln.endswith(b"\r\n") else ln for ln in lines]


def _find(lines, block, expected, start):
    """Index >= start where `block` occurs, nearest to `expected`; None if absent."""
    n = len(block)
    best = None
    for pos in range(start, len(lines) - n + 1):
        if lines[pos:pos + n] == block:
            if best is None or abs(pos - expected) < abs(best - expected):
                best = pos
            elif pos > expected:
                break
    return best


def apply_hunks(content, hunks, reverse=False):
    """(patched bytes, None), or (None, index of the first hunk that does not match exactly)."""
    lines = content.splitlines(keepends=True)
    crlf = bool(lines) and lines[0].endswith(b"\r\n")
    out, cursor, offset = [], 0, 0
    for index, (old_start, old, new) in enumerate(hunks):
        if reverse:
            old, new = new, old
        old, new = _adapt_eol(old, crlf), _adapt_eol(new, crlf)
        expected = max(old_start - 1 + offset, 0) if old else old_start + offset
        pos = _find(lines, old, expected, cursor)
        if pos is None:
            return None, index
        out.extend(lines[cursor:pos])
        out.extend(new)
        cursor = pos + len(old)
        offset = pos - (old_start - 1)
    out.extend(lines[cursor:])
    return b"".join(out), None


def file_state(content, fp):
    """(state, patched or reverted bytes, error text) of one file for one FilePatch."""
    forward, bad = apply_hunks(content, fp.hunks)
    backward, _ = apply_hunks(content, fp.hunks, reverse=True)
    if forward is not None and backward is None:
        return PENDING, forward, None
    if backward is not None and forward is None:
        return APPLIED, backward, None
    if forward is None:
        return CONFLICT, None, (f"hunk {bad + 1} of {len(fp.hunks)} (@@ -{fp.hunks[bad][0]}) matches neither "
                                "the original nor the patched text")
    return AMBIGUOUS, None, "both the original and the patched text match: cannot tell whether it is applied"


def run_series(pkg, patches, mode):
    """Work out the whole series in memory. mode: 'apply', 'check' or 'revert'.

    Returns (report list, {path: new bytes} to write, ok).
    """
    contents, changed, report, ok = {}, {}, [], True
    order = list(reversed(patches)) if mode == "revert" else patches
    for patch in order:
        entry = {"name": patch.name, "subject": patch.subject, "files": []}
        for fp in patch.files:
            path = pkg / fp.relpath
            if path not in contents:
                try:
                    contents[path] = path.read_bytes()
                except OSError as exc:
                    entry["files"].append({"path": fp.relpath, "state": "missing",
                                           "error": f"cannot read {path}: {exc.strerror or exc}"})
                    continue
            state, result, error = file_state(contents[path], fp)
            item = {"path": fp.relpath, "state": state}
            if error:
                item["error"] = error
            elif (state == PENDING and mode in ("apply", "check")) or (state == APPLIED and mode == "revert"):
                contents[path] = result
                changed[path] = result
                item["action"] = "revert" if mode == "revert" else "apply"
            entry["files"].append(item)
        states = [f["state"] for f in entry["files"]]
        if any(s not in (PENDING, APPLIED) for s in states):
            entry["status"] = "does not apply"
            ok = False
        elif all(s == APPLIED for s in states):
            entry["status"] = "applied" if mode == "revert" else "already applied"
        elif all(s == PENDING for s in states):
            entry["status"] = "not applied"
        else:
            entry["status"] = "partially applied"
        report.append(entry)
    if mode == "revert":
        report.reverse()
    return report, changed, ok


def _remove_pyc(path):
    cache = path.parent / "__pycache__"
    if cache.is_dir():
        for pyc in cache.glob(path.stem + ".*.pyc"):
            try:
                pyc.unlink()
            except OSError:
                pass


def write_files(changed):
    """Replace each file atomically (temp file beside it + rename), keeping its mode."""
    for path, data in changed.items():
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            shutil.copymode(str(path), tmp)
            os.replace(tmp, str(path))
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise KitError(f"cannot write {path}: {exc.strerror or exc} (files written before it keep their new "
                           "content: fix the cause and run the same command again)") from None
        _remove_pyc(path)


def _describe(entry, mode, ok=True):
    status = entry["status"]
    if status == "does not apply":
        return "does not apply"
    if not ok and mode != "check":
        return status + ", left unchanged (the series failed)"
    if mode == "revert":
        return {"applied": "reverted", "not applied": "not applied, nothing to revert",
                "partially applied": "reverted (was partially applied)"}[status]
    if mode == "apply":
        return {"already applied": "already applied", "not applied": "applied",
                "partially applied": "applied the missing part (was partially applied)"}[status]
    return {"already applied": "already applied", "not applied": "would apply",
            "partially applied": "partially applied, apply would complete it"}[status]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("apply", "check", "revert"))
    ap.add_argument("--target", required=True,
                    help="MindFormers source root (has mindformers/__init__.py) or the mindformers package folder")
    ap.add_argument("--series", default=str(PATCHES_DIR / "series"),
                    help="series file listing the patches in order (default: %(default)s)")
    ap.add_argument("--applied", action="store_true",
                    help="check: succeed only if every patch is already applied (exit 1 otherwise)")
    ap.add_argument("--quiet", action="store_true", help="print nothing on success")
    ap.add_argument("--json", action="store_true", help="print one JSON object with the status of every patch")
    args = ap.parse_args(argv)
    if args.applied and args.command != "check":
        ap.error("--applied goes with check")

    patches = read_series(args.series)
    pkg = package_dir(args.target)
    mode = args.command
    report, changed, ok = run_series(pkg, patches, mode)
    if ok and mode in ("apply", "revert") and changed:
        write_files(changed)
    all_applied = ok and all(e["status"] == "already applied" for e in report)
    if mode == "check" and args.applied:
        rc = 0 if all_applied else (1 if ok else 2)
    else:
        rc = 0 if ok else 2

    for entry in report:
        for f in entry["files"]:
            if "error" in f:
                print(f"patch_mindformers: error: {entry['name']} does not apply to {pkg / f['path']}: {f['error']}",
                      file=sys.stderr)
    if not ok and mode in ("apply", "revert"):
        print(f"patch_mindformers: error: nothing was changed in {pkg}", file=sys.stderr)

    if args.json:
        print(json.dumps({"command": mode, "target": str(args.target), "package_dir": str(pkg),
                          "series": str(args.series), "ok": ok, "all_applied": all_applied,
                          "changed_files": sorted(str(p) for p in changed) if mode != "check" else [],
                          "exit_code": rc, "patches": report}, indent=2))
    elif not args.quiet:
        for entry in report:
            print(f"{entry['name']:<60} {_describe(entry, mode, ok)}")
        if ok:
            if mode == "check" and args.applied:
                print(f"all {len(report)} patches applied in {pkg}" if all_applied
                      else f"not every patch is applied in {pkg}")
            elif mode == "check":
                print(f"series applies cleanly to {pkg}")
            elif not changed:
                print(f"nothing to do: no patch is applied in {pkg}" if mode == "revert"
                      else f"nothing to do: all {len(report)} patches already applied in {pkg}")
            else:
                print(f"{mode}: {len(changed)} file(s) changed in {pkg}")
    return rc


if __name__ == "__main__":
    run_main(main)
