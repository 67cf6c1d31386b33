"""Build ``tests/data/old_workspace``: a tiny workspace written by facelab *before* step records, so the
tests prove that such a workspace is migrated without losing finished work.

Run it with the code of that version on the path, e.g.::

    git worktree add --detach /tmp/orig 30c7d3f
    PYTHONPATH=/tmp/orig/src python tools/make_old_workspace.py tests/data/old_workspace
    git worktree remove /tmp/orig

It cuts the demo's dst clip to its first 3 frames, then runs frames (JPEG), denoise, extract (64 px
faces, debug images), merge and video, with that version's code, and copies what a later run reads:
the clip, frames, faces, debug images, the merged frames, the result video and every record file
(about 0.6 MB). Signing keys go to a temporary facelab home. Merge runs
with :class:`Identity`, a stand-in for a model (a trained model's weights would be megabytes); the
test merges with the same stand-in and model name. Nothing is edited by hand. The test sets the
clip's mtime to the one ``frames.json`` recorded and the result's after the merged frames' (git does not
keep mtimes).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from facelab.merge.compose import MergeSettings
import numpy as np

from facelab.stages import cut, denoise, extract, frames, merge, video
from facelab.stages.demo import SAMPLES, sample_path
from facelab.workspace import Workspace

MODEL = "stand-in"


class Identity:
    """A stand-in model: gives back its input face, with a full mask (the tests have the same one)."""

    resolution, face_type = 64, "full"

    def predict(self, batch: np.ndarray):
        return batch.copy(), np.ones(batch.shape[:3], np.float32)


def build(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FACELAB_HOME"] = str(Path(tmp) / "home")
        clip = Path(tmp) / "clip.mpg"
        shutil.copyfile(sample_path(SAMPLES["dst"]), clip)
        cut.run(clip, cut.CutSettings(start=0, end=0.12))
        ws = Workspace(Path(tmp) / "ws")
        ws.create()
        shutil.copyfile(Path(tmp) / "clip_cut.mpg", ws.root / "data_dst.mpg")
        frames.run(ws, "dst", frames.FramesSettings(format="jpg"))
        denoise.run(ws)
        extract.run(ws, "dst", extract.ExtractSettings(size=64, debug=True, device="cpu"))
        merge.run(ws, MODEL, MergeSettings(), device="cpu", predictor=Identity())
        video.run(ws)
        if out.exists():
            shutil.rmtree(out)
        keep = ["data_dst.mpg", "data_dst/*.jpg", "data_dst/aligned/*", "data_dst/aligned_debug/*", "data_dst/.facelab/*",
                "data_dst/merged/*", "data_dst/merged_mask/*", "result.mp4"]
        for pattern in keep:
            for p in sorted(ws.root.glob(pattern)):
                target = out / p.relative_to(ws.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, target)


if __name__ == "__main__":
    build(Path(sys.argv[1]).resolve())
