"""docs/commands.md is generated from the parser (imgbench.cli.reference) and kept current."""

import re

from imgbench.cli import overview, reference
from imgbench.core import config
from imgbench.core.errors import EXIT_CODES
from tests.helpers import ROOT

COMMITTED = ROOT / "docs" / "commands.md"


def test_the_committed_reference_matches_the_parser():
    text = reference.render()
    assert COMMITTED.is_file() and COMMITTED.read_text() == text, (
        f"{COMMITTED} does not match the parser: regenerate it with `{reference.REGENERATE}` "
        "and commit it")


def test_the_reference_has_every_command_its_options_and_the_exit_codes():
    text = reference.render()
    sections = re.findall(r"^### imgbench (\S+)$", text, re.M)
    assert sections == [n for _, names in overview.GROUPS for n in names]
    for code, what, _ in EXIT_CODES:
        assert f"| {code} | {what} | " in text
    compare = text.split("### imgbench compare", 1)[1].split("\n### ", 1)[0]
    assert "usage: imgbench compare [-h]" in compare
    effect = f"{100 * config.MIN_EFFECT:g}"
    assert f"| `--min-effect PERCENT` | `{effect}` | smallest slowdown" in compare
    assert "| `candidate` |  | the run to judge (pytest-benchmark JSON) |" in compare


def test_check_fails_on_a_stale_file_naming_the_fix(tmp_path, capsys):
    stale = tmp_path / "commands.md"
    stale.write_text("# old\n")
    assert reference.main(["--check", str(stale)]) == 1
    assert capsys.readouterr().err == (
        f"{stale} does not match the parser: regenerate it with "
        "`python -m imgbench.cli.reference`\n")
    assert reference.main([str(stale)]) == 0
    assert reference.main(["--check", str(stale)]) == 0
    assert stale.read_text() == reference.render()
