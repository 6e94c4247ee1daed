"""The one table of run and axis options (imgbench.options): parsing and checking the values, the
pytest plugin and the `imgbench` command offering the same options from it, and settings turned back
into pytest arguments."""

import re

import pytest

from imgbench.bench.settings import from_options, model_names
from imgbench.cli import build
from imgbench.core import config, options
from imgbench.core.options import AxisError
from imgbench.workloads import models

CLI_ONLY = {  # each command's own options beside the table's
    "run": {"--benches", "--storage", "--json", "--full-table"},
    "baseline": {"--benches", "--baselines", "--allow-failed"},
    "ab": {"--benches", "--base", "--base-python", "--alpha", "--min-effect", "--seed", "--budget",
           "--markdown", "--regressions", "--process-sd", "--process-from", "--rounds",
           "--removed", "--json"},
    "bisect": {"--benches", "--alpha", "--min-effect", "--budget", "--seed", "--process-sd",
               "--process-from", "--regressions", "--json"},
    "explain": {"--benches", "--base", "--profiles", "--out", "--pairs", "--warmup",
                "--max-seconds", "--markdown"},
    "gate-check": {"--benches", "--base", "--jobs", "--effects", "--alpha", "--min-effect",
                   "--seed", "--budget", "--hog", "--markdown", "--process-sd", "--process-from",
                   "--rounds", "--results"},
}


def test_batch_sizes_parse_in_order_without_repeats():
    assert options.batch_sizes("32,128") == [32, 128]
    assert options.batch_sizes(" 8, 4 ,8") == [8, 4]


@pytest.mark.parametrize("spec, message", [
    ("0", "batch size 0 is not positive"),
    ("-1", "batch size -1 is not positive"),
    ("x", "batch size 'x' is not an integer"),
    ("", "empty batch size in ''"),
])
def test_bad_batch_sizes(spec, message):
    with pytest.raises(AxisError, match=message):
        options.batch_sizes(spec)


def test_models_all_and_lists():
    assert model_names("all") == models.names()
    assert model_names("mlp,kerascnn,mlp") == ["mlp", "kerascnn"]
    assert model_names("mlp,all") == ["mlp"] + [n for n in models.names() if n != "mlp"]
    with pytest.raises(AxisError, match=r"unknown model 'vit' \(valid: all, kerascnn, mlp"):
        model_names("vit")


def test_profiles_are_looked_up_by_name():
    for name, profile in config.PROFILES.items():
        assert options.profile(name) is profile
    with pytest.raises(AxisError, match=r"unknown profile 'fast' \(valid: quick, full\)"):
        options.profile("fast")


def test_axis_lists_keep_order_drop_repeats_and_name_bad_values():
    assert options.choices("precision", "bf16, fp32,bf16", config.PRECISIONS) == ["bf16", "fp32"]
    with pytest.raises(AxisError,
                       match=r"^unknown precision 'fp64' \(valid: fp32, tf32, bf16, fp16\)$"):
        options.choices("precision", "fp32,fp64", config.PRECISIONS)
    with pytest.raises(AxisError, match=r"^empty compile in 'on,' \(valid: off, on\)$"):
        options.choices("compile", "on,", config.COMPILE)


def given(**values):
    """opt() of options.settings: these values, every other option not given."""
    return lambda dest: values.get(dest, options.DEFAULTS[dest])


def test_a_data_root_needs_a_real_dataset():
    with pytest.raises(AxisError, match=r"^--data-root '/data' needs a real dataset "
                                        r"\(valid: --dataset cifar10, "):
        from_options(given(data_root="/data"))


def test_threads_default_to_every_usable_core():
    from imgbench.hw import devices

    assert from_options(given()).threads == devices.usable_cores()
    assert from_options(given(threads="3")).threads == 3


def pytest_help(pytester) -> str:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    return result.stdout.str()


def cli_help(capsys, command="run") -> str:
    capsys.readouterr()  # whatever was printed before
    with pytest.raises(SystemExit):
        build().parse_args([command, "--help"])
    return capsys.readouterr().out


def flags(help_text: str, section: str | None = None) -> set[str]:
    """The long options of a --help output (of one section: pytest groups its plugins' options)."""
    if section:
        help_text = help_text.split(f"\n{section}", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^  (--[a-z][a-z-]*)", help_text, re.M))


def squeezed(text: str) -> str:
    """Text without its whitespace: help wraps lines differently at different widths."""
    return "".join(text.split())


@pytest.mark.parametrize("command", CLI_ONLY)
def test_plugin_and_command_offer_the_same_options_with_the_same_help(pytester, capsys, command):
    in_pytest = flags(pytest_help(pytester), "imgbench: image-classifier benchmarks:")
    in_cli = cli_help(capsys, command)
    assert in_pytest == {o.flag for o in options.OPTIONS}
    assert in_pytest <= flags(in_cli) and flags(in_cli) - in_pytest == CLI_ONLY[command]
    for o in options.OPTIONS:
        assert squeezed(o.help_text) in squeezed(in_cli), o.flag


def test_plugin_and_command_have_the_same_defaults(pytester):
    in_pytest = pytester.parseconfig()
    in_cli = build().parse_args(["run"])
    for o in options.OPTIONS:
        assert in_pytest.getoption(o.dest) == getattr(in_cli, o.dest) == o.default, o.flag


def test_an_option_added_to_the_table_reaches_both(pytester, capsys, monkeypatch):
    extra = options.Option("resolution", "64", "image side in pixels")
    monkeypatch.setattr(options, "OPTIONS", (*options.OPTIONS, extra))
    assert "--resolution" in flags(pytest_help(pytester), "imgbench: image-classifier benchmarks:")
    assert "--resolution" in flags(cli_help(capsys))
    assert build().parse_args(["run"]).resolution == "64"
    assert pytester.parseconfig("--resolution", "96").getoption("resolution") == "96"


VALUES = {"device": "cpu", "model": "mlp,kerascnn", "batch_size": "8, 4", "profile": "full",
          "threads": "1", "optimizer": "sgd", "dataset": "synthetic", "data_root": None,
          "precision": "fp32,bf16", "memory_format": "channels_last", "compile": "off",
          "cases": "gate"}


def test_pytest_args_round_trip_through_settings(pytester):
    args = options.pytest_args(VALUES)
    assert "--data-root" not in args and args[args.index("--batch-size") + 1] == "8, 4"
    expected = from_options(VALUES.get)
    assert (expected.models, expected.batch_sizes, expected.precisions, expected.threads) == (
        ["mlp", "kerascnn"], [8, 4], ["fp32", "bf16"], 1)
    assert expected.profile is config.PROFILES["full"]
    assert from_options(pytester.parseconfig(*args).getoption) == expected
    cli = build().parse_args(["run", *args])
    assert from_options(lambda dest: getattr(cli, dest)) == expected


def test_only_options_given_become_pytest_args():
    assert options.pytest_args({}) == []
    assert options.pytest_args({"model": "mlp", "device": None, "threads": 2}) == [
        "--model", "mlp", "--threads", "2"]
