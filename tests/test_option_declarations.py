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
from facelab.options import Option, by_name, schema
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
    for o in options.ARCHITECTURE:
        assert options.models_taking(o.name), f"{o.name}: no model takes it"
        assert o.question, f"{o.name}: architecture options are asked at the first run"


def test_every_model_constructor_parameter_is_a_declared_architecture_option_and_no_trainer_knob():
    """A model's constructor is its typed config: each keyword is declared (so the CLI, the TOML keys, the first-run
    questions and the UI's form have it), and none is a trainer option (those steer training, not the network)."""
    from facelab.models import MODELS, list_models

    declared, trainer = {o.name for o in options.ARCHITECTURE}, {o.name for o in options.TRAINER}
    for model in list_models():
        params = inspect.signature(MODELS.get(model)).parameters
        assert set(params) <= declared, (model, set(params) - declared)
        assert not set(params) & trainer, (model, set(params) & trainer)
        for name in MODELS.get(model).TRAINING_QUESTIONS:
            assert name in trainer and by_name(options.TRAINER)[name].question, (model, name)


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
    for name in gen.tables():  # every file the tool writes (docs/*.md, README.md)
        if name != "docs/training.md":
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


# command -> (stage module, settings class (None: the settings are keywords of run), its run-only flags, a refused value
# of each declared option that has a range or choices (and of some others), fields of the settings that are no flag)
_TOOLS = {
    "sort": ("sort", "SortSettings", {"threads"}, {"by": "no-such-method", "target": 0, "workers": -1}, set()),
    "eval": ("eval", "EvalSettings", {"model", "compare"}, {"source": "frames", "gpu": -1, "workers": 33}, {"progress"}),
    "cut": ("cut", "CutSettings", {"force"}, {"start": "1:2:3:4", "end": "5:x", "audio_track": -1, "bitrate": "8 parsecs"},
            set()),
    "demo": ("demo", None, {"force", "yes"}, {"minutes": 0, "min_iterations": -1}, set()),
}


@pytest.mark.parametrize("command", list(_TOOLS))
def test_the_sort_eval_cut_and_demo_flags_and_settings_are_their_declarations(command):
    """Every declared option is a flag with its declared spellings (the hidden old ones hidden), the settings are the
    declared options with the declared defaults (a required option has none; ``EvalSettings.progress`` is the one
    field from Python only, not a flag), and a value out of range is refused naming the key."""
    import importlib

    from facelab.cli import app

    module, settings, run_only, bad, api_only = _TOOLS[command]
    stage = importlib.import_module(f"facelab.stages.{module}")
    params = {p.name: p for p in get_command(app).commands[command].params}
    for o in stage.OPTIONS:
        assert o.name in params, f"--{o.name} missing from `facelab {command}`"
        assert all(set(f.split("/")) <= set(params[o.name].opts) | set(params[o.name].secondary_opts) for f in o.cli_flags)
        assert params[o.name].help == o.help and params[o.name].required == o.required and not params[o.name].hidden
    positional = {p.name for p in params.values() if p.param_type_name == "argument"}
    assert set(params) == {o.name for o in stage.OPTIONS} | run_only | positional
    assert {name for name in run_only if params[name].hidden} == {"threads", "model"} & run_only
    if settings is None:
        keywords = inspect.signature(stage.run).parameters
        assert all(keywords[o.name].default == o.default for o in stage.OPTIONS)
        call = lambda **kw: stage.run(None, **kw)  # noqa: E731 - refused before the workspace is looked at
    else:
        fields = {f.name: f.default for f in dataclasses.fields(getattr(stage, settings))}
        assert set(fields) == {o.name for o in stage.OPTIONS} | api_only
        for o in stage.OPTIONS:
            assert fields[o.name] is dataclasses.MISSING if o.required else fields[o.name] == o.default, o.name
        required = {"start": "1", "end": "2"} if command == "cut" else {}
        call = lambda **kw: getattr(stage, settings)(**{**required, **kw})  # noqa: E731
    assert {o.name for o in stage.OPTIONS if o.lo is not None or o.choices} <= set(bad)
    for key, value in bad.items():
        flag = next(o for o in stage.OPTIONS if o.name == key).cli_flags[0]
        with pytest.raises(SettingsError) as e:
            call(**{key: value})
        assert f"{command}.{key}:" in e.value.message or f"{command} {flag}" in e.value.message, e.value.message


def _commands():
    """Every ``facelab`` command and sub-command: ``(name, command)``."""
    from facelab.cli import app

    def walk(cmd, prefix):
        for name, sub in cmd.commands.items():
            if hasattr(sub, "commands"):  # a group (faceset)
                yield from walk(sub, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", sub

    return list(walk(get_command(app), ""))


def test_every_command_is_generated_from_option_declarations():
    """No hand-written flag is left: each command's flags are exactly its declared options (plus a few hand-made
    parameters an Option cannot type, e.g. eval's two-path --compare)."""
    hand_made = {"eval": {"compare"}}
    commands = _commands()
    assert len(commands) >= 24
    for name, cmd in commands:
        declared = getattr(cmd.callback, "options", None)
        assert declared is not None, f"`facelab {name}` has hand-written flags: declare them (facelab.options)"
        flags = {p.name for p in cmd.params if p.param_type_name == "option" and p.name != "help"}
        assert flags == {o.name for o in declared} | hand_made.get(name, set()), name
        for o in declared:
            param = next(p for p in cmd.params if p.name == o.name)
            assert param.help == o.help and param.hidden == o.hidden, (name, o.name)
