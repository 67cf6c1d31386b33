"""Identity loss: the swapped face's dlib descriptor pulled towards the src person's.

The autoencoder learns identity only indirectly: the src decoder paints src faces, and a dst code
decoded by it should come out as src. Early in training (the minutes a CPU user has) the swap keeps
much of dst's look. This term measures the swap the way ``facelab eval`` does (dlib's face descriptor,
:mod:`facelab.identity_net`, differentiable) and pushes it towards src.

Each step takes a few dst faces without augmentation, swaps them (dst code, src decoder), pastes the
swapped face into the dst face through the soft hull mask (as merging does, so the descriptor sees
the face the viewer sees, with dst's hair and background), cuts dlib's aligned 150 px chip out of it
with a per-face affine (from the dst landmarks: the swap keeps dst's pose and expression), and adds
``power * mean ||descriptor - src descriptor||`` to the loss. The src descriptor is the mean over up
to :data:`SRC_SAMPLE` src faces at their stored resolution, computed once when training starts.

The gradient of this term reaches the encoder and the bottleneck only: it moves the codes of dst faces
towards codes the src decoder paints as src. The decoders learn from real faces alone. A decoder
trained by this term as well learns within minutes to paint a texture that fools the descriptor
(measured on the demo pair at power 1: distance 0.45, under the 0.6 same-person threshold, and a face
no viewer would accept). Moving only the codes still games it early in training (power 0.2: distance
0.68 -> 0.46 with blotches and a smeared eye), so the option is off by default; docs/training.md.

Cost on 2 CPU cores: 36 ms per step for the default :data:`FACES_PER_STEP` faces (descriptor forward
and backward in float32, bfloat16 is no faster here; the quick model's own step is about 80 ms):
about 30 % fewer iterations per minute.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facelab.errors import FacelabError
from facelab.faceimage import read_face
from facelab.identity_net import CHIP_SIZE, chip_matrix, load_face_descriptor_net
from facelab.train.dataset import FaceDataset
from facelab.train.losses import mask_loss
from facelab.train.objective import soft_mask

SRC_SAMPLE = 64  # src faces averaged into the target descriptor
FACES_PER_STEP = 2


def _theta(face_to_chip: np.ndarray, face_size: int) -> np.ndarray:
    """``(2, 3)`` for :func:`torch.nn.functional.affine_grid`: chip coordinates in [-1, 1] -> face coordinates in
    [-1, 1] (``align_corners=True``), from an affine face pixels -> chip pixels."""
    m = np.vstack([face_to_chip, [0, 0, 1]])
    chip_to_face = np.linalg.inv(m)
    # normalized -> pixels on the chip side, pixels -> normalized on the face side
    to_px = np.array([[(CHIP_SIZE - 1) / 2, 0, (CHIP_SIZE - 1) / 2], [0, (CHIP_SIZE - 1) / 2, (CHIP_SIZE - 1) / 2], [0, 0, 1]])
    to_norm = np.array([[2 / (face_size - 1), 0, -1], [0, 2 / (face_size - 1), -1], [0, 0, 1]])
    return (to_norm @ chip_to_face @ to_px)[:2].astype(np.float32)


class IdentityLoss:
    """The identity term for one training run.

    Args:
        src_paths: the src face files (the target is their mean descriptor).
        dst: the dst training faces (their landmarks place each swap's chip).
        power: weight of the term (0..10).
        device: where the descriptor network runs.
        seed: the faces of step ``i`` are a function of ``(seed, i)``, so a resumed run picks what an
            uninterrupted one would.
        faces_per_step: dst faces swapped and measured each step.
    """

    def __init__(self, src_paths: list[Path], dst: FaceDataset, power: float, device: torch.device, seed: int = 0,
                 faces_per_step: int = FACES_PER_STEP) -> None:
        self.power, self.device, self.seed = float(power), device, seed
        self.faces_per_step = min(faces_per_step, len(dst))
        self.net = load_face_descriptor_net(device)
        self.dst = dst
        self.thetas = torch.from_numpy(np.stack([_theta(chip_matrix(lm), dst.resolution) for lm in dst.landmarks])).to(device)
        self.target = self._src_descriptor(src_paths)

    @torch.no_grad()
    def _src_descriptor(self, paths: list[Path]) -> torch.Tensor:
        idx = np.unique(np.linspace(0, len(paths) - 1, min(SRC_SAMPLE, len(paths))).round().astype(int))
        chips = []
        for i in idx:
            try:
                image, record = read_face(paths[i])
            except FacelabError:  # the dataset names unreadable faces already
                continue
            if len(record.landmarks) != 68:
                continue
            rgb = np.ascontiguousarray(image[..., ::-1])
            chips.append(cv2.warpAffine(rgb, chip_matrix(record.landmarks), (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_AREA))
        if not chips:
            raise FacelabError("identity loss: no src face could be read", "re-run `facelab extract src`")
        x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float().div_(255).to(self.device)
        return torch.cat([self.net(x[k:k + 16]) for k in range(0, len(x), 16)]).mean(0)

    def chips(self, faces_bgr: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """dlib chips ``(N, 3, 150, 150)`` RGB of aligned faces ``(N, 3, R, R)`` BGR, the dst faces at ``idx``."""
        theta = self.thetas[torch.as_tensor(idx, device=self.thetas.device)]
        grid = F.affine_grid(theta, [len(idx), 3, CHIP_SIZE, CHIP_SIZE], align_corners=True)
        return F.grid_sample(faces_bgr.flip(1), grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def distances(self, faces_bgr: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """``(N,)`` descriptor distances of aligned faces (dst faces at ``idx``, or their swaps) to src."""
        return (self.net(self.chips(faces_bgr.float(), idx)) - self.target).norm(dim=1)

    def __call__(self, model, iteration: int, amp=None) -> torch.Tensor:
        """The weighted term for step ``iteration`` (a scalar with gradients into ``model``'s encoder and src decoder)."""
        from contextlib import nullcontext

        from facelab.train.loop import to_tensor

        rng = np.random.default_rng([self.seed, iteration, 0x1D])
        idx = rng.choice(len(self.dst), self.faces_per_step, replace=False)
        faces = to_tensor(self.dst.faces[idx], self.device)
        mask = soft_mask(to_tensor(self.dst.masks[idx], self.device))
        # the decoders learn only from real faces: this term moves the dst codes (encoder, bottleneck), so the
        # swap stays something the src decoder paints for src faces. Let it train the decoder too and it
        # paints a pattern that fools the descriptor instead (measured: distance 0.45, face unrecognisable)
        decoders = [p for n, p in model.named_parameters() if n.startswith("decoder") and p.requires_grad]
        autocast = (lambda: torch.autocast(self.device.type, dtype=amp.dtype)) if amp is not None else nullcontext
        try:
            for p in decoders:
                p.requires_grad_(False)
            with autocast():
                swapped, _ = model.swap(faces)
        finally:
            for p in decoders:
                p.requires_grad_(True)
        # codes moved by this term must still give the swap dst's face outline: without this the src decoder's
        # mask for them shrank to a few blobs and merging showed dst's own face through the holes (measured:
        # every frame then closer to dst than to src)
        with autocast():
            _, swap_mask = model.swap(faces)
        hull = to_tensor(self.dst.masks[idx], self.device)
        merged = swapped.float() * mask + faces * (1 - mask)
        return self.power * self.distances(merged, idx).mean() + mask_loss(swap_mask.float(), hull)
