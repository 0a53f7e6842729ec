"""Markdown tables of a `legato ttf --json` result, as docs/results.md shows them: median time to
failure per criterion, model and size with 95 % intervals and beta; then the comparison of the
later models with the first (median ratios, the beta difference, the likelihood-ratio test, power).

Usage: python scripts/ttf_tables.py RESULT.json
"""

from __future__ import annotations

import json
import sys

from legato_jax.experiments.ttf import intervals_separate


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.2g}, {hi:.2g}]"


def medians_table(result: dict) -> str:
    models = result["models"]
    sizes = list(next(iter(models.values()))["sizes"])
    head = "| criterion | model | " + " | ".join(f"{int(n):,} atoms" for n in sizes) + " | beta [95 % CI] |"
    lines = [head, "|" + "---|" * (len(sizes) + 3)]
    for c in result["protocol"]["criteria"]:
        for name, m in models.items():
            cells = []
            for n in sizes:
                s = m["sizes"][n][c]
                cell = f"{s['median_ps']:.3g} {_ci(*s['median_ci_ps'])}"
                if s["n_failed"] < len(s["failed"]):
                    cell += f" ({len(s['failed']) - s['n_failed']} cens.)"
                cells.append(cell if s["median_exact"] else f">= {s['median_ps']:.3g}")
            b = m["beta"][c]
            beta = f"{b['beta']:.2f} {_ci(*b['beta_ci'])}" if b.get("beta") is not None else "n/a"
            lines.append(f"| {c} | {name} | " + " | ".join(cells) + f" | {beta} |")
    return "\n".join(lines)


def comparison_table(result: dict) -> str:
    names = list(result["models"])
    lines = []
    for other in names[1:]:
        sizes = list(result["models"][other]["sizes"])
        lines += [f"| criterion | {other} / {names[0]} median, " + " / ".join(f"{int(n):,}" for n in sizes)
                  + f" | beta_{names[0]} - beta_{other} [95 % paired bootstrap] | shared-beta LR test "
                  "| replicas for 0.15 at 80 % power (power now) |", "|---|---|---|---|---|"]
        for c in result["protocol"]["criteria"]:
            ratios = []
            for n in sizes:
                a, b = result["models"][names[0]]["sizes"][n][c], result["models"][other]["sizes"][n][c]
                star = "*" if intervals_separate(a["median_ci_ps"], b["median_ci_ps"]) else ""
                ratios.append(f"{b['median_ps'] / a['median_ps']:.2f}{star}")
            d = result["beta_differences"][other][c]
            if d.get("difference") is None:
                lines.append(f"| {c} | {' / '.join(ratios)} | n/a | n/a | n/a |")
                continue
            pw = d.get("power") or {}
            power = f"{pw['replicas_needed']} ({pw['power']:.2f} with {pw['replicas']})" if pw else "n/a"
            lines.append(f"| {c} | {' / '.join(ratios)} | {d['difference']:.2f} {_ci(*d['difference_ci'])} "
                         f"| p = {d['p_value']:.2g} | {power} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/ttf_tables.py RESULT.json (from legato ttf --json)")
    result = json.loads(open(sys.argv[1]).read())
    print(medians_table(result))
    print("\n('*': the two models' 95 % intervals do not overlap)\n")
    print(comparison_table(result))
    sigmas = {name: {c: round(b["sigma"], 2) for c, b in m["beta"].items() if b.get("beta") is not None}
              for name, m in result["models"].items()}
    print(f"\nscatter of log t at fixed N (sigma of the fit): {sigmas}")


if __name__ == "__main__":
    main()
