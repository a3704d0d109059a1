"""Run directories on disk: `runs/<study>-<timestamp>/` with config.json, metrics.parquet, checkpoints/,
figures/*.png, results.json, claims.json, environment.json and report.html. Every write is atomic (write to a
temporary file in the same folder, then rename), so a run killed mid-write never leaves a half-written file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from mesalab.config import from_dict, to_dict


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary path beside `path`, flush it to disk, then rename it into place. The file gets
    the mode an ordinary write would (0666 less the umask), so colleagues and web servers can read runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        with open(tmp, "rb") as f:  # the data reaches the disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable)))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return to_dict(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def new_run_dir(study: str, out: Path | None, root: Path = Path("runs")) -> Path:
    """`out` itself when given, else a new folder root/<study>-<UTC timestamp>, created here so that two runs started
    in the same second (or on two machines sharing the folder) cannot collide: the second gets a suffix -2, -3, …"""
    if out is not None:
        return Path(out)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = root / (f"{study}-{stamp}" if n == 1 else f"{study}-{stamp}-{n}")
        try:
            path.mkdir()  # atomic: exactly one process creates it
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name for {study} at {stamp} under {root}")


def git_commit() -> str | None:
    """The commit of the mesalab checkout that ran (with "+dirty" for uncommitted changes); None outside git."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Software versions and the device a run used."""
    import jax

    versions = {}
    for pkg in ("mesalab", "jax", "jaxlib", "equinox", "optax", "numpy", "pandas", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    dev = jax.devices()[0]
    return {
        "git_commit": git_commit(),
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": f"{dev.platform}: {getattr(dev, 'device_kind', '')}".strip(),
        # Members are split over the devices (train/placement.py): numbers agree across device counts only to
        # float round-off, so the count is part of what reproduces a run (MESALAB_HOST_DEVICES sets it on a CPU).
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "prng": str(jax.config.jax_default_prng_impl),  # the generator every task samples with
        # Every installed distribution, as `pip freeze` would list it, so the environment can be rebuilt.
        "packages": dict(sorted((d.metadata["Name"], d.version) for d in metadata.distributions() if d.metadata["Name"])),
    }


@dataclasses.dataclass
class Run:
    """A run read back from disk."""

    path: Path
    meta: dict[str, Any]
    config: Any
    metrics: pd.DataFrame
    results: dict[str, Any]
    claims: list[dict[str, Any]]
    environment: dict[str, Any]

    def models(self, part: str):
        """The trained ensemble of one part of the run (leading member axis), rebuilt from its checkpoint."""
        from mesalab.train.engine import load_models

        return load_models(self.path / "checkpoints" / part)


def read_json(path: Path, default: Any) -> Any:
    """The parsed JSON file, or `default` when it does not exist."""
    return json.loads(path.read_text()) if path.exists() else default


def load_run(path: str | Path) -> Run:
    """Read a run directory: its config (as the study's config class), metrics, results and claims."""
    from mesalab.studies import get_study

    path = Path(path)
    if not (path / "run.json").exists():
        raise FileNotFoundError(f"{path} is not a mesalab run (no run.json)")
    meta = read_json(path / "run.json", {})
    study = get_study(meta["study"])
    config = from_dict(study.Config, read_json(path / "config.json", {}))
    metrics = pd.read_parquet(path / "metrics.parquet") if (path / "metrics.parquet").exists() else pd.DataFrame()
    return Run(path, meta, config, metrics, read_json(path / "results.json", {}),
               read_json(path / "claims.json", {}).get("claims", []), read_json(path / "environment.json", {}))


def list_runs(root: str | Path = "runs") -> pd.DataFrame:
    """One row per run under `root`: study, scale, date, findings and checks passed / total, wall time."""
    from mesalab.studies.verdicts import counts

    rows = []
    for meta_path in sorted(Path(root).glob("*/run.json")):
        meta = json.loads(meta_path.read_text())
        claims = read_json(meta_path.parent / "claims.json", {}).get("claims", [])
        (fp, ft), (cp, ct) = counts(claims, "finding"), counts(claims, "check")
        rows.append({
            "run": meta_path.parent.name, "study": meta.get("study"), "scale": meta.get("scale"),
            "started": meta.get("started"), "status": meta.get("status"), "findings_passed": fp, "findings": ft,
            "checks_passed": cp, "checks": ct, "seconds": meta.get("seconds"),
        })
    return pd.DataFrame(rows, columns=["run", "study", "scale", "started", "status", "findings_passed", "findings",
                                       "checks_passed", "checks", "seconds"])
