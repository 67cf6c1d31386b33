"""Training machinery: dataset, augmentation, losses, checkpoints, the loop and previews."""
