"""Save and load models with skops and an explicit list of trusted types; never pickle."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from gitml.errors import ModelError, UntrustedModelError
from gitml.files import sha256_file, write_bytes
from gitml.model.skops_import import import_skops

if TYPE_CHECKING:  # scikit-learn is imported where a model is built: check_model_file needs none
    from sklearn.pipeline import Pipeline

# Types outside skops' default-trusted set that gitml's own pipelines contain. Anything else
# in a model file is refused before a single object is constructed.
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",  # every ColumnTransformer pipeline
    "gitml.model.encoding.CategoryEncoder",  # gitml's own encoder: holds category lists only
    "sklearn.tree._tree.Tree",  # random forest
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    # HistGradientBoosting keeps functools.partial(check_array, ...) as its input checker;
    # partial is only dangerous around an untrusted callable, and check_array is the only
    # callable trusted here.
    "functools.partial",
    "sklearn.utils.validation.check_array",
)

_PICKLE_MAGIC = (b"\x80", b"(", b"c")  # protocol 2+ opcode, protocol 0 MARK / GLOBAL

# check_model_file's first look at an archive, without skops or scikit-learn: the packages
# skops' default-trusted types come from. skops' own audit, when the model loads, remains the
# authority on which of their types are trusted.
_AUDITED_PACKAGES = frozenset({"builtins", "numpy", "scipy", "sklearn"})


# Every entry of a canonical archive carries this time stamp (the earliest a zip can hold).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SCHEMA = "schema.json"


def save_model(pipeline: Pipeline, path: Path) -> bytes:
    """Serialise with skops, canonically, and write atomically; return the bytes written."""
    payload = dump_model(pipeline)
    write_bytes(path, payload)
    return payload


def dump_model(pipeline: Pipeline) -> bytes:
    """The skops archive of `pipeline`, canonical: the same fitted pipeline gives the same
    bytes in any process, so a re-run leaves the model's hash in dvc.lock unchanged."""
    sio = import_skops()
    return canonical_archive(sio.dumps(pipeline))


def canonical_archive(payload: bytes) -> bytes:
    """The skops archive `payload` rewritten so that its bytes depend only on the model.

    skops names each object by its memory address (`__id__` in schema.json, and the `.npy`
    entries named after it), names bytes entries with random UUIDs, and stamps every entry
    with the current time. Here ids are renumbered 1, 2, ... in order of first appearance in
    the schema (equal ids stay equal, so shared objects stay shared on load), data entries
    are renamed in order of first reference, the padding bytes of structured arrays (tree
    nodes) are zeroed, and the zip is rewritten with a fixed order, time stamp, permissions
    and no compression (deflate output would depend on the system's zlib build, which the
    lock file does not pin).
    """
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    if _SCHEMA not in entries:
        raise ModelError("skops produced an archive without schema.json; cannot canonicalise")
    schema = json.loads(entries.pop(_SCHEMA))
    ids: dict[int, int] = {}
    files: dict[str, str] = {}
    _renumber(schema, ids, files)
    unreferenced = sorted(set(entries) - set(files))
    if unreferenced or set(files) - set(entries):
        # a skops release that stores data another way: refuse rather than drop an entry
        raise ModelError(
            f"unexpected skops archive layout: entries {unreferenced[:3]} are not referenced "
            f"by schema.json, or schema.json names entries that are missing",
            hint="gitml's canonical writer (model/persist.py) needs updating for this skops "
            "version; pin the skops version in requirements.lock",
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        # skops writes schema.json with indent=2; json keeps the key order it was read in
        _write_entry(archive, _SCHEMA, json.dumps(schema, indent=2).encode("utf-8"))
        for old, new in files.items():  # in order of first reference
            data = entries[old]
            if new.endswith(".npy"):
                data = _zero_padding(data)
            _write_entry(archive, new, data)
    return out.getvalue()


def _zero_padding(npy: bytes) -> bytes:
    """A .npy payload whose structured records carry zeros, not stale memory, in their padding.

    scikit-learn's tree nodes are records of 57 bytes of fields padded to 64; it grows them
    with realloc, so the 7 padding bytes hold whatever memory was there before: the same
    tree saved twice can differ in them. Plain arrays are returned unchanged.
    """
    import numpy as np

    array = np.load(io.BytesIO(npy), allow_pickle=False)
    if array.dtype.names is None:
        return npy
    order: Literal["C", "F"] = (
        "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
    )
    clean = np.zeros(array.shape, dtype=array.dtype, order=order)  # calloc: zeroed padding
    _copy_fields(clean, array)
    buffer = io.BytesIO()
    np.save(buffer, clean, allow_pickle=False)
    return buffer.getvalue()


def _copy_fields(dst: Any, src: Any) -> None:
    # field by field: assigning whole records would copy their padding too
    for name in src.dtype.names:
        if src.dtype[name].names is not None:
            _copy_fields(dst[name], src[name])
        else:
            dst[name] = src[name]


def _renumber(node: Any, ids: dict[int, int], files: dict[str, str]) -> None:
    """Rewrite `__id__` and `file` of every skops node under `node`, in document order."""
    if isinstance(node, list):
        for item in node:
            _renumber(item, ids, files)
        return
    if not isinstance(node, dict):
        return
    if "__loader__" in node:  # a skops node; user data never sits at this level
        old_id = node.get("__id__")
        if isinstance(old_id, int) and not isinstance(old_id, bool):
            # from 1: skops treats an id of 0 as "no id" and would not share the object
            node["__id__"] = ids.setdefault(old_id, len(ids) + 1)
        name = node.get("file")
        if isinstance(name, str):
            suffix = PurePosixPath(name).suffix
            node["file"] = files.setdefault(name, f"{len(files) + 1}{suffix}")
    for value in node.values():
        _renumber(value, ids, files)


def _write_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # Unix, whatever platform writes it (the default follows the OS)
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def load_model(path: Path) -> Pipeline:
    """Load a skops model file, refusing pickles and any type not explicitly trusted.

    skops audits the file's schema first: no object is built and no code runs before every
    type in it is known to be trusted.
    """
    sio = import_skops()
    from skops.io.exceptions import UntrustedTypesFoundException

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found", hint="run `dvc repro` or `dvc pull`")
    _refuse_non_skops(path)
    try:
        # skops audits every type against the list before it constructs a single object
        model = sio.load(path, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as err:
        refused = sorted(set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
        raise UntrustedModelError(
            f"{path}: refusing to load: it holds types outside gitml's trusted list: "
            + ", ".join(refused),
            hint="only models built by gitml's allow-listed estimators can be loaded",
        ) from err
    except Exception as err:  # a zip that is not a skops archive, or a damaged one
        raise UntrustedModelError(f"{path}: not a valid skops model file ({err})") from err
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline):
        raise ModelError(f"{path}: expected a scikit-learn Pipeline, found {type(model).__name__}")
    return model


def _refuse_non_skops(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not zipfile.is_zipfile(path):
        kind = "a pickle file" if head[:1] in _PICKLE_MAGIC else "not a skops file"
        raise UntrustedModelError(
            f"{path}: refusing to load: {kind}; gitml loads only skops model files",
            hint="pickle and joblib files can run arbitrary code when loaded; re-export the "
            "model with gitml (skops)",
        )


def load_verified_model(
    path: Path, sha256: str | None, *, recorded_in: str = "the recorded"
) -> Pipeline:
    """`load_model`, after checking the file's SHA-256 against the recorded one.

    The hash is checked before skops reads a byte of the archive: a file that is not the
    one training recorded is never deserialised. `recorded_in` names where the hash comes
    from, for the message.
    """
    check_model_file(path, sha256, recorded_in=recorded_in)
    return load_model(path)


def load_trained_model(path: Path, metadata: Path) -> Pipeline:
    """`load_verified_model` against the SHA-256 that `train` recorded in `metadata`
    (models/metadata.json): how the stages after train load the model they score."""
    recorded = json.loads(metadata.read_text(encoding="utf-8"))
    return load_verified_model(path, recorded.get("model_file", {}).get("sha256"))


def check_model_file(path: Path, sha256: str | None, *, recorded_in: str = "the recorded") -> None:
    """What can be checked of a model file without building it, and without importing skops
    or scikit-learn: it exists, its SHA-256 is the recorded one, it is a skops archive (not a
    pickle), and every type it names comes from scikit-learn, NumPy, SciPy, a few builtins or
    gitml's trusted list. `gitml serve --workers N` checks this much before it binds the port
    and leaves loading (and skops' full audit of trusted types) to the workers, so the
    supervisor stays small.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found", hint="run `dvc repro` or `dvc pull`")
    if not sha256:
        raise ModelError(
            f"{path}: no SHA-256 recorded for it (models/metadata.json model_file.sha256)",
            hint="retrain with `dvc repro`: train records the hash of the model it writes",
        )
    actual = sha256_file(path)
    if actual != sha256:
        raise ModelError(
            f"{path}: SHA-256 {actual[:12]}... does not match {recorded_in} {sha256[:12]}...: "
            "the file is not the model that training wrote",
            hint="restore it with `dvc checkout` (or `dvc pull`), or retrain with `dvc repro`",
        )
    _refuse_non_skops(path)
    refused = sorted(_foreign_types(path))
    if refused:
        raise UntrustedModelError(
            f"{path}: refusing to load: it holds types outside gitml's trusted list: "
            + ", ".join(refused[:10]),
            hint="only models built by gitml's allow-listed estimators can be loaded",
        )


def _foreign_types(path: Path) -> set[str]:
    """The types named in a skops archive's schema that come neither from the audited
    packages nor from TRUSTED_TYPES (e.g. `os.system`, `__main__.Payload`)."""
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read(_SCHEMA))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise UntrustedModelError(f"{path}: not a valid skops model file ({err})") from err
    found: set[str] = set()
    _collect_types(schema, found)
    return {
        name
        for name in found
        if name not in TRUSTED_TYPES and name.split(".", 1)[0] not in _AUDITED_PACKAGES
    }


def _collect_types(node: Any, found: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect_types(item, found)
        return
    if not isinstance(node, dict):
        return
    if "__loader__" in node:  # a skops node (object, type or function) names it so
        found.add(f"{node.get('__module__')}.{node.get('__class__')}")
    for value in node.values():
        _collect_types(value, found)
