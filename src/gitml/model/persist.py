"""Save and load models with skops and an explicit list of trusted types; never pickle."""

from __future__ import annotations

import zipfile
from pathlib import Path

from sklearn.pipeline import Pipeline

from gitml.data.io import sha256_file, write_bytes
from gitml.errors import ModelError, UntrustedModelError

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


def save_model(pipeline: Pipeline, path: Path) -> bytes:
    """Serialise with skops and write atomically; return the bytes written."""
    import skops.io as sio

    payload = sio.dumps(pipeline)
    write_bytes(path, payload)
    return payload


def load_model(path: Path) -> Pipeline:
    """Load a skops model file, refusing pickles and any type not explicitly trusted.

    skops audits the file's schema first: no object is built and no code runs before every
    type in it is known to be trusted.
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found", hint="run `dvc repro` or `dvc pull`")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not zipfile.is_zipfile(path):
        kind = "a pickle file" if head[:1] in _PICKLE_MAGIC else "not a skops file"
        raise UntrustedModelError(
            f"{path}: refusing to load: {kind}; gitml loads only skops model files",
            hint="pickle and joblib files can run arbitrary code when loaded; re-export the "
            "model with gitml (skops)",
        )
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
    if not isinstance(model, Pipeline):
        raise ModelError(f"{path}: expected a scikit-learn Pipeline, found {type(model).__name__}")
    return model


def load_verified_model(path: Path, sha256: str | None) -> Pipeline:
    """`load_model`, after checking the file's SHA-256 against the recorded one.

    The hash is checked before skops reads a byte of the archive: a file that is not the
    one training recorded is never deserialised.
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
            f"{path}: SHA-256 {actual[:12]}... does not match the recorded {sha256[:12]}...: "
            "the file is not the model that training wrote",
            hint="restore it with `dvc checkout` (or `dvc pull`), or retrain with `dvc repro`",
        )
    return load_model(path)
