"""Every option of `facelab seg <command>`, declared once (see :mod:`facelab.options`).

Per command (``train``, ``apply``, ``remove``, ``fetch``, ``labels``), the
declarations are the flags, the checks of :mod:`facelab.stages.seg`'s settings
and the tables in ``docs/segmentation.md``. No PyTorch here, so ``--help`` is quick.
"""

from __future__ import annotations

from facelab.options import Option
from facelab.types import FaceType

SIDE_CHOICES = ("src", "dst", "both")
DEFAULTS = {"resolution": 256, "batch_size": 8}
_MINUTES = "use a number of minutes greater than 0"

NAME = Option("name", str, "segmenter", "Segmenter folder under model/ (default: segmenter).",
              hint="use letters, digits, '-' or '_'", doc="Folder under `model/` holding the segmenter.")
DEVICE = Option("device", str, "auto", "auto (default), cpu, cuda, cuda:N or mps.", metavar="D",
                doc="`auto`, `cpu`, `cuda`, `cuda:N`, `mps`.")


def _side(default: str, what: str) -> Option:
    return Option("side", str, default, f"src, dst or both: the face sets to {what} (default {default}).",
                  choices=SIDE_CHOICES, metavar="SIDE", doc=f"`src`, `dst` or `both`: the face sets to {what}.")


OPTIONS: dict[str, tuple[Option, ...]] = {
    "train": (
        NAME,
        Option("minutes", float, None, "Train for this many minutes (this run).", lo=0, lo_open=True, hint=_MINUTES,
               metavar="M", doc="Wall-clock budget of this run."),
        Option("iterations", int, None, "Train until this total iteration.", flags=("--iterations", "--target-iteration"),
               lo=1, hi=100_000_000, hint="use a whole number from 1 to 100000000, or leave it unset",
               doc="Total iteration to train up to. With neither budget: until Ctrl+C."),
        _side("both", "train on"),
        Option("pseudo_labels", bool, True,
               "Also train on faces without drawn labels, with their landmark hull as target (default on).",
               flags=("--pseudo-labels/--labels-only",),
               doc="On: faces without polygons train with the landmark hull as target, so a first segmenter exists "
                   "before anything is drawn. `--labels-only`: only faces with drawn polygons (DeepFaceLab's XSeg)."),
        Option("iou_loss", bool, False,
               "Add the Lovász hinge, a surrogate of the mask's IoU, to the cross entropy (measured: about the "
               "same held-out IoU in labels-only runs; docs/segmentation.md).", flags=("--iou-loss",),
               doc="The Lovász hinge added to the pixel-wise cross entropy: each pixel's error weighed by what it "
                   "costs that face's IoU, the measure masks are judged by. Measured in labels-only runs (below): "
                   "+0.006 on the steady held-out faces, no gain flip-averaged, so it is not the default."),
        Option("resolution", int, None, "Face side it segments, 64..512, a multiple of 64 (first run only; default 256).",
               lo=64, hi=512, multiple_of=64, fixed=True, shown_default=str(DEFAULTS["resolution"]),
               doc="Face side, 64..512, a multiple of 64."),
        Option("face_type", str, None, "Face type it segments (first run only; default: that of most faces).",
               flags=("--face-type",), choices=tuple(t.value for t in FaceType), fixed=True, metavar="TYPE",
               shown_default="the faces'", doc="Face type of its input; faces of another type are re-cut to it."),
        Option("batch_size", int, None, "Faces per iteration, 1..256 (saved; default 8).", flags=("--batch-size",),
               lo=1, hi=256, saved=True, shown_default=str(DEFAULTS["batch_size"]), metavar="B",
               doc="Faces per iteration, 1..256."),
        DEVICE,
        Option("seed", int, 0, "Random seed for the initial weights and the batches (default 0).", lo=0, hi=2**63 - 1,
               hint="use a whole number >= 0", doc="Initial weights and batches."),
        Option("save_every_minutes", float, 15.0, "Minutes between saves (default 15).", flags=("--save-every",), lo=0,
               lo_open=True, hint=_MINUTES, metavar="M", doc="Minutes between saves."),
        Option("preview_every_minutes", float, 2.0, "Minutes between previews (default 2).", flags=("--preview-every",),
               lo=0, lo_open=True, hint=_MINUTES, metavar="M", doc="Minutes between previews."),
    ),
    "apply": (NAME, _side("both", "write masks into"), DEVICE,
              Option("batch_size", int, 16, "Faces per batch (default 16).", flags=("--batch-size",), lo=1, hi=1024,
                     metavar="B", doc="Faces run through the segmenter at once."),
              Option("force", bool, False, "Apply again to faces that already hold this segmenter's mask.",
                     flags=("--force",), doc="Also faces already masked by these weights (they are skipped otherwise)."),
              Option("flip_average", bool, False,
                     "Average each mask with that of the mirrored face: a little more accurate, about 2/3 of the speed.",
                     flags=("--flip-average",),
                     doc="Run every face twice, as is and mirrored, and keep the mean mask: 0.006-0.016 higher "
                         "held-out IoU where measured (below), at about two thirds of the faces per second (the "
                         "network runs twice). Faces masked without it are masked again.")),
    "remove": (_side("both", "take the applied masks out of"),),
    "fetch": (_side("both", "copy labelled faces from"),
              Option("to", str, None, "Folder to copy them to (default: workspace/aligned_xseg).", flags=("--to",),
                     metavar="DIR", doc="Destination folder (default `aligned_xseg/` in the workspace).")),
    "labels": (_side("both", "count or clear the labels of"),
               Option("remove", bool, False, "Remove the drawn polygons (a backup JSON is kept in the state folder).",
                      flags=("--remove",), doc="Delete the drawn polygons; they are first saved to a backup file.")),
}
