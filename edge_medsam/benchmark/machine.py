"""The machine a benchmark ran on: CPU model, ISA flags, cores, clock, memory, load, library versions, and its
peak FP32 throughput, both measured (a large GEMM, in the same run) and theoretical (flags x cores x clock)."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_medsam.versions import installed_versions

LIBRARIES = ("edge-medsam", "numpy", "torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt",
             "onnxslim", "matplotlib")
# ISA features that decide FP32 / INT8 / BF16 throughput (the rest of the flag list is kept in full anyway).
KEY_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve")
GEMM_SIDE = 2048


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux), lower-case keys."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


def _max_clock_mhz(info: dict[str, str]) -> tuple[float | None, str]:
    """The highest clock the OS reports (cpufreq maximum, else the current MHz of /proc/cpuinfo) and its source."""
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(path.read_text().strip()) / 1000.0, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    if "cpu mhz" in info:
        return float(info["cpu mhz"]), "/proc/cpuinfo cpu MHz (no cpufreq: a VM; the host may boost higher)"
    return None, "unknown"


def _governor() -> str | None:
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        return None


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask), i.e. the core budget of the benchmark."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def fp32_flops_per_cycle(flags: set[str], vendor: str, family: int | None) -> tuple[int, str]:
    """FP32 FLOP per core per cycle from the ISA (FMA = 2 FLOP) and the rule used to get it."""
    if "asimd" in flags or platform.machine().lower() in ("aarch64", "arm64"):
        return 16, "ARM NEON: 2 x 128-bit FMA pipes (Cortex-A78AE / Neoverse class)"
    if "avx512f" in flags and vendor == "AuthenticAMD" and (family or 0) < 26:
        return 32, "AMD Zen 4: AVX-512 executed on 2 x 256-bit FMA pipes"
    if "avx512f" in flags:
        return 64, "AVX-512 with 2 x 512-bit FMA units (Xeon Gold 6xxx/Platinum, Xeon W, Zen 5; 1-unit parts: half)"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 + FMA: 2 x 256-bit FMA pipes"
    if "avx" in flags:
        return 16, "AVX without FMA: 1 x 256-bit add + 1 x 256-bit multiply"
    return 8, "SSE: 128-bit add + multiply"


def theoretical_peak(info: dict[str, Any], cores: int) -> dict[str, Any]:
    """Peak FP32 GFLOP/s of ``cores`` cores from the ISA flags and the clock."""
    per_cycle, rule = fp32_flops_per_cycle(set(info["flags"]), info["vendor"], info["family"])
    mhz = info["clock_mhz"]
    gflops = None if mhz is None else per_cycle * cores * mhz / 1000.0
    return {"gflops": gflops, "flops_per_cycle_per_core": per_cycle, "cores": cores, "clock_mhz": mhz, "rule": rule}


def measured_peak(threads: int, seconds: float = 1.0, side: int = GEMM_SIDE) -> dict[str, Any]:
    """Best FP32 GFLOP/s of repeated ``side``-square GEMMs on ``threads`` threads (torch; numpy without torch)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((side, side), dtype=np.float32)
    b = rng.standard_normal((side, side), dtype=np.float32)
    flops = 2.0 * side**3
    try:
        import torch

        from edge_medsam.engine.threads import torch_threads
    except ImportError:
        torch = None
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        threads_set = torch_threads(threads)

        def gemm() -> None:
            torch.matmul(ta, tb)

        library = f"torch {torch.__version__} matmul"
    else:
        threads_set = contextlib.nullcontext()

        def gemm() -> None:
            np.matmul(a, b)

        library = f"numpy {np.__version__} matmul (BLAS threads not controlled)"
    with threads_set:
        gemm()  # first call: thread pool start-up and page faults
        best, calls, start = float("inf"), 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - start < seconds:
            tick = time.perf_counter()
            gemm()
            best = min(best, time.perf_counter() - tick)
            calls += 1
    return {"gflops": flops / best / 1e9, "threads": threads, "side": side, "calls": calls, "library": library}


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide the figures ("not installed" where absent)."""
    return installed_versions(LIBRARIES)


def _memory_gb() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"MemTotal:\s+(\d+) kB", text)
    return round(int(match.group(1)) / 2**20, 1) if match else None


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe_machine(note: str = "") -> dict[str, Any]:
    """CPU model, vendor/family, key and full ISA flags, cores, clock, memory, OS, Python and library versions."""
    info = _cpuinfo()
    flags = (info.get("flags") or info.get("features") or "").split()
    family = info.get("cpu family")
    mhz, clock_source = _max_clock_mhz(info)
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "vendor": info.get("vendor_id", ""),
        "family": int(family) if family and family.isdigit() else None,
        "model": info.get("model"),
        "architecture": platform.machine(),
        "key_flags": [f for f in KEY_FLAGS if f in flags],
        "flags": flags,
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "clock_mhz": mhz,
        "clock_source": clock_source,
        "governor": _governor(),
        "hypervisor": "hypervisor" in flags,
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
        "load_average_start": load_average(),
        "note": note,
    }


def machine_slug(machine: dict[str, Any]) -> str:
    """A folder name for the machine: CPU model and core count, e.g. ``amd-epyc-2c``."""
    name = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*", "", machine["cpu"].lower())
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "cpu"
    return f"{name}-{machine['usable_cores']}c"
