"""What every benchmark's results file holds, and the arithmetic of its tables: the machine, torch, the commit and the
command beside the rows; mean ± sd over seeds; "met" only where the paper's figure lies inside mean ± 2 sd.

    write_results("benchmarks/results/reproduce.json", rows, summary)   # from a benchmark script
"""
from __future__ import annotations

import datetime
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import torch

import vae_utils as vu

RESULTS = Path(__file__).parent / "results"


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0


def versus_paper(values: list[float], paper: Optional[float]) -> dict[str, Any]:
    """Mean ± sd of the seeds' figures beside the paper's: met when the paper's figure lies inside mean ± 2 sd."""
    mean, sd = mean_sd(values)
    row = {"mean": round(mean, 3), "sd": round(sd, 3), "seeds": len(values), "paper": paper}
    if paper is not None:
        row.update(gap=round(mean - paper, 3), met=len(values) > 1 and abs(mean - paper) <= 2 * sd)
    return row


def same_config(saved: Optional[dict], config: vu.TrainConfig) -> bool:
    """Whether a kept run's config (a dict from its result.json) is `config`, fields added since it was written read
    as their defaults: a results file from before a new field still counts, and no finished run is trained again."""
    if not isinstance(saved, dict):
        return False
    try:
        return vu.TrainConfig.from_dict(saved).to_dict() == config.to_dict()
    except (TypeError, ValueError, KeyError):
        return False


def _scored_with(row: Any, config: vu.TrainConfig, fields: dict[str, Any]) -> bool:
    """Whether a result row was scored with config and these fields (iwae_k, ...)."""
    return isinstance(row, dict) and same_config(row.get("config"), config) and all(
        row.get(k) == v for k, v in fields.items())


def kept_row(path: Optional[Path], config: vu.TrainConfig, **fields: Any) -> Optional[dict]:
    """The row of the results file at path scored with config (and these fields), or None: a seed finished in an
    earlier session whose run folder is gone is read back rather than trained again."""
    if path is None or not Path(path).is_file():
        return None
    rows = json.loads(Path(path).read_text()).get("rows", [])
    return next((row for row in rows if _scored_with(row, config, fields)), None)


def kept_result(result_file: Path, results: Optional[Path], config: vu.TrainConfig, **fields: Any) -> Optional[dict]:
    """A seed's finished result: its run folder's result.json when scored with config and fields, else the results
    file's row (kept_row), else None (train or score it)."""
    if Path(result_file).is_file() and _scored_with(saved := json.loads(Path(result_file).read_text()), config, fields):
        return saved
    return kept_row(results, config, **fields)


def record(**content: Any) -> dict[str, Any]:
    """A results file's contents: where, when, with what and by which command, then the content."""
    return {"machine": vu.repro.describe_cpu(), "torch": str(torch.__version__), **vu.checkpoints.manifest(),
            "date": datetime.date.today().isoformat(),
            "command": shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]]), **content}


def write_results(path: Path, **content: Any) -> Path:
    """Write record(**content) atomically as JSON to path; return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vu.files.atomic_write(path, lambda f: f.write((json.dumps(record(**content), indent=2) + "\n").encode()))
    return path
