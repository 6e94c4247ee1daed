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
