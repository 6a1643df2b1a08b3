"""Overlays for people watching in rviz: labels, boxes and heatmaps drawn with OpenCV."""

import cv2
import numpy as np


def draw_label_panel(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """Copy of the frame with a translucent panel of text lines at the top left."""
    out = rgb.copy()
    if not lines:
        return out
    scale = max(0.4, min(out.shape[1], out.shape[0]) / 800)
    thick = max(1, round(scale * 2))
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0] for t in lines]
    line_h = max(s[1] for s in sizes) + round(10 * scale)
    w = max(s[0] for s in sizes) + round(16 * scale)
    h = line_h * len(lines) + round(8 * scale)
    w, h = min(w, out.shape[1]), min(h, out.shape[0])
    region = out[:h, :w]
    region[:] = (region * 0.4).astype(np.uint8)
    for i, text in enumerate(lines):
        y = round(8 * scale) + line_h * (i + 1) - round(6 * scale)
        color = (255, 255, 255) if i else (80, 255, 80)
        cv2.putText(
            out,
            text,
            (round(8 * scale), y),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            color,
            thick,
            cv2.LINE_AA,
        )
    return out
