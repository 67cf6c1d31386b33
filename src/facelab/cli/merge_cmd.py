"""CLI command: merge (every mode and option of DeepFaceLab's merger, per frame range, with a preview)."""

from __future__ import annotations

import sys
from typing import Any

from facelab.cli import app, console, current_workspace, output_marker, renamed_flag, report
from facelab.merge import options
from facelab.options import by_name, command


def _merge(**given: Any) -> None:
    """Put the predicted faces back into every dst frame (data_dst/merged).

    Settings come from the flags, then the --config file, then the defaults; settings given with --frames apply to that range only. Frames already merged with the same model and settings are skipped.
    """
    from facelab.stages import merge

    run = {o.name: o.check(given[o.name]) if given[o.name] is not None else o.default for o in options.RUN}
    folder = renamed_flag("--model", "--name", given["model"], given["name"], "quick")
    given["enhancer"] = renamed_flag("--super-resolution", "--enhancer", given["super_resolution"], given["enhancer"], None)
    settings = {o.name: given[o.name] for o in options.SETTINGS if given[o.name] is not None}
    ws = current_workspace()
    plan, only = merge.plan_from_options(ws, settings, config=run["config"], frames=run["frames"], clear_ranges=run["clear_ranges"])
    gpu = run["gpu"]
    if gpu is None and sys.stdin.isatty() and given["onnx"] is None:
        from facelab.cli.prompts import ask_gpu

        gpu = ask_gpu(merge.gpu_choices(ws, folder))
    exported = {o.name: o.check(given[o.name]) for o in options.ONNX_RUN}
    if run["preview"] is not None:
        report(merge.preview(ws, folder, plan, run["preview"], device=run["device"], gpu=gpu, marker=output_marker(),
                             **exported))
        return
    summary = merge.run(ws, folder, plan, device=run["device"], force=run["force"], only=only, batch_size=run["batch_size"],
                        gpu=gpu, marker=output_marker(), **exported)
    report(summary)
    if plan.ranges:
        console.print("per-range settings: " + "; ".join(f"{f}: {dict(o)}" for f, o in plan.ranges), highlight=False, markup=False)


# every flag comes from the declarations in facelab.merge.options
_FLAGS = by_name(options.RUN)
app.command("merge")(command((_FLAGS["name"], options.DEPRECATED_MODEL, *options.SETTINGS[:1], _FLAGS["config"],
                              *options.SETTINGS[1:], options.DEPRECATED_SUPER_RESOLUTION,
                              *(o for o in options.RUN if o.name not in ("name", "config")), *options.ONNX_RUN),
                             _merge, _merge.__doc__ or ""))
