"""CLI command: train."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from facelab.cli import app, console, current_workspace, report
from facelab.color import COLOR_TRANSFERS

_COLOR_NAMES = ", ".join(COLOR_TRANSFERS)


@app.command("train")
def train_cmd(
    model: Annotated[str | None, typer.Option(help="Model architecture: quick (default), h64, h128, df, liaef128, ... (see docs/training.md).")] = None,
    name: Annotated[str | None, typer.Option(help="Model folder name under model/ (default: the model name).")] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", "--target-iteration",
                                                      help="Train until this total iteration (saved: later runs without it train up to it; 0 removes a saved target).")] = None,
    minutes: Annotated[float | None, typer.Option(help="Train for this many minutes (this run).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Faces per side per iteration (saved).")] = None,
    device: Annotated[str | None, typer.Option(help="auto (default), cpu, cuda, cuda:N or mps.")] = None,
    gpu: Annotated[int | None, typer.Option("--gpu", help="Train on CUDA GPU INDEX; model files get the prefix gpuINDEX_.")] = None,
    flip: Annotated[bool | None, typer.Option("--flip/--no-flip", help="Random mirror flip of faces (saved; default on).")] = None,
    src_scale: Annotated[float | None, typer.Option("--src-scale", help="Scale src faces by this percent, -30..30 (saved; default 0).")] = None,
    sort_by_yaw: Annotated[bool | None, typer.Option("--sort-by-yaw/--no-sort-by-yaw",
                                                        help="Feed src faces of about the dst faces' yaw (saved; default off).")] = None,
    preview_history: Annotated[bool | None, typer.Option("--preview-history/--no-preview-history",
                                                            help="Keep previews/preview_<iteration>.jpg (saved; default off).")] = None,
    backups: Annotated[int | None, typer.Option("--backups", help="Hourly backups to keep in model/<name>/backups, 0 = none (saved; default 3).")] = None,
    save_every: Annotated[float | None, typer.Option("--save-every", help="Minutes between saves (default 15).")] = None,
    preview_every: Annotated[float | None, typer.Option("--preview-every", help="Minutes between previews (default 2).")] = None,
    resolution: Annotated[int | None, typer.Option("--resolution", help="Face size the model works at (architecture: first run only).")] = None,
    lightweight: Annotated[bool, typer.Option("--lightweight", help="Smaller encoder/decoder (h64, h128; architecture: first run only).")] = False,
    random_warp: Annotated[bool | None, typer.Option("--random-warp/--no-random-warp", help="Random warp of the inputs (saved; default on, off for quick; turn off late in training for detail).")] = None,
    clip_grad: Annotated[bool | None, typer.Option("--clip-grad/--no-clip-grad", help="Clip the gradient norm to 1 (saved; default off).")] = None,
    lr_dropout: Annotated[float | None, typer.Option("--lr-dropout", help="Share of weight updates dropped each step, 0 (off) to <1, e.g. 0.3 (saved).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file with any of these options as keys (flags win over it).")] = None,
    pixel_loss: Annotated[bool | None, typer.Option("--pixel-loss/--no-pixel-loss", help="Train with pixel MSE instead of DSSIM (saved; default off).")] = None,
    uniform_yaw: Annotated[bool | None, typer.Option("--uniform-yaw/--no-uniform-yaw", help="Sample faces evenly over head turn, so rare profiles train as often as frontal faces (saved; default off).")] = None,
    eyes_mouth_priority: Annotated[bool | None, typer.Option("--eyes-mouth-priority/--no-eyes-mouth-priority", help="Extra loss weight on eyes, brows and mouth: sharper details, e.g. eye direction (saved; default off).")] = None,
    color_transfer: Annotated[str | None, typer.Option("--color-transfer", "--ct-mode", help=f"Recolour src samples towards random dst faces: none, {_COLOR_NAMES} (saved; default none).")] = None,
    gan_power: Annotated[float | None, typer.Option("--gan-power", help="Patch-GAN loss weight 0..10, 0 = off; try 0.1 once the faces are sharp (saved).")] = None,
    true_face_power: Annotated[float | None, typer.Option("--true-face-power", help="sae df only: code discriminator weight 0..1, 0 = off; try 0.01 for a swap closer to src (saved).")] = None,
    identity_power: Annotated[float | None, typer.Option("--identity-power", help="Identity loss weight 0..10, 0 = off: pulls the swap's dlib face descriptor towards src's (any model; saved; docs/training.md).")] = None,
    pretrain: Annotated[Path | None, typer.Option("--pretrain", help="Pretrain both sides on this folder of aligned faces of many people; a later run without it continues on the pair from iteration 0.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Threads preparing batches ahead, 0..32 (default: 0 on CPU, up to 4 on a GPU).")] = None,
    holdout: Annotated[int | None, typer.Option("--holdout", help="Keep N faces of each side out of training (evenly spaced; fixed at the first run) for `facelab eval --reconstruction` (default 0).")] = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="Mixed precision (default on where the hardware runs it natively: CUDA, and bfloat16 on CPUs with AVX-512 BF16 or AMX; 1.5x the iterations per minute for quick, about 3x for sae, same loss per iteration); --no-amp trains in float32.")] = None,
    face_type: Annotated[str | None, typer.Option("--face-type", help="sae: half, mid, full, whole or head.", rich_help_panel="SAE architecture (first run only)")] = None,
    archi: Annotated[str | None, typer.Option("--archi", help="sae: df, liae or vg, with DeepFaceLab 2 letters u/d/t after a dash (df-ud, liae-ud).", rich_help_panel="SAE architecture (first run only)")] = None,
    ae_dims: Annotated[int | None, typer.Option("--ae-dims", help="Autoencoder (bottleneck) dims, 32-1024.", rich_help_panel="SAE architecture (first run only)")] = None,
    e_dims: Annotated[int | None, typer.Option("--e-dims", help="Encoder dims per channel, 21-85.", rich_help_panel="SAE architecture (first run only)")] = None,
    d_dims: Annotated[int | None, typer.Option("--d-dims", help="Decoder dims per channel, 10-85.", rich_help_panel="SAE architecture (first run only)")] = None,
    d_mask_dims: Annotated[int | None, typer.Option("--d-mask-dims", help="Mask decoder dims per channel, 1-85.", rich_help_panel="SAE architecture (first run only)")] = None,
    d_res_blocks: Annotated[int | None, typer.Option("--d-res-blocks", help="Residual blocks per decoder level, 0-8.", rich_help_panel="SAE architecture (first run only)")] = None,
    learn_mask: Annotated[bool | None, typer.Option("--learn-mask/--no-learn-mask", help="Predict a mask beside the face (default on).", rich_help_panel="SAE architecture (first run only)")] = None,
    optimizer_mode: Annotated[int | None, typer.Option("--optimizer-mode", help="1; 2: optimizer state in system RAM; 3: also recompute activations (~30 % slower, larger nets fit). Changeable.", rich_help_panel="SAE training (changeable)")] = None,
    lightweight_encoder: Annotated[bool | None, typer.Option("--lightweight-encoder", help="Fewer encoder channels.", rich_help_panel="SAE architecture (first run only)")] = None,
    multiscale_decoder: Annotated[bool | None, typer.Option("--multiscale-decoder", help="Decoder also predicts at 1/2 and 1/4 scale.", rich_help_panel="SAE architecture (first run only)")] = None,
    remove_gray_border: Annotated[bool | None, typer.Option("--remove-gray-border/--no-remove-gray-border", help="Leave the fill of faces cut at the frame edge out of the loss.", rich_help_panel="SAE training (changeable)")] = None,
    face_style_power: Annotated[float | None, typer.Option("--face-style-power", help="0-100: pull the swapped face towards dst's colours and light (try 10, then lower).", rich_help_panel="SAE training (changeable)")] = None,
    bg_style_power: Annotated[float | None, typer.Option("--bg-style-power", help="0-100: pull the swap's surroundings towards dst's background.", rich_help_panel="SAE training (changeable)")] = None,
) -> None:
    """Train (or continue training) a model on the src and dst face sets. Ctrl+C saves and stops."""
    from facelab.stages import train

    kwargs = {"model": model, "name": name, "iterations": iterations, "minutes": minutes, "device": device, "gpu": gpu,
              "flip": flip, "src_scale": src_scale, "sort_by_yaw": sort_by_yaw, "preview_history": preview_history,
              "backups": backups, "save_every_minutes": save_every, "preview_every_minutes": preview_every,
              "batch_size": batch_size, "random_warp": random_warp, "clip_grad": clip_grad, "lr_dropout": lr_dropout,
              "uniform_yaw": uniform_yaw, "eyes_mouth_priority": eyes_mouth_priority, "color_transfer": color_transfer,
              "gan_power": gan_power, "true_face_power": true_face_power, "identity_power": identity_power, "pretrain": str(pretrain) if pretrain else None,
              "workers": workers, "amp": amp, "holdout": holdout}
    arch = {"resolution": resolution, "lightweight": lightweight or None, "pixel_loss": pixel_loss,
            "face_type": face_type, "archi": archi, "ae_dims": ae_dims, "e_dims": e_dims, "d_dims": d_dims,
            "d_mask_dims": d_mask_dims, "d_res_blocks": d_res_blocks, "learn_mask": learn_mask,
            "optimizer_mode": optimizer_mode, "lightweight_encoder": lightweight_encoder,
            "multiscale_decoder": multiscale_decoder, "remove_gray_border": remove_gray_border,
            "face_style_power": face_style_power, "bg_style_power": bg_style_power}
    if config is not None:
        _apply_file(config, model, kwargs, arch)
    model = kwargs["model"] = kwargs.get("model") or "quick"
    _check_dims(arch)
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
    settings = train.TrainSettings(**{k: v for k, v in kwargs.items() if v is not None})
    summary = train.run(ws, settings, log=lambda s: console.print(s, highlight=False, markup=False))
    if os.environ.get("RANK", "0") == "0":  # under torchrun only the first process reports
        report(summary)


def _check_dims(arch: dict) -> None:
    """The dims ranges the flags' help states (DeepFaceLab's); the Python API accepts wider ones for tiny test models."""
    from facelab.errors import SettingsError
    from facelab.models.sae import USER_RANGES

    for key in ("ae_dims", "e_dims", "d_dims", "d_mask_dims"):
        v = arch.get(key)
        lo, hi = USER_RANGES[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi):
            raise SettingsError(f"{key}: {v!r} is out of range", f"use --{key.replace('_', '-')} from {lo} to {hi}")


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
    answers = ask_all([q for q in train_questions(set(params), defaults, gpu_count=gpus) if q.key not in given])
    for key, value in answers.items():
        if key in params:
            arch[key] = value if value != defaults.get(key) else None
        elif value is not None:
            kwargs[key] = value


def _apply_file(path: Path, model: str, kwargs: dict, arch: dict) -> None:
    """Fill options not given as flags from a TOML file; architecture keys are the model's own options."""
    import dataclasses
    import inspect

    from facelab.models import MODELS
    from facelab.settings_file import check_keys, load_toml
    from facelab.stages.train import TrainSettings

    data = load_toml(path)
    if "target_iteration" in data:  # DeepFaceLab's name for it
        data["iterations"] = data.pop("target_iteration")
    model = kwargs.get("model") or data.get("model") or "quick"
    arch_keys = set(inspect.signature(MODELS.get(model)).parameters)
    trainer_keys = {f.name for f in dataclasses.fields(TrainSettings)} - {"architecture"}
    check_keys(data, arch_keys | trainer_keys, path)
    for key, value in data.items():
        if key in trainer_keys:
            if kwargs.get(key) is None:
                kwargs[key] = value
        elif arch.get(key) is None:
            arch[key] = value

