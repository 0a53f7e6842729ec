"""Learning curves of training runs in one figure (validation force MAE and learning rate).

python scripts/learning_curves.py models/allegro models/legato --out models/learning_curves.png
python scripts/learning_curves.py models/training/allegro models/training/latent-mlp-2/allegro --labels linear nonlinear
"""

import argparse
from pathlib import Path

from legato_jax.train.curves import plot_learning_curves, read_metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+", help="run directories (or metrics.csv files); named by their folder")
    p.add_argument("--labels", nargs="+", help="one name per run (default: its folder's name)")
    p.add_argument("--out", default="models/learning_curves.png")
    args = p.parse_args()
    labels = args.labels or [Path(r).name if Path(r).is_dir() else Path(r).parent.name for r in args.runs]
    if len(labels) != len(args.runs) or len(set(labels)) != len(labels):
        p.error(f"--labels: give {len(args.runs)} distinct names, one per run")
    runs = dict(zip(labels, args.runs))
    print(plot_learning_curves(runs, args.out))
    for name, run in runs.items():
        m = read_metrics(run)
        print(f"{name}: {int(m['epoch'][-1])} epochs, validation force MAE {m['val_f_mae'][-1]:.2f} meV/Å "
              f"(best {m['val_f_mae'].min():.2f}), lr {m['lr'][-1]:.3g}, {m['elapsed_s'][-1] / 3600:.2f} h")


if __name__ == "__main__":
    main()
