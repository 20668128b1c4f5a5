"""What every benchmark tool needs: a description of the machine, and an in-place update of its own
`## Section` of docs/benchmarks.md (other sections are left exactly as they are)."""

import os
import platform
from pathlib import Path

from .io import atomic_open


def loadavg():
    """1-minute load average, or None where the OS has none (the figures on a shared machine need it)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_info(libs=False):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            mem = int(fh.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "mem_bytes": mem, "ram_gb": mem // (1 << 30),
            "python": platform.python_version(), "platform": platform.platform()}
    if libs:
        import mindspore
        import numpy

        info["mindspore"] = mindspore.__version__
        info["numpy"] = numpy.__version__
        try:
            import mindformers

            info["mindformers"] = getattr(mindformers, "__version__", "?")
        except ImportError:
            pass
    return info


def update_doc_section(path, heading, text):
    """Replace the section that starts with the line `heading` (up to the next `## `) by `text`, or append it."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    body = text.rstrip("\n") + "\n"
    if start is None:
        new = old.rstrip("\n") + "\n\n" + body
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + body + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    with atomic_open(path) as fh:
        fh.write(new)
