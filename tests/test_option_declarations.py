"""Each option is declared once (facelab.train.options): the CLI, the settings, the TOML keys, the first-run
questions and the docs tables all come from the declaration, so a declared option missing anywhere fails here."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command

from facelab.errors import SettingsError
from facelab.options import Option, schema
from facelab.train import options

ROOT = Path(__file__).resolve().parents[1]


def _train_command():
    import facelab.cli.train_cmd  # noqa: F401 - registers the command
    from facelab.cli import app

    return get_command(app).commands["train"]


def test_every_declared_option_is_a_flag_of_train_with_its_declared_spellings():
    params = {p.name: p for p in _train_command().params}
    for o in options.ALL + (options.CONFIG_FILE,):
        assert o.name in params, f"--{o.name} missing from `facelab train`"
        spelled = set(params[o.name].opts) | set(params[o.name].secondary_opts)
        for flag in o.cli_flags:
            assert set(flag.split("/")) <= spelled, (o.name, flag, spelled)
        assert params[o.name].help == o.help
    assert set(params) == {o.name for o in options.ALL} | {"config"}


def test_settings_fields_are_the_trainer_options_and_the_saved_defaults_cover_every_saved_option():
    from facelab.stages.train import OPTION_DEFAULTS, TrainSettings

    fields = {f.name for f in dataclasses.fields(TrainSettings)} - {"architecture"}
    assert fields == {o.name for o in options.TRAINER}
    saved = {o.name for o in options.TRAINER if o.saved} - {"iterations", "batch_size"}
    assert set(OPTION_DEFAULTS) == saved
    for o in options.TRAINER:  # the dataclass defaults are the declared ones (None = decided at run time)
        default = next(f.default for f in dataclasses.fields(TrainSettings) if f.name == o.name)
        assert default in (None, o.default), o.name


def test_architecture_options_are_keywords_of_some_model_constructor():
    for o in options.ARCHITECTURE + options.MODEL_TRAINING:
        assert options.models_taking(o.name), f"{o.name}: no model takes it"
        assert o.question, f"{o.name}: architecture options are asked at the first run"


@pytest.mark.parametrize("option", [o for o in options.TRAINER if o.lo is not None or o.choices], ids=lambda o: o.name)
def test_settings_refuse_a_value_out_of_the_declared_range(option: Option):
    from facelab.stages.train import TrainSettings

    bad = "no-such-value" if option.choices else (option.lo - 1 if not option.lo_open else option.lo)
    with pytest.raises(SettingsError, match=option.name):
        TrainSettings(**{option.name: bad})


def test_the_toml_schema_has_every_option_and_a_file_with_each_key_is_accepted(tmp_path):
    from facelab.cli.train_cmd import _apply_file

    props = schema(options.ALL)["properties"]
    assert set(props) == {o.name for o in options.ALL}
    assert props["batch_size"] == {**props["batch_size"], "type": "integer", "minimum": 1, "maximum": 512}
    assert props["lr_dropout"]["exclusiveMaximum"] == 1 and props["minutes"]["exclusiveMinimum"] == 0
    assert props["color_transfer"]["enum"] == list(options.COLOR_TRANSFERS)
    for model in ("quick", "sae", "h64"):
        keys = [o.name for o in options.TRAINER] + [o.name for o in options.model_options(model)]
        toml = tmp_path / f"{model}.toml"
        toml.write_text("".join(f'{k} = {"true" if next(o for o in options.ALL if o.name == k).kind is bool else 1}\n'
                                for k in keys if k != "model") + f'model = "{model}"\n')
        kwargs, arch = {}, {}
        _apply_file(toml, kwargs, arch)
        assert set(kwargs) | set(arch) == set(keys)
    toml = tmp_path / "bad.toml"
    toml.write_text('model = "quick"\narchi = "df"\n')  # quick has no archi
    with pytest.raises(SettingsError, match="unknown setting.*archi"):
        _apply_file(toml, {}, {})


def test_first_run_questions_come_from_the_declarations():
    from facelab.cli.prompts import train_questions
    from facelab.models import MODELS

    declared = {o.name: o for o in options.ALL}
    for model in ("quick", "h64", "sae"):
        params = set(inspect.signature(MODELS.get(model)).parameters)
        for q in train_questions(params, {}):
            o = declared[q.key]
            assert q.text.startswith(o.question) and q.help == (o.explain or o.help) or q.key == "resolution", q.key


def test_the_docs_tables_are_generated_from_the_declarations():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_option_docs.py"), "--check"],
                            capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "docs" / "training.md").read_text()
    for o in options.ALL:
        assert f"`{o.cli_flags[0]}" in text, f"{o.name} missing from docs/training.md"


def test_a_changed_declaration_makes_the_docs_check_fail(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_option_docs", ROOT / "tools" / "gen_option_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "training.md").write_text((ROOT / "docs" / "training.md").read_text().replace("Minutes between previews.", "stale"))
    for name in set(gen.tables()) - {"docs/training.md"}:  # every docs file with a table, as it is
        (tmp_path / name).write_text((ROOT / name).read_text())
    rendered = gen.render(tmp_path)
    text, new = rendered[tmp_path / "docs" / "training.md"]
    assert text != new and "Minutes between previews." in new
    assert len(set(rendered[tmp_path / "docs" / "merge.md"])) == 1  # merge.md is current


def test_option_check_and_parse():
    o = Option("n", int, 8, lo=1, hi=512)
    assert o.check(None) is None and o.check(5) == 5
    for bad in (0, 513, 2.5, True, "5"):
        with pytest.raises(SettingsError, match="n: .* is out of range"):
            o.check(bad)
    assert o.parse(" 12 ") == 12
    with pytest.raises(ValueError, match="1..512"):
        o.parse("600")
    b = Option("b", bool, False)
    assert b.parse("y") is True and b.parse("off") is False
    with pytest.raises(ValueError):
        b.parse("maybe")
    r = Option("r", int, lo=16, hi=512, multiple_of=16)
    with pytest.raises(SettingsError):
        r.check(100)
    assert r.range_text() == "a multiple of 16 from 16 to 512"


@pytest.mark.parametrize("command", [["merge"], ["eval", "--reconstruction"]])
def test_the_old_model_folder_flag_still_works_with_a_deprecation_message(ws, command):
    from typer.testing import CliRunner

    from facelab.cli import app

    ws = ws.root
    old = CliRunner().invoke(app, ["-w", str(ws), *command, "--model", "nosuch"])
    assert "--model is deprecated here: use --name" in old.output
    assert "'nosuch'" in str(old.exception)  # the old flag named the folder it looked for
    new = CliRunner().invoke(app, ["-w", str(ws), *command, "--name", "nosuch"])
    assert "deprecated" not in new.output and "'nosuch'" in str(new.exception)
    both = CliRunner().invoke(app, ["-w", str(ws), *command, "--model", "a", "--name", "b"])
    assert "give only --name" in both.exception.hint


def test_every_declared_merge_option_is_a_flag_and_the_settings_are_the_declared_ones():
    import facelab.cli.merge_cmd  # noqa: F401 - registers the command
    from facelab.cli import app
    from facelab.merge import options as merge
    from facelab.merge.compose import MergeSettings

    params = {p.name: p for p in get_command(app).commands["merge"].params}
    for o in merge.SETTINGS + merge.RUN + (merge.DEPRECATED_MODEL,):
        assert o.name in params, f"--{o.name} missing from `facelab merge`"
        spelled = set(params[o.name].opts) | set(params[o.name].secondary_opts)
        assert all(set(f.split("/")) <= spelled for f in o.cli_flags), o.name
    assert params["model"].hidden and not params["name"].hidden
    fields = {f.name: f.default for f in dataclasses.fields(MergeSettings)}
    assert fields == {o.name: o.default for o in merge.SETTINGS}
    assert set(schema(merge.SETTINGS)["properties"]) == set(fields)


@pytest.mark.parametrize("key, bad", [("erode", 201), ("sharpen", -101), ("mode", "blend"), ("color", "rct-x"),
                                      ("alpha", "yes"), ("hist_threshold", 2.5)])
def test_merge_settings_refuse_what_the_declaration_does_not_allow(key, bad):
    from facelab.merge.compose import MergeSettings

    with pytest.raises(SettingsError, match=key):
        MergeSettings(**{key: bad})
    import numpy as np

    assert MergeSettings(erode=np.int64(3)).erode == 3 and type(MergeSettings(alpha=np.bool_(True)).alpha) is bool


def test_every_declared_extract_option_is_a_flag_and_a_settings_field():
    from facelab.cli import app, extract_cmd
    from facelab.stages.extract import OPTIONS, RUN_ONLY, ExtractSettings

    params = {p.name: p for p in get_command(app).commands["extract"].params}
    for o in OPTIONS + extract_cmd.ACTIONS:
        assert o.name in params, f"--{o.name} missing from `facelab extract`"
        spelled = set(params[o.name].opts) | set(params[o.name].secondary_opts)
        assert all(set(f.split("/")) <= spelled for f in o.cli_flags), o.name
    assert {f.name: f.default for f in dataclasses.fields(ExtractSettings)} == {o.name: o.default for o in OPTIONS}
    assert set(ExtractSettings().output_key()) == {o.name for o in OPTIONS} - set(RUN_ONLY)
    with pytest.raises(SettingsError, match="workers"):
        ExtractSettings(workers=-1)


def test_the_old_threads_keyword_still_sets_the_worker_count_with_a_deprecation_warning():
    from facelab.stages.extract import ExtractSettings
    from facelab.stages.sort import SortSettings

    with pytest.warns(DeprecationWarning, match="use workers="):
        assert SortSettings(threads=3).workers == 3
    with pytest.warns(DeprecationWarning, match="use workers="):
        assert ExtractSettings(threads=2).workers == 2
    assert "threads" not in {f.name for f in dataclasses.fields(SortSettings)}


@pytest.mark.parametrize("command, module", [("frames", "frames"), ("video", "video"), ("denoise", "denoise")])
def test_the_video_tools_flags_and_settings_are_their_declarations(command, module):
    import importlib

    from facelab.cli import app

    stage = importlib.import_module(f"facelab.stages.{module}")
    settings = {"frames": "FramesSettings", "video": "VideoSettings", "denoise": "DenoiseSettings"}[module]
    params = {p.name: p for p in get_command(app).commands[command].params}
    for o in stage.OPTIONS:
        assert o.name in params, f"--{o.name} missing from `facelab {command}`"
        assert all(set(f.split("/")) <= set(params[o.name].opts) | set(params[o.name].secondary_opts) for f in o.cli_flags)
    fields = {f.name: f.default for f in dataclasses.fields(getattr(stage, settings))}
    assert fields == {o.name: o.default for o in stage.OPTIONS}
