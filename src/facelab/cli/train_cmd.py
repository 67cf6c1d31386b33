"""CLI command: train."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from facelab.cli import app, console, current_workspace, output_marker, report
from facelab.options import command
from facelab.train import options


def _train(**given: Any) -> None:
    """Train (or continue training) a model on the src and dst face sets. Ctrl+C saves and stops."""
    from facelab.stages import train

    kwargs = {o.name: given[o.name] for o in options.TRAINER}
    arch = {o.name: given[o.name] for o in options.ARCHITECTURE}
    if given["config"] is not None:
        _apply_file(given["config"], kwargs, arch)
    model = kwargs["model"] = kwargs.get("model") or "quick"
    for o in options.ARCHITECTURE:  # the ranges the flags' help states (DeepFaceLab's)
        o.check(arch.get(o.name))
    if kwargs.get("iterations") == 0:  # DeepFaceLab's "0 = no target": forget a saved one
        kwargs["iterations"], kwargs["no_target"] = None, True
    ws = current_workspace()
    folder = ws.model_dir(kwargs.get("name") or model)
    if sys.stdin.isatty() and kwargs.get("gpu") is None and kwargs.get("device") is None:
        from facelab.cli.prompts import ask_gpu
        from facelab.train.checkpoint import model_variants

        variants = model_variants(folder)  # only models trained with --gpu N: continue one of them
        kwargs["gpu"] = ask_gpu(variants if variants and None not in variants else [])
    if sys.stdin.isatty() and not any(folder.glob("*config.json")):
        _ask_first_run(model, kwargs, arch)
    kwargs["architecture"] = tuple((k, v) for k, v in arch.items() if v is not None)
    settings = train.TrainSettings(**{k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items() if v is not None})
    summary = train.run(ws, settings, log=lambda s: console.print(s, highlight=False, markup=False), marker=output_marker())
    if os.environ.get("RANK", "0") == "0":  # under torchrun only the first process reports
        report(summary)


# every flag comes from the declarations in facelab.train.options
app.command("train")(command(options.TRAINER[:1] + (options.CONFIG_FILE,) + options.TRAINER[1:] + options.ARCHITECTURE, _train, _train.__doc__ or ""))


def _ask_first_run(model: str, kwargs: dict, arch: dict) -> None:
    """Fill options the user did not give by asking (a new model in a terminal only)."""
    import inspect

    import torch

    from facelab.cli.prompts import ask_all, train_questions
    from facelab.models import MODELS

    params = inspect.signature(MODELS.get(model)).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    given = {k for k, v in {**kwargs, **arch}.items() if v is not None}
    if kwargs.get("device") is not None:  # a device names the GPU already
        given.add("gpu")
    console.print(f"new {model} model: answer or press Enter for the default ('?' explains)", highlight=False, markup=False)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    questions = train_questions(set(params), defaults, gpu_count=gpus, training=MODELS.get(model).TRAINING_QUESTIONS)
    answers = ask_all([q for q in questions if q.key not in given])
    for key, value in answers.items():
        if key in params:
            arch[key] = value if value != defaults.get(key) else None
        elif value is not None:
            kwargs[key] = value


def _apply_file(path: Path, kwargs: dict, arch: dict) -> None:
    """Fill options not given as flags from a TOML file; architecture keys are those of the chosen model."""
    from facelab.settings_file import check_keys, load_toml

    data = load_toml(path)
    if "target_iteration" in data:  # DeepFaceLab's name for it
        data["iterations"] = data.pop("target_iteration")
    model = kwargs.get("model") or data.get("model") or "quick"
    arch_keys = {o.name for o in options.model_options(model)}
    trainer_keys = {o.name for o in options.TRAINER}
    check_keys(data, arch_keys | trainer_keys, path)
    for key, value in data.items():
        if key in trainer_keys:
            if kwargs.get(key) is None:
                kwargs[key] = value
        elif arch.get(key) is None:
            arch[key] = value
