"""The model registry: BentoML's model store, plus a champion pointer that decides what serves.

Every trained version is saved with its metrics, data window and lineage in the model's metadata.
A version is promoted to champion only if it passes the gate: it must beat BM25 on the held-out
queries and must not fall below the current champion, which is re-evaluated on the same held-out
queries (champion/challenger on one test set; see shoploop.pipeline.steps.evaluate). While the champion serves
shoppers, a version that passes the gate becomes the challenger instead, and the shoppers decide: the
monitor's interleaving verdict (shoploop.serving.interleaving) promotes or rejects it (``conclude``). Every
promotion, challenge, rejection and rollback is in the history with its reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from shoploop.models.bundle import ModelBundle
from shoploop.settings import QUIET_TOOLS, Settings


def _bentoml(settings: Settings):
    # BentoML reads BENTOML_HOME once, at import: set it first, and keep it outside the source tree. Only that:
    # exporting every setting would hand a settings copy's choices to whatever this process starts later.
    os.environ.update({**QUIET_TOOLS, "BENTOML_HOME": str(settings.bentoml_home)})
    import bentoml

    return bentoml


def _git_sha(settings: Settings) -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=settings.project_dir,
                            capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


# Files BentoML itself writes into a version's folder; everything else there is ours and digested.
STORE_FILES = {"model.yaml"}


class TamperedModel(LookupError):
    """A stored version's files differ from what was registered: it is never loaded."""


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> hex), BentoML's own files left out."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in STORE_FILES:
            with path.open("rb") as f:
                digests[name] = hashlib.file_digest(f, "sha256").hexdigest()
    return digests


def digest_file(settings: Settings, tag: str) -> Path:
    # Kept by the registry, outside the model store: whoever can rewrite a version's files there
    # cannot also rewrite what it was registered with.
    return settings.home / "registry" / "digests" / f"{tag.replace(':', '-')}.json"


def _record_digests(settings: Settings, tag: str, digests: dict[str, str]) -> None:
    path = digest_file(settings, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tag": tag, "sha256": digests}, indent=1))
    tmp.rename(path)


def verify(settings: Settings, tag: str, folder: Path) -> None:
    """Raise TamperedModel unless ``folder`` holds exactly the files registered under ``tag``."""
    path = digest_file(settings, tag)
    if not path.exists():
        raise TamperedModel(f"{tag} has no digest recorded at registration ({path}): it will not be loaded; "
                            "register it again with `shoploop register`")
    recorded, actual = json.loads(path.read_text())["sha256"], file_digests(folder)
    problems = ([f"{name} changed" for name in sorted(recorded.keys() & actual.keys()) if recorded[name] != actual[name]]
                + [f"{name} missing" for name in sorted(recorded.keys() - actual.keys())]
                + [f"{name} not registered" for name in sorted(actual.keys() - recorded.keys())])
    if problems:
        raise TamperedModel(f"{tag} differs from what was registered ({'; '.join(problems[:5])}"
                            f"{'; ...' if len(problems) > 5 else ''}): it will not be loaded")


def register(settings: Settings, bundle_dir: Path, metrics: dict, lineage: dict) -> str:
    """Copy a saved bundle into the model store and record its files' digests; returns the new tag."""
    import shutil

    bentoml = _bentoml(settings)
    metadata = {"metrics": metrics, "lineage": {**lineage, "git_sha": _git_sha(settings)},
                "feature_service": settings.feature_service}
    with bentoml.models.create(settings.model_name, labels={"component": "search-ranker"},
                               metadata=metadata) as model:
        shutil.copytree(bundle_dir, model.path, dirs_exist_ok=True)
    tag = str(model.tag)
    _record_digests(settings, tag, file_digests(Path(model.path)))
    return tag


def attach(settings: Settings, tag: str, file: Path) -> None:
    """Put a document (the model card) beside a stored version's files, and into its digests."""
    import shutil

    folder = Path(_bentoml(settings).models.get(tag).path)
    verify(settings, tag, folder)
    shutil.copy(file, folder / file.name)
    _record_digests(settings, tag, file_digests(folder))


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
    elif current and current["metrics"].get("model") is not None and metrics["model"] < current["metrics"]["model"]:
        return False, f"nDCG@10 {metrics['model']} is below the champion's {current['metrics']['model']}"
    return True, "beats BM25 and is not below the champion"


def history_file(settings: Settings) -> Path:
    return settings.home / "registry" / "history.jsonl"


def history(settings: Settings) -> list[dict]:
    """Every promotion and rollback, oldest first, each with its reason."""
    path = history_file(settings)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _crown(settings: Settings, record: dict, event: str, reason: str) -> None:
    """Point the champion at ``record['tag']`` (atomically), then append the change to the history."""
    _write_atomically(champion_file(settings), record)
    _record(settings, event, record["tag"], record.get("previous") or record.get("rolled_back_from"), reason)


def _write_atomically(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.rename(path)


def _record(settings: Settings, event: str, tag: str, replaced: str | None, reason: str) -> None:
    """Append a promotion, challenge, rejection or rollback to the history, durably."""
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "event": event, "tag": tag,
             "replaced": replaced, "reason": reason}
    with history_file(settings).open("a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


class Decision(NamedTuple):
    """What ``promote`` does with a version: ``action`` is 'crown', 'challenge' or 'keep' (nothing changes)."""
    promoted: bool
    reason: str
    action: str
    gate_reason: str


def decide(settings: Settings, tag: str, metrics: dict, online: bool = False) -> Decision:
    """What ``promote`` would do with ``tag`` now, without doing it: the registration writes the
    decision into the version's model card before the decision takes effect, so a champion is never a
    version whose card is still being attached."""
    current = champion(settings)
    if current and current["tag"] == tag:
        return Decision(True, "already champion", "keep", "already champion")
    ok, reason = gate(metrics, current)
    if ok and online and current:
        return Decision(False, f"offline gate passed ({reason}); now the challenger of {current['tag']}: "
                               "shoppers decide by interleaving", "challenge", reason)
    return Decision(ok, reason, "crown" if ok else "keep", reason)


def promote(settings: Settings, tag: str, metrics: dict, online: bool = False) -> tuple[bool, str]:
    """Make ``tag`` the champion if it passes the offline gate; the reason is returned either way.

    ``online``: the champion serves shoppers, so passing the gate makes ``tag`` the challenger instead,
    and shoppers decide (``conclude``, from the interleaving verdict the monitor computes)."""
    decision = decide(settings, tag, metrics, online)
    if decision.action == "challenge":
        challenge(settings, tag, metrics, decision.gate_reason)
    elif decision.action == "crown":
        current = champion(settings)
        _crown(settings, {"tag": tag, "metrics": metrics, "previous": current and current["tag"]}, "promotion",
               decision.reason)
    return decision.promoted, decision.reason


def challenge(settings: Settings, tag: str, metrics: dict, reason: str) -> None:
    """Put ``tag`` before shoppers against the champion (it replaces any earlier challenger): the service
    interleaves it into a share of searches, and the monitor's verdict promotes or rejects it."""
    current = champion(settings)
    if current is None or current["tag"] == tag:
        raise ValueError(f"{tag} cannot challenge: " + ("it is the champion" if current else "no champion serves"))
    _write_atomically(challenger_file(settings), {
        "tag": tag, "metrics": metrics, "champion": current["tag"], "offline": reason,
        "since": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")})
    _record(settings, "challenge", tag, current["tag"], f"offline gate: {reason}; shoppers decide by interleaving")


def challenger_file(settings: Settings) -> Path:
    return settings.home / "registry" / "challenger.json"


def challenger(settings: Settings) -> dict | None:
    """The version under online evaluation against the champion (None: none is)."""
    path = challenger_file(settings)
    record = json.loads(path.read_text()) if path.exists() else None
    current = champion(settings)
    return record if record and current and record["champion"] == current["tag"] else None


def conclude(settings: Settings, verdict) -> str | None:
    """Act on an interleaving verdict (shoploop.serving.interleaving.Verdict) about the current challenger:
    'promoted' (it becomes champion, the offline and the online evidence in the reason), 'rejected'
    (it is dropped; the champion keeps serving), or None while shoppers have not decided."""
    rival = challenger(settings)
    if rival is None or verdict.challenger != rival["tag"] or verdict.winner is None:
        return None
    challenger_file(settings).unlink()
    if verdict.winner == "challenger":
        _crown(settings, {"tag": rival["tag"], "metrics": rival["metrics"], "previous": rival["champion"]}, "promotion",
               f"offline gate: {rival['offline']}; online: {verdict.reason()}")
        return "promoted"
    _record(settings, "rejected", rival["tag"], None, f"online: {verdict.reason()}")
    return "rejected"


def rollback(settings: Settings, tag: str, reason: str) -> None:
    """Make the earlier version ``tag`` champion again. It has no predecessor to roll back to, so one
    bad comparison can never swing the champion back and forth."""
    model = _bentoml(settings).models.get(tag)
    verify(settings, str(model.tag), Path(model.path))
    current = champion(settings)
    _crown(settings, {"tag": str(model.tag), "metrics": model.info.metadata.get("metrics", {}), "previous": None,
                      "rolled_back_from": current and current["tag"]}, "rollback", reason)


def lineage(settings: Settings, tag: str) -> dict:
    return dict(_bentoml(settings).models.get(tag).info.metadata.get("lineage", {}))


def reindexed(settings: Settings, tag: str, reason: str) -> None:
    """Make ``tag``, the champion's model over the shop's current catalog (``ModelBundle.with_catalog``),
    the champion. No gate: its learnt parts are the champion's. Its predecessor is the version it
    refreshes, so if shoppers click it less by the rollback margin the monitor rolls the refresh back."""
    current = champion(settings)
    refreshed = lineage(settings, tag).get("reindexed_from")
    if current is None or current["tag"] != refreshed:
        raise ValueError(f"{tag} refreshes {refreshed}, which no longer serves "
                         f"({current['tag'] if current else 'nothing'} does): not crowned")
    _crown(settings, {"tag": tag, "metrics": current.get("metrics", {}), "previous": current["tag"]}, "reindex", reason)


def champion_part(settings: Settings, part: str) -> tuple[str, Path] | None:
    """A folder of the champion's version (its files checked against the registration), where one
    serves and holds it: a retraining starts from the champion's ``encoder`` and its distilled
    ``student``. None where nothing serves or the champion has no such part (a zero-shot first answer)."""
    current = champion(settings)
    if not current:
        return None
    model = _bentoml(settings).models.get(current["tag"])
    if "fine-tuned" not in model.info.metadata.get("lineage", {}).get("encoder", ""):
        return None  # a zero-shot version (its encoder a copy of MiniLM): nothing learnt to start from
    verify(settings, str(model.tag), Path(model.path))
    folder = Path(model.path) / part
    return (str(model.tag), folder) if (folder / "config.json").exists() else None


def load_version(settings: Settings, tag: str) -> ModelBundle:
    """A stored version, after checking its files against the digests recorded at registration."""
    model = _bentoml(settings).models.get(tag)
    verify(settings, str(model.tag), Path(model.path))
    return ModelBundle.load(Path(model.path))


def load_champion_tag(settings: Settings) -> str:
    """The tag that serves: the version pinned by settings.model_tag, else the champion's."""
    current = champion(settings)
    tag = settings.model_tag or (current and current["tag"])
    if not tag:
        raise LookupError(f"no champion model in {champion_file(settings)}: run `shoploop train`, "
                          "`shoploop evaluate` and `shoploop register` first")
    if tag in _RESOLVED.get(settings.bentoml_home, ()):  # a full tag the store answered for before
        return tag
    resolved = str(_bentoml(settings).models.get(tag).tag)
    if resolved == tag:
        _RESOLVED.setdefault(settings.bentoml_home, set()).add(tag)
    return resolved


# Full tags (name:version) the model store has answered for, by store: a running service asks every few
# seconds which version is champion, and asking BentoML's store (its YAML read) held the worker's GIL
# about 7 ms each time. A tag such as "name" or "name:latest" resolves to another version when one is
# added, so only tags that resolve to themselves are remembered.
_RESOLVED: dict = {}


def load_champion(settings: Settings) -> tuple[str, ModelBundle]:
    """The serving bundle: the champion's, or the version pinned by settings.model_tag."""
    tag = load_champion_tag(settings)
    return tag, load_version(settings, tag)
