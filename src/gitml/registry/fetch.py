"""`gitml fetch`: materialise a released model, verified against the hash recorded at release."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from gitml.errors import RegistryError, RemoteError, VcsError
from gitml.files import sha256_file
from gitml.project import MODEL_FILE, OUTPUTS, Project
from gitml.registry.card import CARD_FILE, stamp_release
from gitml.registry.catalog import (
    MODEL_SHA_KEY,
    gto_stages,
    in_promotion_order,
    load_registry,
    model_artifacts,
)
from gitml.registry.tags import parse_ref
from gitml.vcs import fetch_artifact, read_blobs

RELEASE_FILE = "release.json"
# what a fetched directory holds besides the model, and where each comes from at the tag
COMMITTED = {
    "signature.json": OUTPUTS["signature"],
    "metadata.json": OUTPUTS["metadata"],
    "metrics.json": OUTPUTS["metrics"],
    "model_card.md": CARD_FILE,
    "calibrator.json": OUTPUTS["calibrator"],  # absent in releases made before monitoring
    "importance.json": OUTPUTS["importance"],  # absent in releases made before importance
}


@dataclass(frozen=True)
class Fetched:
    """A fetched release: where it is and what it is."""

    name: str
    version: str
    tag: str
    commit: str
    stages: list[str]
    released: str
    sha256: str
    directory: str

    @property
    def model_path(self) -> Path:
        return Path(self.directory) / MODEL_FILE


def fetch_model(project: Project, ref: str, dest: Path) -> Fetched:
    """Write model.skops, signature, metadata, metrics, card and release.json into `dest`.

    The model comes from the DVC cache or remote as of the tagged commit; its SHA-256 must
    equal the one recorded in metadata.json at that commit (and in the release tag's
    message). Nothing is written to `dest` unless it does.
    """
    root = project.root
    wanted = parse_ref(ref)
    registry = load_registry(root)
    history = registry.get(wanted.name)
    if history is None:
        raise RegistryError(
            f"unknown model {wanted.name!r}: no release tags for it",
            hint=f"registered models: {', '.join(sorted(registry)) or 'none'} (`gitml models`)",
        )
    version = history.resolve(wanted)
    artifact = model_artifacts(root, version.commit).get(wanted.name)
    if artifact is None:
        raise RegistryError(f"dvc.yaml at {version.tag} declares no artifact {wanted.name!r}")
    # the committed files of the release, read once through one git process
    specs = [f"{version.commit}:{path}" for path in COMMITTED.values()]
    committed = dict(zip(COMMITTED, read_blobs(root, specs), strict=True))
    expected = _recorded_sha(
        committed["metadata.json"], version.commit, version.message, version.tag
    )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gitml-fetch-", dir=dest.parent) as tmp:
        staging = Path(tmp)
        model = staging / MODEL_FILE
        try:
            fetch_artifact(root, artifact.path, version.commit, model)
        except VcsError as err:
            hint = "the model must be in the DVC cache or the DVC remote (gitml release "
            hint += "pushes it); check `dvc remote list` and your credentials"
            raise RegistryError(
                f"cannot fetch {version.tag}: {err.message}; nothing was written to {dest}",
                hint=err.hint if isinstance(err, RemoteError) else hint,
            ) from err
        found = sha256_file(model)
        if found != expected:
            raise RegistryError(
                f"refusing {version.tag}: the fetched {artifact.path} has SHA-256 {found}, "
                f"but the release recorded {expected}",
                hint="the DVC cache or remote holds a modified file; delete the cached copy "
                "(dvc gc or remove it from .dvc/cache) and fetch again, or investigate",
            )
        for name, text in committed.items():
            if text is not None:
                if name == "model_card.md":
                    released = _date(version.created)
                    text = stamp_release(text, version.version, released, version.commit)
                (staging / name).write_text(text, encoding="utf-8")
        fetched = Fetched(
            name=version.name,
            version=version.version,
            tag=version.tag,
            commit=version.commit,
            stages=in_promotion_order(version.stages, gto_stages(root)),
            released=_date(version.created),
            sha256=found,
            directory=str(dest.resolve()),
        )
        (staging / RELEASE_FILE).write_text(json.dumps(asdict(fetched), indent=2) + "\n")
        dest.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            target = dest / item.name
            if target.is_dir():
                shutil.rmtree(target)
            item.replace(target)
    return fetched


def _recorded_sha(text: str | None, commit: str, message: str, tag: str) -> str:
    if text is None:
        raise RegistryError(f"{tag}: {OUTPUTS['metadata']} is missing at {commit[:12]}")
    recorded = json.loads(text).get("model_file", {}).get("sha256")
    if not recorded:
        raise RegistryError(f"{tag}: {OUTPUTS['metadata']} records no model_file.sha256")
    in_tag = re.search(rf"^{MODEL_SHA_KEY}: ([0-9a-f]{{64}})$", message, re.MULTILINE)
    if in_tag and in_tag.group(1) != recorded:
        raise RegistryError(
            f"{tag}: the tag message records model SHA-256 {in_tag.group(1)} but "
            f"{OUTPUTS['metadata']} at {commit[:12]} records {recorded}"
        )
    return recorded


def _date(created: int) -> str:
    return datetime.fromtimestamp(created, UTC).date().isoformat()
