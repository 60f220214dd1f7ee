#!/usr/bin/env python3
"""Loss curves of `ebb train --json` runs as one self-contained SVG, and the final losses.

    plot_loss_curves.py OUT.svg NAME=RUN.json [NAME=RUN.json ...]

Each RUN.json holds one JSON object per step ("step", "loss") and a summary object last. The
first run is the reference: the table gives each run's final loss against it. Standard library
only.
"""
import json
import sys

WIDTH, HEIGHT, MARGIN = 720, 420, 60
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def read_run(path):
    steps, losses = [], []
    with open(path) as f:
        for line in f:
            obj = json.loads(line)
            if "step" in obj and "loss" in obj:
                steps.append(obj["step"])
                losses.append(obj["loss"])
    if not steps:
        sys.exit(f"plot_loss_curves: {path} holds no step objects")
    return steps, losses


def main(argv):
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        sys.exit(__doc__)
    runs = []
    for arg in argv[2:]:
        name, path = arg.split("=", 1)
        runs.append((name, *read_run(path)))
    max_step = max(s[-1] for _, s, _ in runs)
    all_losses = [x for _, _, l in runs for x in l]
    lo, hi = min(all_losses), max(all_losses)
    hi = hi if hi > lo else lo + 1

    def xy(step, loss):
        x = MARGIN + (WIDTH - 2 * MARGIN) * (step - 1) / max(max_step - 1, 1)
        y = HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (loss - lo) / (hi - lo)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" '
        f'y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 20}" text-anchor="middle">step</text>',
        f'<text x="15" y="{HEIGHT / 2}" transform="rotate(-90 15 {HEIGHT / 2})" '
        'text-anchor="middle">training loss</text>',
    ]
    for i in range(5):
        loss = lo + (hi - lo) * i / 4
        y = xy(1, loss).split(",")[1]
        parts.append(f'<text x="{MARGIN - 6}" y="{y}" text-anchor="end">{loss:.2f}</text>')
    for step in (1, max_step // 2, max_step):
        x = xy(step, lo).split(",")[0]
        parts.append(f'<text x="{x}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle">{step}</text>')
    for k, (name, steps, losses) in enumerate(runs):
        color = COLORS[k % len(COLORS)]
        points = " ".join(xy(s, l) for s, l in zip(steps, losses))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>')
        parts.append(f'<text x="{WIDTH - MARGIN - 150}" y="{MARGIN + 16 * k}" fill="{color}">'
                     f'{name}: final {losses[-1]:.4f}</text>')
    parts.append("</svg>")
    with open(argv[1], "w") as f:
        f.write("\n".join(parts) + "\n")

    ref = runs[0][2][-1]
    print(f"{'optimizer':<12} {'final loss':>10} {'vs ' + runs[0][0]:>12}")
    for name, _, losses in runs:
        print(f"{name:<12} {losses[-1]:>10.4f} {100 * (losses[-1] / ref - 1):>+11.1f}%")
    print(f"curves: {argv[1]}")


if __name__ == "__main__":
    main(sys.argv)
