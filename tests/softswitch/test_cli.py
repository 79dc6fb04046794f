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
    team = CliRunner().invoke(cli, ["token", "-s", "supervisor", "--team", "T1",
                                    "--department", "D1"])
    assert team.exit_code == 0, team.output
    principal = Auth(TEST_SECRET).verify(team.output.strip())
    assert (principal.team, principal.department) == ("T1", "D1")
    assert CliRunner().invoke(cli, ["token", "-s", "supervisor", "--team", "x" * 65]
                              ).exit_code == 2


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


def test_replay_finds_the_suite_without_url(tmp_path, monkeypatch) -> None:
    """--url, else HOTLINE_SOFTSWITCH_URL, else the running suite's record, else 8006."""
    from hotline.cli import DEFAULT_URL, softswitch_url

    monkeypatch.delenv("HOTLINE_SOFTSWITCH_URL", raising=False)
    monkeypatch.setenv("HOTLINE_VAR_DIR", str(tmp_path))
    assert softswitch_url(None) == DEFAULT_URL
    (tmp_path / "suite.json").write_text(json.dumps(
        {"pid": 1, "urls": {"softswitch": "http://127.0.0.1:9106"}}))
    assert softswitch_url(None) == "http://127.0.0.1:9106"
    monkeypatch.setenv("HOTLINE_SOFTSWITCH_URL", "http://127.0.0.1:9206")
    assert softswitch_url(None) == "http://127.0.0.1:9206"
    assert softswitch_url("http://elsewhere:1") == "http://elsewhere:1"


async def test_replay_exits_4_when_calls_are_still_open_at_the_drain_timeout(
        common, auth, tmp_path, monkeypatch) -> None:
    """A suite that never answers the agent's phone: the call stays open, the replay drains
    into its timeout, and the CLI says so with exit code 4."""
    monkeypatch.setenv("HOTLINE_JWT_SECRET", TEST_SECRET)
    trace = tmp_path / "one.jsonl"
    trace.write_text("\n".join(json.dumps(line) for line in [
        {"kind": "header", "format": "hotline-trace/1", "name": "stuck"},
        {"kind": "call", "id": "C1", "at": 0.1, "from": "+8613900000009", "dtmf": ["1"],
         "think": 0.1, "patience": None, "talk": 5}]) + "\n")
    standin = StandIn(auth)  # no agents: the caller waits in the toy queue forever
    async with serve(standin) as base:
        settings = _settings(common, base).model_copy(update={"drain_timeout_seconds": 1.0})
        async with serve_app(create_app(settings, bus=MemoryBus())) as url:
            result = await asyncio.to_thread(
                CliRunner().invoke, cli, ["replay", str(trace), "--speed", "10", "--url", url,
                                          "--timeout", "60"])
    assert result.exit_code == 4, result.output
    assert "still open at the drain timeout" in result.output
