"""`facelab train-enhancer` and the `facelab faceset` commands take their flags, checks and docs tables from their
option declarations (facelab.enhance.options, facelab.stages.faceset.OPTIONS): a declared option missing anywhere,
or a default that drifted, fails here."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from facelab.enhance import options as enhance_options
from facelab.errors import SettingsError
from facelab.options import Option, default_text, markdown_table, schema
from facelab.stages import faceset


def _commands():
    from facelab.cli import app

    return get_command(app).commands


def _spelled(param) -> set[str]:
    return set(param.opts) | set(param.secondary_opts)


# --- train-enhancer -------------------------------------------------------------------------------


def test_every_declared_enhancer_option_is_a_flag_of_train_enhancer_with_its_declared_spellings():
    params = {p.name: p for p in _commands()["train-enhancer"].params}
    for o in enhance_options.CLI_OPTIONS:
        assert o.name in params, f"--{o.name} missing from `facelab train-enhancer`"
        assert all(set(f.split("/")) <= _spelled(params[o.name]) for f in o.cli_flags), (o.name, o.cli_flags)
        assert params[o.name].help == o.help
    assert set(params) == {o.name for o in enhance_options.CLI_OPTIONS}
    # the one exception: `model` is declared (a settings field) but Python only, not a flag (srnet is the only enhancer)
    assert {o.name for o in enhance_options.OPTIONS} - set(params) == {"model"}


def test_enhance_settings_fields_are_the_declared_options_with_their_defaults():
    from facelab.stages.enhance import ARCHITECTURE, DEFAULTS, OPTIONS, EnhanceSettings

    assert OPTIONS is enhance_options.OPTIONS
    assert {f.name: f.default for f in dataclasses.fields(EnhanceSettings)} == {o.name: o.default for o in OPTIONS}
    assert ARCHITECTURE == ("scale", "channels", "blocks") == tuple(o.name for o in OPTIONS if o.fixed)
    assert {o.name for o in OPTIONS if o.saved} == {"input_size", "batch_size"}
    # a None-means-saved option: its default for a new enhancer is in DEFAULTS, and the docs show that value
    unset = {o.name for o in OPTIONS if o.default is None and (o.fixed or o.saved)}
    assert unset == set(DEFAULTS)
    for name in unset:
        assert default_text(next(o for o in OPTIONS if o.name == name)) == str(DEFAULTS[name])


def _out_of_range(o: Option) -> list:
    if o.choices:
        return [3 if o.kind is int else "no-such-value"]
    bad = [o.lo if o.lo_open else o.lo - 1]
    if o.hi is not None and o.hi < 2**62:
        bad.append(o.hi + 1)
    if o.multiple_of:
        bad.append(o.lo + 1)
    return bad


@pytest.mark.parametrize("option", [o for o in enhance_options.OPTIONS if o.lo is not None or o.choices],
                         ids=lambda o: o.name)
def test_enhance_settings_refuse_a_value_out_of_the_declared_range_naming_the_key(option: Option):
    from facelab.stages.enhance import EnhanceSettings

    for bad in _out_of_range(option):
        with pytest.raises(SettingsError, match=f"^{option.name}: "):
            EnhanceSettings(**{option.name: bad})
    with pytest.raises(SettingsError, match=f"^{option.name}: "):
        EnhanceSettings(**{option.name: True})  # a bool is not a number


def test_the_cli_refuses_an_out_of_range_enhancer_flag_naming_the_key(tmp_path):
    from facelab.cli import app

    r = CliRunner().invoke(app, ["-w", str(tmp_path / "ws"), "train-enhancer", "--scale", "3"])
    assert isinstance(r.exception, SettingsError) and r.exception.message.startswith("scale: 3 is not one of 2, 4")
    r = CliRunner().invoke(app, ["-w", str(tmp_path / "ws"), "train-enhancer", "--save-every", "0"])
    assert isinstance(r.exception, SettingsError) and r.exception.message.startswith("save_every_minutes: ")
    assert not (tmp_path / "ws").exists()


def test_an_int_option_with_choices():
    o = Option("scale", int, None, "x", choices=(2, 4))
    assert o.check(None) is None and o.check(4) == 4
    for bad in (3, 2.0, True, "2"):
        with pytest.raises(SettingsError, match="scale: .* is not one of 2, 4"):
            o.check(bad)
    assert o.range_text() == "one of 2, 4" and o.parse("2") == 2
    with pytest.raises(ValueError):
        o.parse("3")
    assert schema([o])["properties"]["scale"]["enum"] == [2, 4]
    assert r"`--scale 2\|4`" in markdown_table([o])


# --- faceset --------------------------------------------------------------------------------------

ARGUMENTS = {"export-dfl": {"side", "folder"}, "to-jpg": {"folder"}, "import-dfl": {"folder"}, "coverage": set()}
"""The positional arguments of each faceset command (the rest take the side)."""


def test_every_declared_faceset_option_is_a_flag_of_its_subcommand_with_its_declared_spellings():
    group = _commands()["faceset"]
    assert list(group.commands) == list(faceset.OPTIONS)  # every subcommand is declared, none more
    for name, options in faceset.OPTIONS.items():
        params = {p.name: p for p in group.commands[name].params}
        for o in options:
            assert o.name in params, f"--{o.name} missing from `facelab faceset {name}`"
            assert all(set(f.split("/")) <= _spelled(params[o.name]) for f in o.cli_flags), (name, o.name)
            assert params[o.name].help == o.help and params[o.name].required == o.required
        assert set(params) == {o.name for o in options} | ARGUMENTS.get(name, {"side"}), name


def test_the_shared_quality_is_one_declaration_and_the_enum_flags_list_the_declared_choices():
    from facelab.cli import FaceTypeOpt, Side

    quality = [o for options in faceset.OPTIONS.values() for o in options if o.name == "quality"]
    assert len(quality) == 3 and all(dataclasses.replace(o, help="", doc="") == dataclasses.replace(
        faceset.QUALITY, help="", doc="") for o in quality)
    resize = {o.name: o for o in faceset.OPTIONS["resize"]}
    assert tuple(t.value for t in FaceTypeOpt) == resize["face_type"].choices
    assert tuple(s.value for s in Side) == faceset.OPTIONS["import-dfl"][0].choices
    assert resize["size"].required and default_text(resize["size"]) == "required"


def test_the_stage_functions_default_to_the_declared_defaults():
    parameter = {"quality": "jpeg_quality", "to": "side"}  # where the Python keyword differs from the option's name
    for name, options in faceset.OPTIONS.items():
        signature = inspect.signature(getattr(faceset, name.replace("-", "_"))).parameters
        for o in options:
            key = o.name if o.name in signature else parameter[o.name]
            expected = inspect.Parameter.empty if o.required else o.default
            assert signature[key].default == expected, (name, o.name)


def test_resize_without_size_is_a_usage_error(tmp_path):
    from facelab.cli import app

    r = CliRunner().invoke(app, ["-w", str(tmp_path / "ws"), "faceset", "resize", "src"])
    assert r.exit_code == 2 and "--size" in r.output


def _files(root) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("command", [["resize", "src", "--size", "64"], ["to-jpg", "src"], ["export-dfl", "src", "OUT"]],
                         ids=lambda c: c[0])
@pytest.mark.parametrize("quality", ["0", "101"])
def test_a_faceset_quality_out_of_range_is_refused_before_any_file_changes(ws, tmp_path, command, quality):
    from facelab.cli import app

    out = tmp_path / "dfl"
    before = _files(tmp_path)
    args = [str(out) if a == "OUT" else a for a in command]
    r = CliRunner().invoke(app, ["-w", str(ws.root), "faceset", *args, "--quality", quality])
    assert isinstance(r.exception, SettingsError), r.output
    assert r.exception.message == f"quality: {quality} is out of range" and "1..100" in r.exception.hint
    assert _files(tmp_path) == before and not out.exists()


def test_the_faceset_api_checks_the_declared_options_too(ws):
    with pytest.raises(SettingsError, match="^size: 4 is out of range"):
        faceset.resize(ws, "src", 4)
    with pytest.raises(SettingsError, match="^face_type: 'neck' is not one of"):
        faceset.resize(ws, "src", 64, "neck")
    with pytest.raises(SettingsError, match="^quality: 0 "):
        faceset.export_dfl(ws, "src", ws.root / "out", 0)
