"""The variance components of this study's endpoint, fitted by REML (statsmodels' `MixedLM`) to its
committed store: the numbers `tests/test_calibration.py` simulates its nulls with.

    PYTHONPATH=src python recipes/minilm-mlm-v2/variance_components.py

The model, per method pair of the declared claims and over the three searched methods together: a
mask's endpoint score at a fine-tuning seed (the mean over SST-2, CoLA and STS-B) is
`mu_method + mask + seed + method x seed + residual`, method a fixed effect, the others crossed random
effects (variance components of one group). Masks of IMP, TAMT-MLM and TAMT-KD at 70% (seeds 0 and
1, shared by every mask): 24 masks, 48 scores.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
from statsmodels.regression.mixed_linear_model import MixedLM

from ticketlab.studies.report.results import load_results

HERE = Path(__file__).resolve().parents[2] / "docs" / "results" / "minilm-mlm-v2"  # the study's record
METHODS = ("imp", "tamt-mlm", "tamt-kd")


def frame(methods=METHODS) -> pd.DataFrame:
    res = load_results(HERE)
    rows = []
    for m in methods:
        for mask, per_seed in res._per_mask(m, 0.7, "fig5-average").items():
            for seed, runs in per_seed.items():
                rows.append({"y": res._mean(runs), "method": m, "mask": f"{m}:{mask}", "seed": str(seed)})
    out = pd.DataFrame(rows)
    out["method_seed"] = out["method"] + ":" + out["seed"]
    out["group"] = 1
    return out


def fit(data: pd.DataFrame) -> dict[str, float]:
    vc = {"mask": "0 + C(mask)", "seed": "0 + C(seed)", "method_seed": "0 + C(method_seed)"}
    model = MixedLM.from_formula("y ~ 0 + C(method)", data, groups="group", vc_formula=vc, re_formula="0")
    result = model.fit(reml=True, method=["lbfgs", "powell"])
    return dict(zip(model.exog_vc.names, map(float, result.vcomp), strict=True)) | {
        "residual": float(result.scale)
    }


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # statsmodels warns of the boundary (a variance at 0) it reports
    data = frame()
    print(f"{len(data)} scores, {data['mask'].nunique()} masks")
    for name, pair in (
        ("all three", METHODS),
        ("tamt-kd, imp", ("tamt-kd", "imp")),
        ("tamt-mlm, imp", ("tamt-mlm", "imp")),
    ):
        comps = fit(data[data["method"].isin(pair)])
        print(name + ": " + ", ".join(f"{k} {v:.4f} (SD {max(v, 0) ** 0.5:.3f})" for k, v in comps.items()))
