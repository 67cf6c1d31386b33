"""Trainable face segmentation (DeepFaceLab's XSeg): which pixels of an aligned face are face.

- :mod:`~facelab.seg.net`: the segmenter network;
- :mod:`~facelab.seg.store`: the applied mask inside a face file's metadata;
- :mod:`~facelab.seg.data`: training targets (drawn polygons, or the landmark hull as a pseudo-label);
- :mod:`~facelab.seg.augment`: the augmentation that makes a few labels go far;
- :mod:`~facelab.seg.model`: a trained segmenter on disk, and running it on faces;
- :mod:`~facelab.seg.training`: one training step and preview, driven by :mod:`facelab.train.runner`.
"""
