"""`make bench`: run every benchmark module in bench/ and assemble BENCHMARKS.md.

A benchmark is a module ``bench/<name>.py`` with ``main(argv: list[str] | None) -> str`` that
measures on this machine and returns a Markdown section (it also writes
``bench/results/<name>.md``). ``python -m bench.run_all [NAME ...]`` runs some or all; sections
of benchmarks not run this time are kept from their last result file.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUTPUT = HERE.parent / "BENCHMARKS.md"


def benchmarks() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("__init__", "run_all")
                  and not p.stem.startswith("_"))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--assemble", action="store_true",
                        help="run nothing: rebuild BENCHMARKS.md from bench/results")
    args = parser.parse_args(argv)
    names = [] if args.assemble else args.names or benchmarks()
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        started = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        section = importlib.import_module(f"bench.{name}").main([])
        (RESULTS / f"{name}.md").write_text(section.rstrip() + "\n")
        print(f"== {name} done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE.parent).stdout.strip()
    parts = [
        "# Benchmarks\n",
        "Measured by `make bench` (`python -m bench.run_all`) on this machine: "
        f"{machine()}. Last assembled {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit "
        f"`{commit}`. Each section says how it was measured; rerun one with "
        "`python -m bench.run_all NAME`.\n",
    ]
    for result in sorted(RESULTS.glob("*.md")):
        parts.append(result.read_text())
    OUTPUT.write_text("\n".join(parts))
    print(f"wrote {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
