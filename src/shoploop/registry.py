"""The model registry: BentoML's model store, plus a champion pointer that decides what serves.

Every trained version is saved with its metrics, data window and lineage in the model's metadata.
A version is promoted to champion only if it passes the gate: it must beat BM25 on the held-out
queries and must not fall below the current champion, which is re-evaluated on the same held-out
queries (champion/challenger on one test set; see shoploop.steps.evaluate).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from shoploop.models.bundle import ModelBundle
from shoploop.settings import Settings


def _bentoml(settings: Settings):
    # BentoML reads BENTOML_HOME once, at import: set it first, and keep it outside the source tree.
    os.environ.update(settings.tool_env())
    import bentoml

    return bentoml


def _git_sha(settings: Settings) -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=settings.project_dir,
                            capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def register(settings: Settings, bundle_dir: Path, metrics: dict, lineage: dict) -> str:
    """Copy a saved bundle into the model store; returns the new tag."""
    import shutil

    bentoml = _bentoml(settings)
    metadata = {"metrics": metrics, "lineage": {**lineage, "git_sha": _git_sha(settings)},
                "feature_service": settings.feature_service}
    with bentoml.models.create(settings.model_name, labels={"component": "search-ranker"},
                               metadata=metadata) as model:
        shutil.copytree(bundle_dir, model.path, dirs_exist_ok=True)
    return str(model.tag)


def attach(settings: Settings, tag: str, file: Path) -> None:
    """Put a document (the model card) beside a stored version's files."""
    import shutil

    shutil.copy(file, Path(_bentoml(settings).models.get(tag).path) / file.name)


def champion_file(settings: Settings) -> Path:
    return settings.home / "registry" / "champion.json"


def champion(settings: Settings) -> dict | None:
    path = champion_file(settings)
    return json.loads(path.read_text()) if path.exists() else None


def gate(metrics: dict, current: dict | None) -> tuple[bool, str]:
    if metrics.get("model") is None:  # no search labels: search cannot be judged, recommendation may be
        rec = metrics.get("recommend", {})
        if "served" in rec:
            if rec["served"]["ndcg@10"] <= rec["popularity"]["ndcg@10"]:
                return False, f"recommendation nDCG@10 {rec['served']['ndcg@10']} does not beat popularity"
            theirs = (current or {}).get("metrics", {}).get("recommend", {}).get("served", {}).get("ndcg@10")
            if theirs is not None and rec["served"]["ndcg@10"] < theirs:
                return False, f"recommendation nDCG@10 {rec['served']['ndcg@10']} is below the champion's {theirs}"
            return True, "no search labels to measure; recommendation beats popularity and is not below the champion"
        if current:
            return False, "nothing measurable (no search labels, no histories): the champion keeps serving"
        return True, "nothing measurable (no search labels, no histories): the first version serves"
    if metrics["model"] <= metrics["bm25"]:
        return False, f"{metrics.get('metric', 'ndcg@10')} {metrics['model']} does not beat BM25 {metrics['bm25']}"
    if "champion" in metrics:  # the champion scored on this run's held-out queries
        if metrics["model"] < metrics["champion"]["model"]:
            return False, (f"nDCG@10 {metrics['model']} is below the champion's {metrics['champion']['model']} "
                           "on the same held-out queries")
    elif current and metrics["model"] < current["metrics"]["model"]:
        return False, f"nDCG@10 {metrics['model']} is below the champion's {current['metrics']['model']}"
    return True, "beats BM25 and is not below the champion"


def promote(settings: Settings, tag: str, metrics: dict) -> tuple[bool, str]:
    """Make ``tag`` the champion if it passes the gate; the reason is returned either way."""
    current = champion(settings)
    if current and current["tag"] == tag:
        return True, "already champion"
    ok, reason = gate(metrics, current)
    if ok:
        path = champion_file(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tag": tag, "metrics": metrics, "previous": current and current["tag"]}))
        tmp.rename(path)
    return ok, reason


def load_version(settings: Settings, tag: str) -> ModelBundle:
    return ModelBundle.load(Path(_bentoml(settings).models.get(tag).path))


def load_champion(settings: Settings) -> tuple[str, ModelBundle]:
    """The serving bundle: the champion's, or the version pinned by settings.model_tag."""
    bentoml = _bentoml(settings)
    current = champion(settings)
    tag = settings.model_tag or (current and current["tag"])
    if not tag:
        raise LookupError(f"no champion model in {champion_file(settings)}: run `shoploop train`, "
                          "`shoploop evaluate` and `shoploop register` first")
    model = bentoml.models.get(tag)
    return str(model.tag), ModelBundle.load(Path(model.path))
