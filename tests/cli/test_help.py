"""`imgbench --help` lists every command once, in its group, the groups in workflow order, and the
one exit-code scheme."""

import re

import pytest

from imgbench import cli
from imgbench.cli import overview
from imgbench.core.errors import EXIT_CODES


def top_help(capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def parser_commands() -> dict[str, str]:
    sub = next(a for a in cli.build()._actions if a.dest == "command")
    return overview.commands(sub)


def test_every_command_is_in_exactly_one_group():
    grouped = [name for _, names in overview.GROUPS for name in names]
    assert sorted(grouped) == sorted(parser_commands()) and len(set(grouped)) == len(grouped)


def test_help_lists_the_groups_in_workflow_order_each_command_once(capsys, monkeypatch):
    text = top_help(capsys, monkeypatch)
    assert text.startswith("usage: imgbench [-h] COMMAND ...\n")
    headers = re.findall(r"^  ([a-z][a-z ]*):$", text, re.M)
    assert headers == ["set up", "measure", "judge", "investigate", "show"]
    listed = re.findall(r"^    ([a-z-]+)  ", text, re.M)
    assert listed == [name for _, names in overview.GROUPS for name in names]
    # argparse's own list (in the order the modules add them) is gone
    assert "positional arguments" not in text and "{env," not in text
    assert re.search(r"^    gate-check  measure the real gate: .* 95% intervals", text, re.M | re.S)
    flat = " ".join(text.split())
    assert ", ".join(f"{c} {what}" for c, what, _ in EXIT_CODES) in flat


def test_a_listed_line_fits_the_width():
    text = overview.listing(parser_commands(), columns=72)
    assert max(map(len, text.splitlines())) <= 72


@pytest.mark.parametrize("name", sorted(parser_commands()))
def test_each_commands_usage_names_it_alone(capsys, name):
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    assert capsys.readouterr().out.startswith(f"usage: imgbench {name} [-h]")
