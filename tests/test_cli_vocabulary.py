"""One vocabulary across subcommands: every option's default shown in `--help`, `--json [PATH]`,
`--out` for outputs, `--model` (repeatable where several are allowed), underscore spellings."""

import argparse

import pytest

from legato_jax.cli.main import build_parser, dashed, main


def subcommands(parser=None, prefix=()):
    parser = parser or build_parser()
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, prefix + (name,))


COMMANDS = [(" ".join(prefix), p) for prefix, p in subcommands() if prefix]


def options(parser):
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)
            and a.help is not argparse.SUPPRESS]


@pytest.mark.parametrize("name, parser", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_help_describes_every_option_with_its_default(name, parser):
    parser.format_help()
    formatter = parser._get_formatter()
    for action in options(parser):
        assert action.help, (name, action.option_strings, "has no help text")
        if action.default is not None and action.default is not False and not isinstance(action, argparse._VersionAction):
            value = action.default
            value = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            shown = formatter._get_help_string(action) % vars(action)
            assert f"default: {value}" in shown or "default" in action.help, (name, action.option_strings)


def test_one_meaning_per_option_name():
    by_name = {}
    for name, parser in COMMANDS:
        for action in options(parser):
            primary = action.option_strings[0]
            by_name.setdefault(primary, []).append((name, action))
    for json_name, action in by_name["--json"]:  # an optional PATH everywhere
        assert action.nargs == "?" and action.const == "-", json_name
    assert "--output" not in by_name and "--models" not in by_name  # old spellings only as aliases
    for name, action in by_name["--model"]:
        if action.dest == "models":
            assert isinstance(action, argparse._ExtendAction), name
    meanings = {a.dest for _, a in by_name.get("--min-distance", [])}
    assert len(meanings) <= 1, meanings


def test_underscore_spellings_and_aliases():
    assert dashed("--energy_key") == "--energy-key" and dashed("--forces_key=REF_forces") == "--forces-key=REF_forces"
    assert dashed("-n") == "-n" and dashed("a_file.xyz") == "a_file.xyz" and dashed("--") == "--"
    parser = build_parser()
    args = parser.parse_args(["ttf", "--models", "a", "b", "--model", "c", "--sizes", "64"])
    assert args.models == ["a", "b", "c"]
    args = parser.parse_args(["data", "split", "f.extxyz", "--output", "s.json"])
    assert args.output == "s.json"


def test_json_without_a_path_prints_and_with_a_path_writes(tmp_path, capsys):
    import json

    assert main(["model", "info", "allegro-tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] > 0
    assert main(["model", "info", "allegro-tiny", "--json", str(tmp_path / "info.json")]) == 0
    assert "parameters" in capsys.readouterr().out  # the text, and the JSON in the file
    assert json.loads((tmp_path / "info.json").read_text())["parameters"] > 0


def test_json_is_strict_with_nan_as_null():
    import json
    import math

    import numpy as np

    from legato_jax.outputs import json_text

    text = json_text({"a": math.nan, "b": [np.float32(1.5), np.inf], "c": np.arange(2)})
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": [0, 1]}
