"""Reading and writing pipeline artefacts safely.

Every writer goes through :func:`atomic_path`: the data is written to a temporary
file in the destination folder and renamed into place only once complete, so a
stage killed part-way never leaves a half-written file that a rerun would trust.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched. The file
    gets the mode a plain ``open`` would give it (``0o666`` less the umask), not the
    ``0o600`` of ``mkstemp``, so colleagues in the group can read the outputs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG):
            raise OSError(err.errno, f"{path}: cannot write ({err.strerror}); the previous file, if any, is "
                                     "unchanged") from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove a file can be written there, before any long work.

    Raises
    ------
    PermissionError
        Naming the folder and ``what`` it is for, when it cannot be created or written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".deeprubin-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(f"{folder}: the {what} is not writable ({err.strerror or err}); "
                              "nothing was computed") from None
    return folder


class UnreadableFileError(ValueError):
    """A file that exists but cannot be parsed (truncated, another format); the message names it."""


def _unreadable(path: Path, kind: str, err: Exception) -> UnreadableFileError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return UnreadableFileError(f"{path}: cannot read this {kind} file (truncated, or not {kind}): "
                               f"{type(err).__name__}: {first}")


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table to parquet atomically (index dropped)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    """Read a parquet table, with an error that names the file when it is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; run the stage that produces it first")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise _unreadable(path, "parquet", err) from None


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        # NaN and infinities are not JSON (RFC 8259); jq, JavaScript and strict parsers
        # reject Python's NaN token, so an undefined score (e.g. ROC-AUC of a one-class
        # test set) is written as null.
        value = float(obj)
        return value if np.isfinite(value) else None
    return obj


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write strict JSON atomically (numpy scalars and arrays converted, NaN and
    infinities as null, keys sorted)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_to_jsonable(data), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; run the stage that produces it first")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise _unreadable(path, "JSON", err) from None


def write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write arrays to an uncompressed ``.npz`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; run the stage that produces it first")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise _unreadable(path, "npz", err) from None


#: Formats every figure is written in (the paper takes the PDF, the web report the PNG).
FIGURE_FORMATS = ("png", "pdf")
#: Metadata key holding a figure's one-line caption in the PNG text chunk / the PDF info.
PNG_CAPTION_KEY, PDF_CAPTION_KEY = "Description", "Subject"


def _default_caption(fig) -> str:
    """The figure's suptitle, else its first axes title ("" when it has neither)."""
    if getattr(fig, "_suptitle", None) is not None and fig._suptitle.get_text().strip():
        return fig._suptitle.get_text().strip()
    for ax in fig.axes:
        if ax.get_title().strip():
            return ax.get_title().strip()
    return ""


def save_figure(fig, path: str | os.PathLike, dpi: int = 150, caption: str | None = None) -> Path:
    """Save a matplotlib figure atomically as PNG *and* PDF (same stem) and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path-like
        Destination of the PNG (``.png`` suffix; another suffix is replaced). The PDF
        goes beside it as ``<stem>.pdf``.
    dpi : int
        Resolution of the PNG (the PDF is vector).
    caption : str, optional
        One-line caption, stored in the PNG text chunk ``Description`` and the PDF
        ``Subject`` field, where :func:`read_figure_caption` (and the report index)
        finds it. Defaults to the figure's suptitle or first axes title.

    Returns
    -------
    pathlib.Path
        The PNG path. Both files are written deterministically (no creation date),
        so the same figure gives the same bytes.
    """
    import matplotlib.pyplot as plt

    path = Path(path).with_suffix(".png")
    text = " ".join((caption if caption is not None else _default_caption(fig)).split())
    metadata = {"png": {PNG_CAPTION_KEY: text}, "pdf": {PDF_CAPTION_KEY: text, "CreationDate": None}}
    try:
        for fmt in FIGURE_FORMATS:
            with atomic_path(path.with_suffix(f".{fmt}")) as tmp:
                fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight", metadata=metadata[fmt])
    finally:
        plt.close(fig)
    return path


def read_figure_caption(path: str | os.PathLike) -> str:
    """The caption :func:`save_figure` stored in a PNG ("" when it has none)."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such figure")
    with Image.open(path) as image:
        return str(getattr(image, "text", {}).get(PNG_CAPTION_KEY, ""))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (the dataset hash logged with every model)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


#: Formats of a table a user asks for (``predict.output``), by file suffix.
TABLE_SUFFIXES = (".csv", ".parquet")


def write_table(table: pd.DataFrame, path: str | os.PathLike, float_format: str = "%.6f") -> Path:
    """Write ``table`` atomically as CSV or parquet, by the suffix of ``path`` (:data:`TABLE_SUFFIXES`)."""
    path = Path(path)
    if path.suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: a table is written as one of {list(TABLE_SUFFIXES)}, not {path.suffix!r}")
    if path.suffix == ".parquet":
        return write_parquet(table, path)
    return write_text(table.to_csv(index=False, float_format=float_format), path)
