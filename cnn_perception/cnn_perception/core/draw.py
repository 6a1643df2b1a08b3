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


def heatmap_overlay(rgb: np.ndarray, score_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Jet-coloured 0..1 map blended over the frame (red = anomalous)."""
    heat = cv2.applyColorMap(np.clip(score_map * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1 - alpha, heat, alpha, 0)


def draw_defects(rgb: np.ndarray, result) -> np.ndarray:
    """Heatmap overlay, boxes and the image score (a DefectResult) on one frame.

    A frame off the surface the model knows is drawn faded, without a heatmap: it was
    not inspected, and a map of "everything differs" would read as a defect.
    """
    if getattr(result, 'off_surface', False):
        faded = (rgb.astype(np.uint16) + 2 * 128) // 3
        return draw_label_panel(faded.astype(np.uint8), ['off surface: not inspected'])
    out = heatmap_overlay(rgb, result.score_map)
    thick = max(1, min(rgb.shape[:2]) // 160)
    for b in result.boxes:
        cv2.rectangle(
            out, (b.x, b.y), (b.x + b.width - 1, b.y + b.height - 1), (255, 255, 255), thick + 1
        )
        cv2.rectangle(out, (b.x, b.y), (b.x + b.width - 1, b.y + b.height - 1), (255, 0, 0), thick)
    label = f'{"DEFECT" if result.is_defect else "ok"} {result.score:.2f}'
    return draw_label_panel(out, [label])


def draw_objects(rgb: np.ndarray, boxes, ids=None) -> np.ndarray:
    """Green boxes of localised objects (`core.localize.ObjectBox`), labelled, on a copy."""
    out = rgb.copy()
    thick = max(1, min(rgb.shape[:2]) // 240)
    scale = max(0.4, min(rgb.shape[:2]) / 900)
    for i, b in enumerate(boxes):
        p0 = (int(b.x), int(b.y))
        p1 = (int(b.x + b.width) - 1, int(b.y + b.height) - 1)
        cv2.rectangle(out, p0, p1, (40, 230, 60), thick + 1)
        track = f'{ids[i]} ' if ids and ids[i] else ''
        text = f'{track}{b.label} {b.score:.2f}'
        y = max(p0[1] - 4, 12)
        cv2.putText(out, text, (p0[0] + 2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thick + 2, cv2.LINE_AA)  # fmt: skip
        cv2.putText(out, text, (p0[0] + 2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (120, 255, 120),
                    thick, cv2.LINE_AA)  # fmt: skip
    return out
