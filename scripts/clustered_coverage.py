"""Coverage of the Wilson and the prompt-clustered (cluster bootstrap) intervals, simulated.

Prints one row per scenario of lda_core.cluster_bootstrap_simulation.DEFAULT_SCENARIOS, or the same
figures as JSON with --json. About 10-20 s on two CPU cores at the defaults:
  python scripts/clustered_coverage.py [--experiments 1000] [--resamples 500] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lda_core.cluster_bootstrap_simulation import DEFAULT_SCENARIOS, Coverage, measure_coverage  # noqa: E402

HEADER = (
    f"{'mean':>5} {'ICC':>4} {'P':>4} {'S':>3} | {'Wilson':>6} {'width':>6} | {'boot':>6} {'width':>6} | {'deff':>5}"
)


def table_row(coverage: Coverage) -> str:
    scenario = coverage.scenario
    deff = "-" if coverage.mean_design_effect is None else f"{coverage.mean_design_effect:.1f}"
    return (
        f"{scenario.mean:>5.2f} {scenario.icc:>4.1f} {scenario.prompts:>4} {scenario.samples_per_prompt:>3} | "
        f"{coverage.wilson_coverage:>6.3f} {coverage.wilson_mean_width:>6.3f} | "
        f"{coverage.bootstrap_coverage:>6.3f} {coverage.bootstrap_mean_width:>6.3f} | {deff:>5}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=1000, help="simulated experiments per scenario")
    parser.add_argument("--resamples", type=int, default=500, help="bootstrap resamples per experiment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.json:
        print(f"95% intervals, {args.experiments} experiments per scenario, {args.resamples} resamples")
        print(HEADER)
    coverages = []
    for scenario in DEFAULT_SCENARIOS:
        coverages.append(measure_coverage(scenario, args.experiments, args.resamples, args.seed))
        if not args.json:
            print(table_row(coverages[-1]), flush=True)
    if args.json:
        print(json.dumps([asdict(coverage) for coverage in coverages], indent=2))
    print(f"{time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
