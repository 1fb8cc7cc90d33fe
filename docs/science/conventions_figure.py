"""The conventions as a picture, drawn with the functions of reduction.conventions themselves."""

import matplotlib.pyplot as plt
import numpy as np

from reduction.conventions import sky_to_derotated_xy, sky_to_frame_xy, star_centre

shape = (21, 21)
cy, cx = star_centre(shape)
separation, pa, alpha = 7.0, 30.0, 40.0
fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.6))
for ax, title in zip(axes, ("derotated image (north up, east left)", f"raw frame, derotation angle α = {alpha:g}°")):
    ax.imshow(np.zeros(shape), origin="lower", cmap="Greys", vmin=0, vmax=1, extent=(-0.5, 20.5, -0.5, 20.5))
    ax.set_xticks(range(0, 21, 5))
    ax.set_yticks(range(0, 21, 5))
    ax.grid(color="0.85", lw=0.5)
    ax.plot(cx, cy, marker="*", ms=14, color="C1")
    ax.text(0.5, 0.8, f"star: star_centre{shape} = (y, x) = ({cy}, {cx})", fontsize=7.5)
    ax.set_xlabel("x (column, 0-based: pixel centres at integers)")
    ax.set_ylabel("y (row)")
    ax.set_title(title, fontsize=9)
x, y = sky_to_derotated_xy(separation, pa, (cy, cx))
ax = axes[0]
ax.plot(x, y, "o", color="C3")
ax.annotate(
    f"companion: PA {pa:g}° east of north,\n{separation:g} px (sky_to_derotated_xy)",
    (x, y),
    (x - 9, y + 2),
    fontsize=7.5,
)
ax.annotate("", (cx, cy + 9), (cx, cy), arrowprops={"arrowstyle": "->", "color": "C0"})
ax.text(cx + 0.3, cy + 8.5, "N", color="C0")
ax.annotate("", (cx - 9, cy), (cx, cy), arrowprops={"arrowstyle": "->", "color": "C0"})
ax.text(cx - 9, cy + 0.4, "E", color="C0")
arc = np.deg2rad(np.linspace(90, 90 + pa, 30))
ax.plot(cx + 4 * np.cos(arc), cy + 4 * np.sin(arc), color="C0", lw=1)
ax.text(cx - 2.6, cy + 4.2, "PA", color="C0", fontsize=8)
xr, yr = sky_to_frame_xy(separation, pa, alpha, (cy, cx))
ax = axes[1]
ax.plot(xr, yr, "o", color="C3")
ax.annotate(
    "the same companion in a raw frame (sky_to_frame_xy):\nat polar angle PA + 90° - α from +x;\n"
    "rotating the frame by -α (vip's cube_derotate)\nputs north up",
    (float(xr), float(yr)),
    (0.8, 3.0),
    fontsize=7.5,
    arrowprops={"arrowstyle": "->", "color": "0.5"},
)
fig.tight_layout()
