"""One line describing the machine a benchmark ran on."""

from __future__ import annotations

import os
import platform
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    pages = os.sysconf("SC_PHYS_PAGES")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def describe() -> str:
    """Cores, memory, CPU, OS, Python and the media stack's versions."""
    return (
        f"{os.cpu_count()} cores, {_memory_gib():.0f} GiB, {_cpu_model()}; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"aiortc {_version('aiortc')}, av {_version('av')}, "
        f"opencv {_version('opencv-python-headless')}"
    )
