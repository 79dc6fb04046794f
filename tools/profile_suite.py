"""Where the suite's CPU goes: py-spy on every service during a steady load.

Starts the distributed suite as ``bench.suite_load`` does, replays its load trace at
``--rate`` calls per wall second and, once the load is steady, records every service with
py-spy (``--nonblocking``, so the services are not paused) for ``--seconds``. Writes one
raw (collapsed-stack) file per service and prints each service's heaviest frames by self
time and by library. Needs ``py-spy`` (``pip install py-spy``); not part of ``make bench``.

    python -m tools.profile_suite --rate 20 --seconds 20 --out /tmp/profile
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench.suite_load import START, load_trace, log
from tests.conftest import AMQP_BASE, create_database, drop_database, private_vhost
from tests.e2e.harness import admin_headers, base_environment, distributed_suite

LAYERS = [
    ("sqlalchemy", "sqlalchemy"), ("asyncpg", "asyncpg"), ("aio_pika", "amqp"),
    ("aiormq", "amqp"), ("pamqp", "amqp"), ("pydantic", "pydantic"), ("httpx", "httpx"),
    ("httpcore", "httpx"), ("starlette", "web"), ("fastapi", "web"), ("uvicorn", "web"),
    ("structlog", "logging"), ("logging", "logging"), ("json", "json"),
    ("websockets", "websockets"), ("prometheus", "metrics"), ("asyncio", "asyncio"),
    ("uvloop", "asyncio"), ("shared/", "shared"), ("services/", "services"),
    ("hotline/", "hotline"),
]


def layer_of(frame: str) -> str:
    for needle, name in LAYERS:
        if needle in frame:
            return name
    return "other"


def summarise(raw: Path, top: int = 25) -> str:
    by_frame: collections.Counter[str] = collections.Counter()
    by_layer: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        leaf = stack.split(";")[-1]
        # Idle: the loop waiting in epoll (py-spy shows the innermost Python frame).
        if leaf.startswith(("Runner.run ", "run_forever ", "_run_once ")) or (
                "select" in leaf and ("selectors" in leaf or "epoll" in leaf)):
            continue
        total += n
        by_frame[leaf] += n
        by_layer[layer_of(leaf)] += n
    lines = [f"{raw.stem}: {total} busy samples"]
    lines += [f"  {name:<12} {100 * n / total:5.1f}%" for name, n in by_layer.most_common()]
    lines += ["  --- top frames (self)"]
    lines += [f"  {100 * n / total:5.1f}%  {frame[:150]}" for frame, n in by_frame.most_common(top)]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    database_url = await create_database()
    work = Path(tempfile.mkdtemp(prefix="hotline-profile-"))
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with private_vhost() as vhost:
            env = base_environment(database_url, work, args.speed,
                                   amqp_url=f"{AMQP_BASE}/{vhost}", start=START)
            env["SOFTSWITCH_MEDIA_ENABLED"] = "false"
            with distributed_suite(env, work / "logs") as suite:
                trace, calls = load_trace(rate=args.rate, seconds=args.seconds + 20,
                                          speed=args.speed, talk=30.0, seed=5, name="prof")
                async with httpx.AsyncClient(headers=admin_headers(), timeout=60) as client:
                    response = await client.post(
                        suite.url("softswitch") + "/v1/replays",
                        params={"speed": args.speed, "name": "prof"}, content=trace,
                        headers={"Content-Type": "application/x-ndjson"})
                    response.raise_for_status()
                    log(f"replaying {calls} calls; profiling after 15 s")
                    await asyncio.sleep(15)
                    spies = [subprocess.Popen(  # noqa: ASYNC220 (started, then awaited in threads)
                        ["py-spy", "record", "--pid", str(proc.pid), "--duration",
                         str(int(args.seconds)), "--rate", "100", "--nonblocking",
                         "--format", "raw", "--output", str(args.out / f"{name}.txt")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        for name, proc in suite.processes.procs.items()]
                    for spy in spies:
                        await asyncio.to_thread(spy.wait)
    finally:
        await drop_database(database_url)
        shutil.rmtree(work, ignore_errors=True)
    for raw in sorted(args.out.glob("*.txt")):
        print(summarise(raw, args.top))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "hotline-profile")
    parser.add_argument("--summarise", action="store_true", help="only summarise --out")
    args = parser.parse_args(argv)
    if args.summarise:
        for raw in sorted(args.out.glob("*.txt")):
            print(summarise(raw, args.top))
        return
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        sys.exit("py-spy is not installed (pip install py-spy)")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
