"""Face masks beyond the landmark hull (:func:`facelab.align.hull_mask`): the polygons a person draws on a
face (:mod:`facelab.masks.polygons`), which the trainable segmentation learns from."""
