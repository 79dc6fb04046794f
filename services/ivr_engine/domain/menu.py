"""Menu trees: the YAML model, its validation, and the catalog of loaded menus.

A menu is validated as a whole before the service starts, so a typo in a tree can never
strand a caller mid-call: every error names the node at fault.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Satisfaction = Literal["satisfied", "neutral", "dissatisfied"]

NODE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
DIGIT_KEY = re.compile(r"^[0-9*#]+$")
# What a prompt may say about the caller; anything else is a typo caught at load time.
PLACEHOLDERS = frozenset({"name", "account", "tier", "area", "balance", "restore_eta",
                          "outage_type"})


class MenuError(ValueError):
    def __init__(self, source: str, message: str, node: str | None = None) -> None:
        where = f"menu {source}" + (f": node {node!r}" if node is not None else "")
        super().__init__(f"{where}: {message}")
        self.source = source
        self.node = node


Text = Annotated[str, Field(min_length=1)]


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def references(self) -> Iterator[tuple[str, str]]:
        """(field, node id) for every node this one can lead to."""
        return iter(())

    def prompts(self) -> Iterator[tuple[str, str]]:
        """(field, text) for every prompt this node can play."""
        return iter(())


class AnnounceNode(_Node):
    type: Literal["announce"]
    prompt: Text
    next: str

    def references(self) -> Iterator[tuple[str, str]]:
        yield "next", self.next

    def prompts(self) -> Iterator[tuple[str, str]]:
        yield "prompt", self.prompt


class MenuNode(_Node):
    type: Literal["menu"]
    prompt: Text
    # Played instead of ``prompt`` after an invalid or missing entry.
    retry_prompt: Text | None = None
    options: dict[str, str] = Field(min_length=1)
    max_digits: int = Field(default=1, ge=1, le=32)
    timeout_seconds: float | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, ge=1)
    on_failure: str
    # Where a no-input timeout goes at once, instead of counting as a failed attempt.
    on_no_input: str | None = None

    @model_validator(mode="after")
    def _keys(self) -> MenuNode:
        for key in self.options:
            if not DIGIT_KEY.match(key) or len(key) > self.max_digits:
                raise ValueError(f"bad option key {key!r}: must be 1 to {self.max_digits} "
                                 "of the keys 0-9 * #")
        return self

    def references(self) -> Iterator[tuple[str, str]]:
        for key, target in self.options.items():
            yield f"options[{key!r}]", target
        yield "on_failure", self.on_failure
        if self.on_no_input is not None:
            yield "on_no_input", self.on_no_input

    def prompts(self) -> Iterator[tuple[str, str]]:
        yield "prompt", self.prompt
        if self.retry_prompt is not None:
            yield "retry_prompt", self.retry_prompt


class OutageCheckNode(_Node):
    type: Literal["outage_check"]
    # Played when the caller's area has an active outage.
    prompt: Text
    no_outage_prompt: Text | None = None
    next: str

    def references(self) -> Iterator[tuple[str, str]]:
        yield "next", self.next

    def prompts(self) -> Iterator[tuple[str, str]]:
        yield "prompt", self.prompt
        if self.no_outage_prompt is not None:
            yield "no_outage_prompt", self.no_outage_prompt


class BalanceNode(_Node):
    type: Literal["balance"]
    prompt: Text
    next: str
    # An unknown caller, or one whose balance workorder does not give.
    on_unknown: str

    def references(self) -> Iterator[tuple[str, str]]:
        yield "next", self.next
        yield "on_unknown", self.on_unknown

    def prompts(self) -> Iterator[tuple[str, str]]:
        yield "prompt", self.prompt


class RouteNode(_Node):
    type: Literal["route"]
    queue: Text
    skills: list[Text] = Field(min_length=1)
    priority: int = Field(default=0, ge=0)
    # Per customer tier; overrides the menu-wide ``tier_priority`` (the VIP green channel).
    tier_priority: dict[str, int] = {}
    prompt: Text | None = None

    def prompts(self) -> Iterator[tuple[str, str]]:
        if self.prompt is not None:
            yield "prompt", self.prompt


class ReleaseNode(_Node):
    type: Literal["release"]
    prompt: Text | None = None
    reason: Text = "self_served"

    def prompts(self) -> Iterator[tuple[str, str]]:
        if self.prompt is not None:
            yield "prompt", self.prompt


class SurveyNode(_Node):
    type: Literal["survey"]
    prompt: Text
    retry_prompt: Text | None = None
    options: dict[str, Satisfaction] = Field(min_length=1)
    timeout_seconds: float | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, ge=1)
    thanks_prompt: Text | None = None

    max_digits: Literal[1] = 1

    @model_validator(mode="after")
    def _keys(self) -> SurveyNode:
        for key in self.options:
            if not DIGIT_KEY.match(key) or len(key) != 1:
                raise ValueError(f"bad option key {key!r}: must be one of the keys 0-9 * #")
        return self

    def prompts(self) -> Iterator[tuple[str, str]]:
        yield "prompt", self.prompt
        if self.retry_prompt is not None:
            yield "retry_prompt", self.retry_prompt
        if self.thanks_prompt is not None:
            yield "thanks_prompt", self.thanks_prompt


Node = AnnounceNode | MenuNode | OutageCheckNode | BalanceNode | RouteNode | ReleaseNode | SurveyNode
CollectingNode = MenuNode | SurveyNode

NODE_TYPES: dict[str, type[_Node]] = {
    "announce": AnnounceNode, "menu": MenuNode, "outage_check": OutageCheckNode,
    "balance": BalanceNode, "route": RouteNode, "release": ReleaseNode, "survey": SurveyNode,
}


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    timeout_seconds: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=2, ge=1)


class _Header(BaseModel):
    """The menu's own fields, validated before its nodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Text
    version: int = Field(ge=1)
    description: str = ""
    # Dialled numbers this menu answers; the default menu answers every other number too.
    numbers: list[str] = []
    start: str
    # Entry node of outbound satisfaction surveys (a ``survey`` node).
    survey: str | None = None
    # Where a session goes if the IVR itself cannot continue (menu changed under it).
    fallback: str
    tier_priority: dict[str, int] = {}
    defaults: Defaults | None = None


class Menu(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: int
    description: str = ""
    numbers: list[str] = []
    start: str
    survey: str | None = None
    fallback: str
    tier_priority: dict[str, int] = {}
    defaults: Defaults
    nodes: dict[str, Node]

    def timeout_for(self, node: CollectingNode) -> float:
        return node.timeout_seconds or self.defaults.timeout_seconds

    def attempts_for(self, node: CollectingNode) -> int:
        return node.max_attempts or self.defaults.max_attempts


def _first_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        loc = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"])
        parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts)


def parse_menu(data: Any, source: str, *, defaults: Defaults | None = None) -> Menu:
    """Validate a menu tree (the parsed YAML). Raises :class:`MenuError` naming the node."""
    if not isinstance(data, Mapping):
        raise MenuError(source, "the document must be a mapping")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, Mapping) or not raw_nodes:
        raise MenuError(source, "'nodes' must be a non-empty mapping of node id to node")
    try:
        header = _Header.model_validate({k: v for k, v in data.items() if k != "nodes"})
    except ValidationError as error:
        raise MenuError(source, _first_error(error)) from None

    nodes: dict[str, Node] = {}
    for node_id, raw in raw_nodes.items():
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            raise MenuError(source, "bad node id: use letters, digits, '_' or '-', "
                                    "starting with a letter", str(node_id))
        if not isinstance(raw, Mapping):
            raise MenuError(source, "a node must be a mapping", node_id)
        kind = raw.get("type")
        model = NODE_TYPES.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise MenuError(source, f"unknown node type {kind!r} (known: "
                                    f"{', '.join(sorted(NODE_TYPES))})", node_id)
        try:
            nodes[node_id] = model.model_validate(dict(raw))  # type: ignore[assignment]
        except ValidationError as error:
            raise MenuError(source, _first_error(error), node_id) from None

    for node_id, node in nodes.items():
        for field, target in node.references():
            if target not in nodes:
                raise MenuError(source, f"{field} refers to unknown node {target!r}", node_id)
            if isinstance(nodes[target], SurveyNode):
                raise MenuError(source, f"{field} leads to survey node {target!r}; survey "
                                        "nodes are entered only as the menu's 'survey'", node_id)
        for field, text in node.prompts():
            _check_placeholders(source, node_id, field, text)

    for field in ("start", "survey", "fallback"):
        target = getattr(header, field)
        if target is not None and target not in nodes:
            raise MenuError(source, f"{field} refers to unknown node {target!r}")
    if isinstance(nodes[header.start], SurveyNode):
        raise MenuError(source, f"start node {header.start!r} must not be a survey node")
    if header.survey is not None and not isinstance(nodes[header.survey], SurveyNode):
        raise MenuError(source, "the survey entry must be a 'survey' node", header.survey)
    if not isinstance(nodes[header.fallback], RouteNode):
        raise MenuError(source, "the fallback must be a 'route' node", header.fallback)
    _check_no_silent_loop(source, nodes)

    # The menu's own defaults win field by field over the service's.
    merged = (defaults or Defaults()).model_copy(
        update=header.defaults.model_dump(exclude_unset=True) if header.defaults else {})
    return Menu(name=header.name, version=header.version, description=header.description,
                numbers=header.numbers, start=header.start, survey=header.survey,
                fallback=header.fallback, tier_priority=header.tier_priority,
                defaults=merged, nodes=nodes)


def parse_menu_yaml(text: str, source: str, *, defaults: Defaults | None = None) -> Menu:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MenuError(source, f"not valid YAML: {error}") from None
    return parse_menu(data, source, defaults=defaults)


def _check_placeholders(source: str, node_id: str, field: str, text: str) -> None:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise MenuError(source, f"{field}: bad placeholder syntax ({error}); "
                                "write a literal brace as {{ or }}", node_id) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise MenuError(source, f"{field} uses unknown placeholder {{{name}}} (known: "
                                    f"{', '.join(sorted(PLACEHOLDERS))})", node_id)
        if spec or conversion:
            raise MenuError(source, f"{field}: placeholder {{{name}}} takes no format spec",
                            node_id)


def _check_no_silent_loop(source: str, nodes: dict[str, Node]) -> None:
    """Nodes that pass straight through (announce, outage_check, balance) must not form a
    cycle: the interpreter would spin without ever waiting for the caller."""
    passing = {node_id: [t for _, t in node.references()] for node_id, node in nodes.items()
               if isinstance(node, AnnounceNode | OutageCheckNode | BalanceNode)}
    done: set[str] = set()

    def visit(node_id: str, trail: list[str]) -> None:
        if node_id in trail:
            cycle = [*trail[trail.index(node_id):], node_id]
            raise MenuError(source, "loops back to itself without waiting for input: "
                                    + " -> ".join(cycle), node_id)
        if node_id in done or node_id not in passing:
            return
        for target in passing[node_id]:
            visit(target, [*trail, node_id])
        done.add(node_id)

    for node_id in passing:
        visit(node_id, [])


class MenuCatalog:
    """The loaded menus: one default, others chosen by the dialled number."""

    def __init__(self, menus: list[Menu]) -> None:
        if not menus:
            raise ValueError("at least one menu is needed")
        self.default = menus[0]
        self.by_name: dict[str, Menu] = {}
        self._by_number: dict[str, Menu] = {}
        for menu in menus:
            if menu.name in self.by_name:
                raise MenuError(menu.name, "loaded twice (menu names must be unique)")
            self.by_name[menu.name] = menu
            for number in menu.numbers:
                if number in self._by_number:
                    raise MenuError(menu.name, f"number {number!r} is already served by menu "
                                               f"{self._by_number[number].name!r}")
                self._by_number[number] = menu

    def for_number(self, dialled: str) -> Menu:
        return self._by_number.get(dialled, self.default)

    def __iter__(self) -> Iterator[Menu]:
        return iter(self.by_name.values())
