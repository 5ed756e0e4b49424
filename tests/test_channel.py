"""The command log: locked appends, offset-tracking reads, unterminated lines, malformed lines."""

from __future__ import annotations

import json

from hotcb.channel import COMMANDS_FILE, Command, CommandReader, MalformedCommand, send


def test_reader_sees_each_command_once(tmp_path):
    reader = CommandReader(tmp_path)
    assert reader.poll() == []
    send(tmp_path, Command("tune", "enable", {"mode": "observe"}))
    send(tmp_path, Command("tune", "disable"))
    first = reader.poll()
    assert [(c.module, c.op) for c in first] == [("tune", "enable"), ("tune", "disable")]
    assert reader.poll() == []
    send(tmp_path, Command("tune", "set", {"acceptance.epsilon": 0.002}))
    (again,) = reader.poll()
    assert again.args == {"acceptance.epsilon": 0.002}


def test_unterminated_last_line_waits_for_its_newline(tmp_path):
    path = tmp_path / COMMANDS_FILE
    line = json.dumps({"id": "a1", "module": "tune", "op": "disable", "args": {}})
    path.write_text(line[:10])
    reader = CommandReader(tmp_path)
    assert reader.poll() == []
    assert reader.offset == 0
    path.write_text(line + "\n")
    (cmd,) = reader.poll()
    assert cmd.id == "a1" and reader.offset == len(line) + 1


def test_offset_resume_skips_consumed_commands(tmp_path):
    send(tmp_path, Command("tune", "enable"))
    reader = CommandReader(tmp_path)
    reader.poll()
    send(tmp_path, Command("tune", "disable"))
    resumed = CommandReader(tmp_path, offset=reader.offset)
    assert [c.op for c in resumed.poll()] == ["disable"]


def test_malformed_lines_are_returned_not_dropped(tmp_path):
    (tmp_path / COMMANDS_FILE).write_text('not json\n["list"]\n{"op": "x"}\n')
    results = CommandReader(tmp_path).poll()
    assert all(isinstance(r, MalformedCommand) for r in results)
    assert [r.reason for r in results] == [
        "not valid JSON: Expecting value",
        "a command must be a JSON object",
        "missing string field(s): module",
    ]
