"""The hotline-trace/1 parser: records, line-numbered errors, tolerance."""

from __future__ import annotations

import json

from services.softswitch.trace import Call, parse_trace

HEADER = json.dumps({"kind": "header", "format": "hotline-trace/1", "name": "t",
                     "start": "2026-07-15T08:00:00+08:00"})


def test_design_example_parses() -> None:
    text = "\n".join([
        HEADER,
        '{"kind":"customer","ani":"+8613800000001","account":"3100012345","name":"...","tier":"vip","area":"A-017","flags":["elderly_alone"]}',
        '{"kind":"agent","id":"A001","team":"T1","skills":{"repair":8,"billing":5},"login":0,"logout":28800,"answer_after":2.0,"wrapup":10}',
        '{"kind":"outage","at":600,"area":"A-017","type":"fault","restore_eta":7800}',
        '{"kind":"call","id":"C000001","at":12.5,"from":"+8613800000001","to":"95598","dtmf":["1"],"think":1.5,"patience":120,"talk":185,"disposition":{"workorder":{"type":"repair","area":"A-017"},"callback":{"answer_on_attempt":2,"satisfaction":"satisfied"}}}',
    ])
    trace, errors = parse_trace(text)
    assert errors == []
    assert trace.header is not None and trace.header.name == "t"
    assert trace.header.start is not None and trace.header.start.utcoffset() is not None
    call = trace.calls[0]
    assert call.from_ == "+8613800000001" and call.talk == 185
    assert call.disposition and call.disposition.callback
    assert call.disposition.callback.answer_on_attempt == 2
    assert trace.agents[0].skills == {"repair": 8, "billing": 5}
    assert trace.customers[0].tier == "vip"
    assert trace.outages[0].restore_eta == 7800


def test_errors_are_numbered_and_skipped_and_unknowns_ignored() -> None:
    lines = [
        HEADER,                                                            # 1
        "",                                                                # 2 blank: skipped
        '{"kind":"call","id":"C1","at":1,"from":"+861","future":"field"}',  # 3 ok
        '{"kind":"call","id":"C2","at":-1,"from":"+861"}',                 # 4 negative time
        '{"kind":"call","id":"C3","at":"5","from":"+861"}',                # 5 wrong type
        '{"kind":"call","id":"C4","from":"+861"}',                         # 6 missing at
        "{bad json",                                                       # 7
        '{"kind":"weather","rain":true}',                                  # 8 unknown kind
        "[1, 2]",                                                          # 9 not an object
        '{"at": 3}',                                                       # 10 no kind
        '{"kind":"call","id":"C1","at":2,"from":"+862"}',                  # 11 duplicate id
        '{"kind":"agent","id":"A1","skills":{"repair":1},"login":10,"logout":5}',  # 12
        '{"kind":"call","id":"C5","at":0.5,"from":"+863","dtmf":["1",null,""],"patience":null}',
        '{"kind":"call","id":"C6","at":1,"from":"+86","disposition":{"workorder":{"type":"bogus"}}}',
        "[" * 100_000 + "]" * 100_000,                                    # 15 nested deep
        '{"kind":"customer","account":"31","ani":"+861","name":"a\\u0000b"}',  # 16 NUL
        '{"kind":"call","id":"C7","at":NaN,"from":"+861"}',                # 17 not a number
    ]
    trace, errors = parse_trace("\n".join(lines))
    assert [e.line for e in errors] == [4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17]
    by_line = {e.line: e for e in errors}
    assert "at" in by_line[4].error and by_line[4].kind == "call"
    assert "at" in by_line[5].error
    assert "at" in by_line[6].error and "Field required" in by_line[6].error
    assert "bad JSON" in by_line[7].error
    assert "duplicate" in by_line[11].error
    assert "logout" in by_line[12].error
    assert "disposition.workorder.type" in by_line[14].error
    assert "nested too deeply" in by_line[15].error
    assert by_line[16].error.startswith("name: NUL")
    assert by_line[17].error.startswith("at: NaN")
    assert trace.ignored == 1
    assert [c.id for c in trace.calls] == ["C5", "C1"]  # sorted by time
    c5 = trace.calls[0]
    assert c5.dtmf == ["1", None, ""] and c5.patience is None


def test_header_rules() -> None:
    trace, errors = parse_trace('{"kind":"header","format":"hotline-trace/2"}\n')
    assert trace.header is None and "unsupported format" in errors[0].error
    trace, errors = parse_trace(HEADER + "\n" + HEADER + "\n")
    assert trace.header is not None and errors[0].line == 2


def test_defaults() -> None:
    trace, errors = parse_trace(HEADER + '\n{"kind":"call","id":"C","at":0,"from":"+1",'
                                '"disposition":{"callback":{}}}\n')
    assert errors == []
    call: Call = trace.calls[0]
    assert call.to == "95598" and call.dtmf == [] and call.patience is None
    assert call.disposition and call.disposition.callback
    assert call.disposition.callback.answer_on_attempt == 1
    assert call.disposition.callback.satisfaction == "satisfied"
