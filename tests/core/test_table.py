"""The one table renderer (imgbench.table): aligned text for a terminal, markdown for a job summary,
and times in a readable unit."""

import pytest

from imgbench.core import table

HEAD = ["case", "median", "verdict"]
ROWS = [["test_forward[resnet18-cpu-bs128]", "1.234 s", "regression"], ["mlp", "5.000 ms", "-"]]


def test_text_columns_are_aligned_without_trailing_spaces():
    assert table.render(HEAD, ROWS).splitlines() == [
        "case                              median    verdict",
        "test_forward[resnet18-cpu-bs128]  1.234 s   regression",
        "mlp                               5.000 ms  -",
    ]


def test_markdown_is_a_table_of_the_same_cells():
    assert table.render(HEAD, ROWS, markdown=True).splitlines() == [
        "| case | median | verdict |",
        "|---|---|---|",
        "| test_forward[resnet18-cpu-bs128] | 1.234 s | regression |",
        "| mlp | 5.000 ms | - |",
    ]


def test_a_table_without_rows_is_its_head():
    assert table.render(HEAD, []) == "case  median  verdict"


def test_a_row_of_another_length_is_refused():
    with pytest.raises(ValueError):
        table.render(HEAD, [["only", "two"]])


@pytest.mark.parametrize("seconds, text", [
    (12.5, "12.500 s"), (1.0, "1.000 s"), (0.999, "999.000 ms"), (1e-3, "1.000 ms"),
    (5.678e-3, "5.678 ms"), (1.2e-5, "12.000 us"), (1e-6, "1.000 us"), (5e-7, "500 ns"),
])
def test_seconds_in_the_unit_that_keeps_three_decimals_readable(seconds, text):
    assert table.seconds(seconds) == text


def columns(line: str) -> list[str]:
    """A markdown row's cells as GitHub's table extension splits them: at each '|' that no
    backslash escapes (an escaped backslash escapes nothing)."""
    cells, text, i = [], "", 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            text, i = text + line[i:i + 2], i + 2
        elif line[i] == "|":
            cells, text, i = [*cells, text.strip()], "", i + 1
        else:
            text, i = text + line[i], i + 1
    return cells[1:]  # before the leading '|': nothing


@pytest.mark.parametrize("name", ["test_x[a|b]", "test_x[a\\|b]", "test_x[a\\\\|b|c]", "|", "\\"])
def test_a_pipe_in_a_cell_cannot_shift_a_markdown_row(name):
    """The review's finding: a '|' in a case name moved 'regression' out of the verdict column, so
    that the row read 'unchanged'."""
    row = table.render(HEAD, [[name, "1.234 s", "regression"]], markdown=True).splitlines()[2]
    assert len(columns(row)) == 3 and columns(row)[1:] == ["1.234 s", "regression"]
    assert columns(row)[0].replace("\\\\", "\x00").replace("\\|", "|").replace("\x00", "\\") == name


@pytest.mark.parametrize("markdown", [False, True])
@pytest.mark.parametrize("name", ["a\nb", "a\r\nb", "a\rb", "a\u2028b"])
def test_a_line_break_in_a_cell_never_starts_a_row(name, markdown):
    lines = table.render(HEAD, [[name, "1.234 s", "regression"]], markdown).splitlines()
    assert len(lines) == (3 if markdown else 2) and lines[-1].rstrip(" |").endswith("regression")
    assert "a b" in lines[-1]
