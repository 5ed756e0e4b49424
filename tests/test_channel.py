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


def test_an_unreadable_line_takes_no_other_command_with_it(tmp_path):
    good = [json.dumps({"id": f"g{i}", "module": "tune", "op": "disable"}) for i in range(2)]
    bad = [
        json.dumps({"id": "ts", "module": "tune", "op": "disable", "ts": "abc"}),
        '{"id": "big", "module": "opt", "op": "set", "args": {"lr": 1' + "0" * 5000 + "}}",
        "[" * 100_000 + "]" * 100_000,
    ]
    (tmp_path / COMMANDS_FILE).write_text("\n".join([good[0], *bad, good[1]]) + "\n")
    results = CommandReader(tmp_path).poll()
    assert [r.id for r in results if isinstance(r, Command)] == ["g0", "g1"]
    reasons = [r.reason for r in results if isinstance(r, MalformedCommand)]
    assert reasons[0] == "unreadable command: TypeError: 'ts' must be a number of seconds, got 'abc'"
    assert reasons[1].startswith("unreadable command: ValueError: Exceeds the limit")
    assert reasons[2].startswith("unreadable command: RecursionError")


def test_a_send_after_a_fragment_is_not_swallowed_by_it(tmp_path):
    """A writer killed mid-line leaves a fragment; the next send ends it first."""
    (tmp_path / COMMANDS_FILE).write_text('{"id": "cut", "module": "opt", "op": "se')
    reader = CommandReader(tmp_path)
    assert reader.poll() == []  # could still be a write in progress
    sent = send(tmp_path, Command("tune", "disable"))
    fragment, command = reader.poll()
    assert isinstance(fragment, MalformedCommand) and fragment.raw == '{"id": "cut", "module": "opt", "op": "se'
    assert command.id == sent.id
    send(tmp_path, Command("tune", "enable"))  # a terminated log gets no blank line
    assert (tmp_path / COMMANDS_FILE).read_text().count("\n") == 3


def test_a_truncated_log_is_read_again_from_its_start(tmp_path):
    send(tmp_path, Command("tune", "disable"))
    reader = CommandReader(tmp_path)
    reader.poll()
    (tmp_path / COMMANDS_FILE).write_text("")
    later = send(tmp_path, Command("opt", "set", {"lr": 0.002}))
    notice, command = reader.poll()
    assert notice.reason.startswith("the command log changed under the first ") and command.id == later.id
    assert reader.poll() == []
