"""Reconstruction quality of a model on faces it did not train on.

``facelab train --holdout N`` keeps N faces per side out of training and names
them in ``model/<name>/holdout.json`` (:mod:`facelab.train.holdout`).

Each held-out face goes through its own side's path of the autoencoder (src
faces through the src decoder, dst faces through the dst decoder:
:meth:`facelab.inference.Predictor.reconstruct`), and the reconstruction
is compared with the face by SSIM and PSNR inside the face's landmark hull (the
area the training loss covers; the background of a reconstruction is not
trained). Faces are loaded exactly as training loads them
(:class:`facelab.train.dataset.FaceDataset`: re-cut to the model's face type,
resized to its resolution), without augmentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facelab.errors import FacelabError, WorkspaceError
from facelab.eval import metrics as M
from facelab.workspace import Workspace


class HoldoutError(FacelabError):
    """The model has no held-out faces."""


def held_out_faces(ws: Workspace, model_dir: Path, prefix: str = "") -> dict[str, list[Path]]:
    """The face files of each side that ``model_dir`` (files ``<prefix>*``) kept out of training, found in the
    workspace by their (frame, face index) so a face renamed by ``sort`` is still found
    (:func:`facelab.train.holdout.split`). Raises :class:`HoldoutError` when the model has none."""
    from facelab.train import holdout

    doc = holdout.load(model_dir, prefix)
    if not doc or not (doc.get("src") or doc.get("dst")):
        raise HoldoutError(f"model {model_dir.name} has no held-out faces (no {prefix + holdout.FILE} naming any)",
                           "train a model with `facelab train --holdout N` to keep N faces per side out of training")
    return {side: holdout.split(ws.aligned_paths(side), doc, side)[1] for side in ("src", "dst")}


def measure_reconstruction(predictor: Any, held: dict[str, list[Path]], batch_size: int = 16) -> tuple[dict[str, float], list[str]]:
    """``{"recon_<side>_ssim", "recon_<side>_psnr", "recon_<side>_faces"}`` (means over the held-out faces
    ``held[side]`` of each side) and warnings."""
    from facelab.train.dataset import FaceDataset

    summary: dict[str, float] = {}
    warnings: list[str] = []
    for side in ("src", "dst"):
        present = held.get(side, [])
        summary[f"recon_{side}_faces"] = 0
        summary[f"recon_{side}_ssim"] = summary[f"recon_{side}_psnr"] = float("nan")
        if not present:
            warnings.append(f"no held-out {side} face is left in the workspace: {side} reconstruction not measured")
            continue
        try:
            data = FaceDataset(present, predictor.resolution, predictor.face_type, detail=False)
        except WorkspaceError as e:
            warnings.append(f"held-out {side} faces could not be read: {e}")
            continue
        warnings += [f"held-out {side} face left out: {m}" for m in data.skipped]
        ssims, psnrs = [], []
        for start in range(0, len(data), batch_size):
            faces = data.faces[start:start + batch_size]
            recon, _ = predictor.reconstruct(faces.astype(np.float32) / 255.0, side)
            for face, rec, mask in zip(faces, recon, data.masks[start:start + batch_size]):
                region = mask > 0.5
                target = face.astype(np.float64) / 255.0
                ssims.append(M.ssim(target, np.clip(rec, 0, 1), region))
                psnrs.append(M.psnr(target, np.clip(rec, 0, 1), region))
        summary[f"recon_{side}_faces"] = len(data)
        summary[f"recon_{side}_ssim"] = float(np.nanmean(ssims))
        summary[f"recon_{side}_psnr"] = float(np.nanmean(psnrs))
    return summary, warnings
