"""Every option of `facelab train`, declared once (see :mod:`facelab.options`).

:data:`TRAINER` are the trainer's knobs (fields of
:class:`facelab.stages.train.TrainSettings`), those marked ``saved`` kept in the
model folder's ``config.json`` "options"; :data:`ARCHITECTURE` the options a
model's constructor takes (its typed config), fixed when the model is created,
each listing the models that have it. The CLI flags, the first-run questions, the ``--config`` TOML
keys, the checks and the tables in ``docs/training.md`` all come from here.
"""

from __future__ import annotations

from pathlib import Path

from facelab import color
from facelab.options import Option
from facelab.train.holdout import MAX_HOLDOUT

COLOR_TRANSFERS = ("none", *color.COLOR_TRANSFERS)
"""The ``color_transfer`` option's values: none, or a colour transfer of :mod:`facelab.color` (the merge's too)."""
_COLORS = ", ".join(COLOR_TRANSFERS)

_BASIC, _SAMPLING, _LATE, _SPEED = "Options", "Sampling, discriminators and pretraining", "Late training", "Speed"
_ARCH, _LOSSES = "Architecture (first run only)", "Losses and memory"

TRAINER: tuple[Option, ...] = (
    Option("model", str, "quick", "Model architecture: quick (default), h64, h128, df, liaef128, ... (see docs/training.md).",
           flags=("--model",), group=_BASIC, doc="Architecture. A folder holding another architecture is refused.",
           shown_default="`quick`"),
    Option("name", str, None, "Model folder name under model/ (default: the model name).", group=_BASIC,
           doc="Folder under `model/`. Use different names for several models.", shown_default="model name"),
    Option("iterations", int, None, "Train until this total iteration (saved: later runs without it train up to it; 0 removes a saved target).",
           flags=("--iterations", "--target-iteration"), lo=1, hi=100_000_000, saved=True, group=_BASIC,
           hint="use a whole number from 1 to 100000000, or leave it unset",
           question="Target iteration", explain="Stop at this total iteration (none: train until Ctrl+C or --minutes).",
           doc="Total iteration to train up to (DeepFaceLab's \"target iteration\"). A model at 3000 run with 5000 trains 2000 "
               "more. Saved with the model: a later run without it trains up to the saved target (and stops at once if the "
               "model is there already); `--iterations 0` removes the target."),
    Option("no_target", bool, False, "Forget a saved target iteration (the same as --iterations 0).", flags=("--no-target",),
           group=_BASIC, doc="Forget the target iteration saved with the model: train until Ctrl+C or `--minutes` "
                             "(the same as `--iterations 0`; not with `--iterations N`)."),
    Option("minutes", float, None, "Train for this many minutes (this run).", metavar="M", lo=0, lo_open=True, group=_BASIC,
           hint="use a number of minutes greater than 0",
           doc="Wall-clock budget of this run. With both budgets, whichever ends first; with neither, until Ctrl+C."),
    Option("batch_size", int, None, "Faces per side per iteration (saved).", flags=("--batch-size",), lo=1, hi=512, saved=True,
           group=_BASIC, shown_default="8", question="Batch size",
           explain="Faces per side per iteration. Larger learns smoother but needs more memory.",
           doc="Faces per side per iteration (1..512). Lower it on out-of-memory errors."),
    Option("device", str, "auto", "auto (default), cpu, cuda, cuda:N or mps.", metavar="D", group=_BASIC, shown_default="`auto`",
           doc="`auto` (best GPU, else mps, else cpu), `cpu`, `cuda`, `cuda:N`, `mps`."),
    Option("gpu", int, None, "Train on CUDA GPU INDEX; model files get the prefix gpuINDEX_.", metavar="INDEX", lo=0, group=_BASIC,
           hint="use 0, 1, ...",
           doc="Train on `cuda:INDEX`. The model files then carry the prefix `gpuINDEX_` (`gpu1_weights.safetensors`, "
               "`gpu1_state.json`, `gpu1_preview.jpg`, backups `backups/gpu1_<time>/`), so two GPUs can train variants in "
               "one folder. Cannot be combined with another `--device`. In a terminal, a run without `--gpu`/`--device` on a "
               "folder that holds only such variants asks which to continue; a new model beside them gets a warning. "
               "`facelab merge --gpu INDEX` merges with one (see [merge.md](merge.md))."),
    Option("seed", int, 0, "Random seed for initial weights and sampling (the same seed trains the same model).", lo=0,
           group=_BASIC, doc="Seed of the initial weights and of every batch: the same seed, faces and options train "
                             "the same model, resumed or not."),
    Option("flip", bool, True, "Random mirror flip of faces (saved; default on).", flags=("--flip/--no-flip",), saved=True,
           group=_BASIC, question="Random flip",
           explain="Mirror faces at random: more poses from few faces (turn off for asymmetric faces).",
           doc="Random mirror flip of training faces. Turn off when the face is asymmetric (a scar, a parting) and the "
               "flip would blur it."),
    Option("src_scale", float, 0.0, "Scale src faces by this percent, -30..30 (saved; default 0).", flags=("--src-scale",),
           lo=-30, hi=30, saved=True, group=_BASIC, hint="use a percentage from -30 to 30",
           question="Src face scale modifier %", explain="Scale src faces by -30..30 percent to match dst face sizes.",
           doc="Scale src faces by P percent (-30..30) in augmentation, so the swapped face comes out that much larger "
               "(or smaller) than dst's."),
    Option("sort_by_yaw", bool, False, "Feed src faces of about the dst faces' yaw (saved; default off).",
           flags=("--sort-by-yaw/--no-sort-by-yaw",), saved=True, group=_BASIC, question="Feed src faces sorted by yaw",
           explain="Pair each dst face with src faces of a similar head turn.",
           doc="For each sampled dst face, feed a src face of about the same yaw (left-right head turn), picked at random "
               "among the nearest 5 % of the src set by yaw. Helps when src has few profile faces."),
    Option("preview_history", bool, False, "Keep previews/preview_<iteration>.jpg (saved; default off).",
           flags=("--preview-history/--no-preview-history",), saved=True, group=_BASIC, question="Write preview history",
           explain="Keep every preview in model/<name>/previews, not only the latest.",
           doc="Also keep `previews/preview_<iteration>.jpg` at every preview. The latest preview is always "
               "`model/<name>/preview.jpg`."),
    Option("backups", int, 3, "Hourly backups to keep in model/<name>/backups, 0 = none (saved; default 3).", lo=0, hi=100,
           saved=True, group=_BASIC, hint="use a whole number from 0 to 100 (0 = no backups)",
           question="Hourly backups to keep", explain="Copies of the model kept in model/<name>/backups (0 = none).",
           doc="Keep the newest N backups in `model/<name>/backups/<YYYYMMDD-HHMMSS>/`. A backup is made at a save when "
               "the newest one is `--backup-every` minutes old or more (and at the first save). 0 = no backups."),
    Option("save_every_minutes", float, 15.0, "Minutes between saves (default 15).", flags=("--save-every",), metavar="M", lo=0, lo_open=True,
           group=_BASIC, hint="use a number of minutes greater than 0",
           doc="Minutes between saves (a save also happens at the end and on Ctrl+C)."),
    Option("preview_every_minutes", float, 2.0, "Minutes between previews (default 2).", flags=("--preview-every",), metavar="M", lo=0, lo_open=True,
           group=_BASIC, hint="use a number of minutes greater than 0", doc="Minutes between previews."),
    Option("backup_every_minutes", float, 60.0, "Minutes between backups (default 60).", flags=("--backup-every",), metavar="M", lo=0, lo_open=True,
           group=_BASIC, hint="use a number of minutes greater than 0",
           doc="Minutes between backups (a backup is made at the first save after this long)."),
    Option("holdout", int, None, "Keep N faces of each side out of training (evenly spaced; fixed at the first run) for "
                                 "`facelab eval --reconstruction` (default 0).", lo=0, hi=MAX_HOLDOUT, group=_BASIC,
           shown_default="0 (fixed at the first run)", hint=f"use 0..{MAX_HOLDOUT} faces per side",
           doc="Keep N faces of each side out of training, evenly spaced through the set in file-name order, listed in "
               "`model/<name>/holdout.json` with each face's frame and face index (so a face renamed by `sort` stays out). "
               "`facelab eval --reconstruction` measures SSIM/PSNR on them: quality on faces the model never saw. Fixed "
               "when the model is created: a different value on a later run is refused, as it would put faces the model "
               "saw into the \"unseen\" set. Not used while pretraining."),
    # sampling, discriminators and pretraining
    Option("eyes_mouth_priority", bool, False, "Extra loss weight on eyes, brows and mouth: sharper details, e.g. eye "
                                               "direction, and a mouth that follows dst's (saved; default off).",
           flags=("--eyes-mouth-priority/--no-eyes-mouth-priority",), saved=True, group=_SAMPLING,
           question="Eyes and mouth priority", explain="Extra loss weight on eyes, brows and mouth: sharper eyes and teeth.",
           doc="an extra L1 loss (weight 30; `quick`: 10) on the eyes with brows and the mouth (hulls of their "
               "landmarks, widened by 1/32 of the side): these carry expression and gaze and are what a blurry average "
               "face loses first. On `quick`'s minutes-long runs it makes the mouth follow dst's where it otherwise "
               "depends on the seed (demo pair, five seeds: +0.82 to +0.91 against -0.58 to +0.88), but when the src "
               "set holds one expression (72 frames of one smile) it turned the mouth the other way (-0.85 and -0.66 "
               "against +0.13 and +0.84): turn it on when the src faces cover dst's expressions (`facelab faceset "
               "coverage` compares their mouth openings), and check `facelab eval`'s `mouth_corr` (docs/quality.md)"),
    Option("uniform_yaw", bool, False, "Sample faces evenly over head turn, so rare profiles train as often as frontal "
                                       "faces (saved; default off).", flags=("--uniform-yaw/--no-uniform-yaw",), saved=True,
           group=_SAMPLING, question="Uniform yaw distribution of samples",
           explain="Train rare head turns (profiles) as often as frontal faces.",
           doc="sample faces evenly over 16 yaw ranges (then at random within one), on both sides: rare profiles train "
               "as often as frontal faces"),
    Option("color_transfer", str, "none", f"Recolour src samples towards random dst faces: {_COLORS} (saved; default none).", flags=("--color-transfer", "--ct-mode"),
           choices=COLOR_TRANSFERS, saved=True, group=_SAMPLING,
           question=f"Colour transfer for src samples ({_COLORS})",
           explain="Recolour src faces towards random dst faces so the swap fits dst's lighting.",
           doc="recolour each src sample towards a random dst face, measured inside both face hulls, before "
               "augmentation: `rct` (Lab mean/std; colour spread narrowed, never widened), `lct` (linear, covariance), "
               "`mkl` (Monge-Kantorovitch linear), `idt` (iterative distribution transfer), `sot` (sliced optimal "
               "transport): the same functions as `facelab merge --color` (`facelab.color`). The model then meets src "
               "faces under dst's light and colours"),
    Option("gan_power", float, 0.0, "Patch-GAN loss weight 0..10, 0 = off; try 0.1 once the faces are sharp (saved).",
           lo=0, hi=10, saved=True, group=_SAMPLING, hint="use a number from 0 (off) to 10", question="GAN power",
           explain="0..10; 0 = off. A patch discriminator sharpens the src faces; turn it on (0.1) only once the faces are sharp.",
           doc="0..10: a patch discriminator (one logit per ~R/5 patch) judges the src reconstructions against the real "
               "src faces; its loss is added with weight P. Turn it on (0.1) only once the faces are sharp; `--clip-grad` "
               "steadies it. The discriminator is saved as `adversarial.safetensors`"),
    Option("true_face_power", float, 0.0, "Code discriminator weight 0..1, 0 = off (quick, h64, h128, df, sae df); try "
                                          "0.01 for a swap closer to src (saved).", lo=0, hi=1, saved=True, group=_SAMPLING,
           hint="use a number from 0 (off) to 1", question="True face power",
           explain="0..1; 0 = off (models with one bottleneck for both faces: df archi, not liae). Makes the swap lean "
                   "further to the src face; try 0.01.",
           doc="0..1, models whose src and dst share one bottleneck (`quick`, `h64`, `h128`, `df`, `sae` with a `df` "
               "archi; not the liae ones): a code discriminator learns to tell src codes from dst codes and the "
               "model learns to fool it, so the swap leans further towards the src face. Try 0.01"),
    Option("identity_power", float, 0.0, "Identity loss weight 0..10, 0 = off: pulls the swap's dlib face descriptor "
                                         "towards src's (any model; saved; docs/training.md).", lo=0, hi=10, saved=True,
           group=_SAMPLING, hint="use a number from 0 (off) to 10", question="Identity power",
           explain="0..10; 0 = off. Pulls the swap's face descriptor (dlib's) towards src's: a swap that looks more like "
                   "src. About 30 % fewer iterations per minute on a CPU; games the descriptor early in training "
                   "(docs/training.md).",
           doc="0..10, any model: an identity loss. Each step a few dst faces are swapped, pasted into their dst face "
               "through the hull mask, cut to dlib's aligned chip, and measured with dlib's face descriptor, ported to "
               "torch (`facelab.identity_net`; the weights come from the installed `face-recognition-models` package, "
               "nothing is downloaded). P times the distance to the mean src descriptor is added to the loss. The "
               "gradient moves only the encoder and bottleneck, never a decoder, and the swap's mask is also trained to "
               "dst's face outline. **Measured early in training it games the descriptor rather than improving the "
               "swap** (demo pair, 5 min of `quick`, 2 faces per step, 30 % fewer iterations per minute: distance 0.68 "
               "-> 0.46 at P = 0.2, yet blotches and a smeared eye, with the random warp before its fix; on the sharper "
               "no-warp `quick` P = 0.2 made the distance worse, 0.51 against 0.45, with blotches over eyes and nose; see "
               "docs/eval.md). Try it only on a model whose swap is already sharp, with P <= 0.2, and judge the result by "
               "eye, because `facelab eval`'s identity figures then flatter it (eval warns)"),
    Option("expression_power", float, 0.0, "Expression matching weight 0..1, 0 = off (quick, h64, h128, df, sae df; "
                                           "quick's default 0.05): the swap's mouth follows dst's, not src's usual one "
                                           "(saved; docs/training.md).",
           lo=0, hi=1, saved=True, group=_SAMPLING, hint="use a number from 0 (off) to 1", question="Expression power",
           shown_default="0 (`quick`: 0.05)",
           explain="0..1; 0 = off (models with one bottleneck for both faces; quick starts at 0.05). Pulls each dst "
                   "face's code towards the codes of the src faces with the same mouth opening, eye opening and head "
                   "pose, so the swap opens its mouth as wide as dst does instead of keeping src's usual mouth. Try 0.05.",
           doc="0..1, models whose src and dst share one bottleneck (`quick`, `h64`, `h128`, `df`, `sae` with a `df` "
               "archi): expression matching. Before training each dst face is matched, by its stored landmarks, to the "
               "src faces with the nearest mouth opening, eye opening, yaw and pitch; each step P times the distance "
               "of a few dst faces' codes to their matches' mean code is added to the loss (the gradient moves the "
               "encoder and bottleneck only). Without it a swap keeps src's usual mouth when the two people hold "
               "their mouths differently through their clips (docs/quality.md, session 20). A new `quick` model "
               "starts with 0.05 (a model saved without the option takes it too): over eight runs on three pairs the "
               "swap's mouth correlation went from -0.58..0.89 to 0.70..0.91, at some cost on the seeds that already "
               "followed dst's mouth (0.80-0.89 -> 0.70-0.84) (docs/quality.md, session 21)"),
    Option("pretrain", Path, None, "Pretrain both sides on this folder of aligned faces of many people; a later run "
                                   "without it continues on the pair from iteration 0.", group=_SAMPLING,
           doc="train both sides on a folder of aligned faces of many people (made by `facelab extract`; any face type, "
               "re-cut for the model). GAN, true face, colour transfer and yaw sorting are off while pretraining. The "
               "first run without `--pretrain` ends pretraining: the weights stay, the iteration count, loss history and "
               "optimizer start again on the workspace's pair (the pretraining count is kept as `pretrained_iterations` "
               "in `state.json`)"),
    # losses and memory: any model, changeable on any run (older facelab kept them in the model's architecture)
    Option("pixel_loss", bool, False, "Train with pixel MSE instead of DSSIM (saved; default off).",
           flags=("--pixel-loss/--no-pixel-loss",), saved=True, group=_LOSSES, question="Use pixel loss",
           explain="Pixel MSE instead of DSSIM: sharper colours, can be less stable.",
           doc="pixel MSE instead of DSSIM + MSE"),
    Option("remove_gray_border", bool, False, "Leave the fill of faces cut at the frame edge out of the loss (saved; default off).",
           flags=("--remove-gray-border/--no-remove-gray-border",), saved=True, group=_LOSSES,
           question="Remove gray border",
           explain="Leave the fill of faces cut at the frame edge out of the loss, so the model does not learn the gray "
                   "border. Changeable later.",
           doc="pixels of a face that lay outside its frame (filled in when a face is cut at the frame edge) are left "
               "out of the loss, so the model does not learn to paint the fill"),
    Option("face_style_power", float, 0.0, "0-100: pull the swapped face towards dst's colours and light; only on a "
                                           "trained model, low, watching the preview: it can take over the swap (saved).",
           lo=0, hi=100, saved=True, group=_LOSSES, question="Face style power",
           explain="0-100: pull the swapped face towards dst's colours and light. Only on a trained model, low: from "
                   "the start it can take over the swap.",
           doc="0-100: the dst face decoded as src (the swap) is pulled towards dst's colour statistics inside the face "
               "(mean and spread per channel of a blurred copy), to fit the swap to the scene's light. Nothing else "
               "supervises the swap, so this term can take it over: on `quick` from the first step (demo pair, 5 "
               "minutes, 2026-12-06) power 10 painted a grid-patterned face and power 1 a blurred blob, closer to src "
               "in 57 % and 0 % of frames against 100 %. If you use it, use it late, on a trained model, at a low value, "
               "and watch the preview (a run under 5,000 iterations with a style power warns); the merge's colour transfer "
               "(`--color`) is the safer tool for colour"),
    Option("bg_style_power", float, 0.0, "0-100: pull the swap's surroundings towards dst's background (saved).", lo=0,
           hi=100,
           saved=True, group=_LOSSES, question="Background style power",
           explain="0-100: pull the area around the swapped face towards dst's background.",
           doc="0-100: the swap's surroundings are pulled towards dst's pixels outside the face (DSSIM + MSE)"),
    Option("optimizer_mode", int, 1, "1; 2: optimizer state in system RAM; 3: also recompute activations (sae; ~30 % "
                                        "slower, larger nets fit). Saved, changeable.", lo=1, hi=3, saved=True,
           group=_LOSSES, question="Optimizer mode (1, 2, 3)",
           explain="1: all on the GPU. 2: optimizer state in system memory (a network about twice as large fits). 3: "
                   "also recompute activations (about 30 % slower, three times as large).",
           doc="1: everything on the device; 2: optimizer state in system memory (a network about twice as large "
               "fits); 3: also recompute activations in the backward pass (about 30 % slower, three times as large; `sae` "
               "only: other models train as in mode 2, with a warning)"),
    # late training
    Option("random_warp", bool, True, "Random warp of the inputs (saved; default on, off for quick; turn off late in "
                                      "training for detail).", flags=("--random-warp/--no-random-warp",), saved=True,
           group=_LATE, shown_default="on (`quick`: off)",
           doc="warp the inputs at random (the autoencoder learns faces, not pixels); turning it off late in training "
               "sharpens detail. `quick`, the model for a first swap in minutes, starts without it: in 5 minutes on 2 "
               "cores the swap came out sharper and followed dst's pose and mouth better without it, on three pairs "
               "(figures in the README, \"Swap quality per training minute\"). The warp deforms each input by about a "
               "pixel (at 64 px) around the face's own place and scale; until 2026-12-04 it also shrank every input to "
               "83 %, which blurred every model trained with it"),
    Option("clip_grad", bool, False, "Clip the gradient norm to 1 (saved; default off, quick: on).", flags=("--clip-grad/--no-clip-grad",),
           saved=True, group=_LATE, shown_default="off (`quick`: on)",
           doc="clip the gradient norm to 1 for steadier training: a step whose gradients are longer is scaled down "
               "to 1, the others are left as they are. A new `quick` model starts with it on: on `quick` it acts on "
               "about 1 % of the steps (the early loss spikes) and over nine paired runs on three pairs it rescued "
               "the mouth of the two runs that had lost it and left the other figures within their noise, for "
               "1.1 ms of a ~95 ms step (docs/quality.md, session 26)"),
    Option("lr_dropout", float, 0.0, "Share of weight updates dropped each step, 0 (off) to <1, e.g. 0.3 (saved).",
           flags=("--lr-dropout",), lo=0, hi=1, hi_open=True, saved=True, group=_LATE, shown_default="0 (off)",
           hint="use a share from 0 (off) to below 1, e.g. 0.3",
           doc="each step, drop a share P of the weight updates at random (e.g. 0.3), which helps late in training"),
    # speed
    Option("workers", int, None, "Threads preparing batches ahead, 0..32 (default: 0 on CPU, up to 4 on a GPU).", lo=0, hi=32,
           group=_SPEED, shown_default="0 on a CPU, up to 4 on a GPU",
           doc="threads that prepare the next batches (augmentation, colour transfer) while the model trains"),
    Option("amp", bool, None, "Mixed precision (default on where the hardware runs it natively: CUDA, and bfloat16 on CPUs "
                              "with AVX-512 BF16 or AMX; 1.5x the iterations per minute for quick, about 3x for sae, same "
                              "loss per iteration); --no-amp trains in float32.", flags=("--amp/--no-amp",), group=_SPEED,
           shown_default="on where native",
           doc="mixed precision wherever the hardware runs it natively (see below); `--no-amp` trains in float32"),
)

ARCHITECTURE: tuple[Option, ...] = (
    Option("resolution", int, None, "Face size the model works at (architecture: first run only).", lo=16, hi=512,
           multiple_of=16, fixed=True, group=_ARCH, shown_default="the model's", question="Resolution",
           explain="Face size in pixels the model works at: a multiple of 16. Fixed after the first run.",
           doc="face size the model works at (`sae`'s question offers 64-512)"),
    Option("lightweight", bool, None, "Smaller encoder/decoder (h64, h128; architecture: first run only).",
           flags=("--lightweight",), fixed=True, group=_ARCH, question="Lightweight autoencoder",
           explain="Smaller encoder and decoders: faster, less detail. Fixed after the first run.",
           doc="smaller encoder and decoders (about 4x fewer parameters)"),
    Option("face_type", str, None, "half, mid, full, whole or head (architecture: first run only).", choices=("half", "mid", "full", "whole", "head"), metavar="TYPE",
           fixed=True, group=_ARCH, shown_default="the model's", question="Face type (half, mid, full, whole, head)",
           explain="How much of the head the model sees: half = eyes to mouth, full = whole face, whole = with the "
                   "forehead, head = with hair. Fixed after the first run.",
           doc="how much of the head the model sees (see Face types)"),
    Option("archi", str, None, "sae: df, liae or vg, with DeepFaceLab 2 letters u/d/t after a dash (df-ud, liae-ud).",
           fixed=True, group=_ARCH, shown_default="`df`", question="AE architecture (df, liae, vg; -u -d -t letters)",
           explain="df: one decoder per person, keeps src's likeness best. liae: shared decoder, blends dst's lighting "
                   "better. vg: df with a deeper encoder. Letters: u = normalised code, d = double resolution for the "
                   "cost of half, t = deeper. E.g. df-ud. Fixed after the first run.",
           doc="`df`, `liae` or `vg`, optionally with letters after a dash: u = normalised code, d = double resolution "
               "for the cost of half, t = deeper (`df-ud`)"),
    Option("ae_dims", int, None, "Autoencoder (bottleneck) dims, 32-1024.", lo=32, hi=1024, fixed=True, group=_ARCH,
           shown_default="the model's", question="AutoEncoder dimensions",
           explain="Size of the code every face is squeezed through (32-1024): more holds more detail, costs memory. "
                   "Fixed after the first run.", doc="size of the code every face is squeezed through"),
    Option("e_dims", int, None, "Encoder dims per channel, 21-85.", lo=21, hi=85, fixed=True, group=_ARCH,
           shown_default="the model's", question="Encoder dimensions per channel",
           explain="Encoder width (21-85). Fixed after the first run.", doc="encoder width"),
    Option("d_dims", int, None, "Decoder dims per channel, 10-85.", lo=10, hi=85, fixed=True, group=_ARCH,
           shown_default="the model's", question="Decoder dimensions per channel",
           explain="Decoder width (10-85). Fixed after the first run.", doc="decoder width"),
    Option("d_mask_dims", int, None, "Mask decoder dims per channel, 1-85.", lo=1, hi=85, fixed=True, group=_ARCH,
           shown_default="the model's", question="Decoder mask dimensions per channel",
           explain="Width of the mask branch (1-85). Fixed after the first run.", doc="width of the mask branch"),
    Option("d_res_blocks", int, None, "Residual blocks per decoder level, 0-8.", lo=0, hi=8, fixed=True, group=_ARCH,
           shown_default="0", question="Residual blocks per decoder level (y/n or 0-8)",
           explain="Residual blocks after each decoder upscale: sharper detail for more memory and time (y = 1, "
                   "SAEHD's decoder). Fixed after the first run.",
           doc="residual blocks after each decoder upscale (SAEHD's decoder has 1)"),
    Option("learn_mask", bool, None, "Predict a mask beside the face (default on).", flags=("--learn-mask/--no-learn-mask",),
           fixed=True, group=_ARCH, shown_default="on", question="Learn mask",
           explain="Predict a face mask beside the face, used by merge's learned mask modes. Fixed after the first run.",
           doc="predict a face mask beside the face, for merge's learned mask modes"),
    Option("double_res", bool, None, "quick: the face at twice the size the network body works at (DeepFaceLab's d).",
           flags=("--double-res/--no-double-res",), fixed=True, group=_ARCH, shown_default="off",
           question="Double resolution (face at twice the network body's size)",
           explain="A narrow extra level at the full face size in the encoder and decoders: the face is painted at "
                   "--resolution while the rest of the network works at half of it. Fixed after the first run.",
           doc="a narrow extra level at the face size in the encoder and decoders, so the rest of the network "
               "works at half the resolution (DeepFaceLab's `d` letter; `quick` only)"),
    Option("lightweight_encoder", bool, None, "Fewer encoder channels.", flags=("--lightweight-encoder",), fixed=True,
           group=_ARCH, question="Use lightweight encoder",
           explain="Fewer channels in the deeper encoder levels: faster and smaller, a little less detail. Fixed after "
                   "the first run.", doc="fewer channels in the deeper encoder levels"),
    Option("multiscale_decoder", bool, None, "Decoder also predicts at 1/2 and 1/4 scale.", flags=("--multiscale-decoder",),
           fixed=True, group=_ARCH, question="Use multiscale decoder",
           explain="The decoder also predicts faces at 1/2 and 1/4 size, trained against downscaled targets: can learn "
                   "faster and sharper. Fixed after the first run.",
           doc="the decoder also predicts at 1/2 and 1/4 size, trained against downscaled targets"),
)

CONFIG_FILE = Option("config", Path, None, "TOML file with any of these options as keys (flags win over it).",
                     flags=("--config",), cli_only=True, group=_BASIC)

ALL: tuple[Option, ...] = TRAINER + ARCHITECTURE
_SAVED_ORDER = ("flip", "src_scale", "sort_by_yaw", "preview_history", "backups", "random_warp", "clip_grad", "lr_dropout",
                "uniform_yaw", "eyes_mouth_priority", "color_transfer", "gan_power", "true_face_power", "identity_power",
                "expression_power", "pixel_loss", "remove_gray_border", "face_style_power", "bg_style_power", "optimizer_mode")
SAVED_DEFAULTS = {name: next(o.default for o in TRAINER if o.name == name) for name in _SAVED_ORDER}
"""Defaults of the options saved with a model (a model's ``TRAINING_DEFAULTS`` go over them)."""


def models_taking(name: str) -> tuple[str, ...]:
    """The registered models whose constructor (the architecture's typed config) takes option ``name``."""
    import inspect

    from facelab.models import MODELS, list_models

    return tuple(m for m in list_models() if name in inspect.signature(MODELS.get(m)).parameters)


def model_options(model: str) -> tuple[Option, ...]:
    """The architecture options model ``model`` takes."""
    return tuple(o for o in ARCHITECTURE if model in models_taking(o.name))


def groups() -> dict[str, tuple[Option, ...]]:
    """The options by docs table, in declaration order."""
    out: dict[str, list[Option]] = {}
    for o in ALL:
        out.setdefault(o.group, []).append(o)
    return {k: tuple(v) for k, v in out.items()}
