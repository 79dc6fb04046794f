"""Menu validation: a bad tree is refused with the node at fault named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.ivr_engine.app import create_app, load_menus
from services.ivr_engine.domain import Defaults, MenuError, parse_menu
from services.ivr_engine.settings import BUNDLED_MENU, IvrSettings
from shared.settings import CommonSettings

BASE: dict[str, Any] = yaml.safe_load(BUNDLED_MENU.read_text())


def broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    change(data)
    return data


@pytest.mark.parametrize(("change", "node", "message"), [
    (lambda d: d["nodes"]["main"]["options"].update({"4": "nowhere"}), "main",
     "options['4'] refers to unknown node 'nowhere'"),
    (lambda d: d["nodes"]["main"].update(on_failure="ghost"), "main", "unknown node 'ghost'"),
    (lambda d: d["nodes"]["outage"].pop("prompt"), "outage", "prompt: Field required"),
    (lambda d: d["nodes"]["goodbye"].update(type="hangup"), "goodbye",
     "unknown node type 'hangup'"),
    (lambda d: d["nodes"]["main"]["options"].update({"12": "to_billing"}), "main",
     "bad option key '12'"),
    (lambda d: d["nodes"]["main"]["options"].update({"x": "to_billing"}), "main",
     "bad option key 'x'"),
    (lambda d: d["nodes"]["balance"].update(prompt="Balance {balanse}"), "balance",
     "unknown placeholder {balanse}"),
    (lambda d: d["nodes"]["balance"].update(prompt="Balance {balance:.2f}"), "balance",
     "takes no format spec"),
    (lambda d: d["nodes"]["to_repair"].update(skills=[]), "to_repair", "skills"),
    (lambda d: d["nodes"]["to_repair"].update(colour="red"), "to_repair",
     "Extra inputs are not permitted"),
    (lambda d: d["nodes"]["main"].update(timeout_seconds=0), "main", "timeout_seconds"),
    (lambda d: d["nodes"]["survey"]["options"].update({"4": "thrilled"}), "survey", "options"),
    (lambda d: d["nodes"].update(loop_a={"type": "announce", "prompt": "a", "next": "loop_b"},
                                 loop_b={"type": "announce", "prompt": "b", "next": "loop_a"}),
     "loop_a", "loops back to itself without waiting for input: loop_a -> loop_b -> loop_a"),
    (lambda d: d["nodes"]["main"]["options"].update({"8": "survey"}), "main",
     "leads to survey node 'survey'"),
    (lambda d: d.update(survey="main"), "main", "must be a 'survey' node"),
    (lambda d: d.update(fallback="goodbye"), "goodbye", "must be a 'route' node"),
    (lambda d: d["nodes"].update({"9bad": {"type": "release"}}), "9bad", "bad node id"),
])
def test_bad_tree_names_the_node(change: Any, node: str, message: str) -> None:
    with pytest.raises(MenuError) as raised:
        parse_menu(broken(change), "test.yaml")
    assert raised.value.node == node
    assert f"node {node!r}" in str(raised.value)
    assert message in str(raised.value)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(start="nope"), "start refers to unknown node 'nope'"),
    (lambda d: d.pop("version"), "version: Field required"),
    (lambda d: d.update(nodes={}), "'nodes' must be a non-empty mapping"),
])
def test_bad_menu_header(change: Any, message: str) -> None:
    with pytest.raises(MenuError, match=r"menu test\.yaml") as raised:
        parse_menu(broken(change), "test.yaml")
    assert message in str(raised.value)


def test_bundled_menu_is_valid_and_versioned() -> None:
    menu = parse_menu(BASE, "95598.yaml")
    assert (menu.name, menu.version, menu.start, menu.survey) == ("95598", 1, "main", "survey")
    assert menu.defaults == Defaults(timeout_seconds=6, max_attempts=2)


def test_service_defaults_fill_what_the_menu_leaves_out() -> None:
    data = broken(lambda d: d.update(defaults={"max_attempts": 3}))
    menu = parse_menu(data, "t", defaults=Defaults(timeout_seconds=4.5, max_attempts=2))
    assert menu.defaults == Defaults(timeout_seconds=4.5, max_attempts=3)


def test_app_refuses_to_start_with_a_bad_tree(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken(lambda d: d["nodes"]["main"].update(type="maze"))))
    settings = IvrSettings(menu_file=bad, common=CommonSettings())
    with pytest.raises(MenuError, match=r"node 'main': unknown node type 'maze'"):
        create_app(settings)
    with pytest.raises(MenuError, match="cannot be read"):
        load_menus(IvrSettings(menu_file=tmp_path / "missing.yaml", common=CommonSettings()))


def test_menus_route_by_dialled_number(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(broken(lambda d: d.update(name="ins", numbers=["95519"]))))
    catalog = load_menus(IvrSettings(extra_menu_files=[other], common=CommonSettings()))
    assert catalog.for_number("95519").name == "ins"
    assert catalog.for_number("95598").name == "95598"
    assert catalog.for_number("12345").name == "95598"
    clash = tmp_path / "clash.yaml"
    clash.write_text(yaml.safe_dump(broken(lambda d: d.update(name="dup"))))
    with pytest.raises(MenuError, match="already served"):
        load_menus(IvrSettings(extra_menu_files=[clash], common=CommonSettings()))
