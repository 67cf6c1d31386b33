"""Marking everything facelab writes as synthetic, and finding those marks."""
