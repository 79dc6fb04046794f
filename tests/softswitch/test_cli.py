"""The ``hotline`` CLI: tokens, and a replay followed to its report over real HTTP."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from hotline.cli import app as cli
from services.softswitch.app import create_app
from shared.auth import Auth
from shared.bus.memory import MemoryBus
from tests.conftest import TEST_SECRET
from tests.softswitch.standin import StandIn, serve, serve_app
from tests.softswitch.test_replay_service import TRACE, _settings


def test_token_prints_a_token_with_the_scopes(monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_JWT_SECRET", TEST_SECRET)
    result = CliRunner().invoke(cli, ["token", "--scope", "agent", "--scope", "supervisor",
                                      "--subject", "A001"])
    assert result.exit_code == 0, result.output
    principal = Auth(TEST_SECRET).verify(result.output.strip())
    assert principal.subject == "A001" and principal.scopes == {"agent", "supervisor"}
    bad = CliRunner().invoke(cli, ["token", "--scope", "root"])
    assert bad.exit_code == 2


async def test_replay_command_prints_the_report(common, auth, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_JWT_SECRET", TEST_SECRET)
    trace = tmp_path / "tiny.jsonl"
    trace.write_text(TRACE)
    standin = StandIn(auth)
    async with serve(standin) as base:
        async with serve_app(create_app(_settings(common, base), bus=MemoryBus())) as url:
            runner = CliRunner()
            result = await asyncio.to_thread(
                runner.invoke, cli, ["replay", str(trace), "--speed", "10", "--json",
                                     "--url", url, "--timeout", "30"])
            assert result.exit_code == 0, result.output
            report = json.loads(result.stdout)
            assert report["offered"] == 3 and report["answered"] == 1
            table = await asyncio.to_thread(
                runner.invoke, cli, ["replay", str(trace), "--speed", "10", "--url", url,
                                     "--timeout", "30"])
            assert table.exit_code == 0, table.output
            assert "service level" in table.output and "line 8" in table.output
