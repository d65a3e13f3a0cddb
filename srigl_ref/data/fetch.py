"""Where a dataset's files are: lookup in local folders, and verified downloads.

Lookup (``find_dataset``), first match wins:

1. ``data_dir`` (the ``--data-dir`` option): the folder itself, then ``data_dir/<name>``;
2. ``$SRIGL_REF_DATA``: likewise;
3. the user cache ``$XDG_CACHE_HOME/srigl-ref/<name>`` (``~/.cache/srigl-ref/<name>``);
4. the system folder of Debian's package (``/usr/share/datasets/fashion-mnist`` from
   ``apt-get install dataset-fashion-mnist``; Fashion-MNIST only);
5. a download from the dataset's host (``base_url`` argument, else ``$SRIGL_REF_DATA_URL``,
   else the official host) into the user cache: each file is streamed to a temporary name
   in the cache folder, its length and SHA-256 checked, then renamed into place, so the
   cache never holds a partial or unverified file. Progress goes to a callback (this
   module prints nothing).

When all fail, a ``ValueError`` names every place looked and the remedies. Files:
Fashion-MNIST / MNIST ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without
``.gz``; CIFAR-10 ``cifar-10-binary.tar.gz`` (what is downloaded) or its extracted
``cifar-10-batches-bin/``, or the python version ``cifar-10-python.tar.gz`` /
``cifar-10-batches-py/``.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable, NamedTuple

from .._validate import check_choice
from .formats import CIFAR_BATCHES, IDX_SPLITS

#: Where each dataset is downloaded from (``base_url + file name``). MNIST comes from a
#: mirror holding the same bytes as its original host (yann.lecun.com), which does not
#: serve the files reliably.
BASE_URLS = {
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}

#: SHA-256 of the files a download fetches: the official files (the published Fashion-MNIST
#: and MNIST .gz files, the CIFAR-10 binary archive).
CHECKSUMS = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz":
            "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz":
            "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz":
            "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz":
            "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "cifar10": {
        "cifar-10-binary.tar.gz":
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    },
}

#: Folders of Debian's dataset packages.
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
APT_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}

_DOWNLOAD_TIMEOUT = 60.0
_REPORT_EVERY = 0.5                              # seconds between progress reports


class DownloadProgress(NamedTuple):
    """One progress report of a file being downloaded.

    Attributes
    ----------
    url : str
    n_bytes : int
        Bytes received so far.
    total : int or None
        The announced length (``Content-Length``), None when the server sends none.
    done : bool
        The transfer ended: this is the file's last report.
    """
    url: str
    n_bytes: int
    total: int | None
    done: bool


#: ``progress(report)``, called while a file downloads (at most every 0.5 s, and once at
#: the end with ``done=True``).
ProgressCallback = Callable[[DownloadProgress], None]


@dataclass(frozen=True)
class _Layout:
    """One way a dataset can sit in a folder: the files it needs (each with the names it
    may have, first found wins) and how to read them."""
    kind: str                                  # "idx", "cifar-bin", "cifar-py" (+ "-tar")
    files: tuple[tuple[str, ...], ...]

    def resolve(self, folder: Path) -> list[Path] | None:
        found = []
        for names in self.files:
            path = next((folder / n for n in names if (folder / n).is_file()), None)
            if path is None:
                return None
            found.append(path)
        return found


def _idx_layout() -> _Layout:
    names = [f"{prefix}-{part}-ubyte" for prefix in IDX_SPLITS.values()
             for part in ("images-idx3", "labels-idx1")]
    return _Layout("idx", tuple((n + ".gz", n) for n in names))


def _cifar_layouts() -> list[_Layout]:
    members = [b for split in ("train", "test") for b in CIFAR_BATCHES[split]]
    return [_Layout("cifar-bin-tar", (("cifar-10-binary.tar.gz",),)),
            _Layout("cifar-bin", tuple((f"cifar-10-batches-bin/{m}.bin",) for m in members)),
            _Layout("cifar-py-tar", (("cifar-10-python.tar.gz",),)),
            _Layout("cifar-py", tuple((f"cifar-10-batches-py/{m}",) for m in members))]


_LAYOUTS = {"fashion-mnist": [_idx_layout()], "mnist": [_idx_layout()],
            "cifar10": _cifar_layouts()}


def cache_dir(name: str) -> Path:
    """The user cache folder of dataset ``name``: ``$XDG_CACHE_HOME/srigl-ref/<name>``
    (``~/.cache/srigl-ref/<name>`` when ``XDG_CACHE_HOME`` is unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "srigl-ref" / name


def _places(name: str, data_dir) -> list[tuple[str, Path | None]]:
    """(description, folder) in lookup order; folder None when the place is not set."""
    places = []
    for label, root in (("--data-dir", data_dir), ("$SRIGL_REF_DATA",
                                                   os.environ.get("SRIGL_REF_DATA") or None)):
        if root is None:
            places.append((f"{label}: not given" if label == "--data-dir" else
                           f"{label}: not set", None))
        else:
            places += [(label, Path(root)), (label, Path(root) / name)]
    places.append(("user cache", cache_dir(name)))
    if name in SYSTEM_DIRS:
        places.append((f"system folder of Debian's {APT_PACKAGES[name]}", SYSTEM_DIRS[name]))
    return places


def _find_local(name: str, data_dir, looked: list[str]) -> tuple[_Layout, list[Path]] | None:
    for label, folder in _places(name, data_dir):
        if folder is None:
            looked.append(label)
            continue
        for layout in _LAYOUTS[name]:
            paths = layout.resolve(folder)
            if paths is not None:
                return layout, paths
        state = "no such folder" if not folder.is_dir() else "the dataset's files are missing"
        looked.append(f"{label} {folder}: {state}")
    return None


def find_dataset(name, *, data_dir=None, download=True, base_url=None,
                 progress: ProgressCallback | None = None) -> tuple[str, list[Path]]:
    """Locate (and if need be download) the files of dataset ``name``.

    Parameters
    ----------
    name : {"fashion-mnist", "mnist", "cifar10"}
    data_dir : str or Path or None
        Looked in first (the folder, then ``data_dir/<name>``).
    download : bool
        Download into the user cache when no local copy is found.
    base_url : str or None
        Where to download from (``base_url + file name``); default ``$SRIGL_REF_DATA_URL``,
        else the official host (``BASE_URLS``).
    progress : callable or None
        Called with a ``DownloadProgress`` while a file downloads (``ProgressCallback``).

    Returns
    -------
    kind : str
        How the files are laid out (``"idx"``, ``"cifar-bin-tar"``, ``"cifar-bin"``,
        ``"cifar-py-tar"``, ``"cifar-py"``).
    paths : list of Path
        The files, in the layout's order.

    Raises
    ------
    ValueError
        Nothing found and the download is off or failed: the message names every place
        looked, the download's error and the remedies. Also a checksum mismatch or an
        interrupted transfer (nothing is left in the cache).
    TypeError
        ``progress`` is neither callable nor None.
    """
    check_choice("name", name, tuple(_LAYOUTS))
    if progress is not None and not callable(progress):
        raise TypeError(f"progress == {progress!r}, must be a callable taking a "
                        f"DownloadProgress, or None")
    looked: list[str] = []
    found = _find_local(name, data_dir, looked)
    if found is not None:
        return found[0].kind, found[1]
    url = base_url or os.environ.get("SRIGL_REF_DATA_URL") or BASE_URLS[name]
    if download:
        try:
            _download(name, url, progress)
        except (OSError, HTTPException) as e:
            looked.append(f"download from {url}: failed ({e})")
        else:
            layout = _LAYOUTS[name][0]
            return layout.kind, layout.resolve(cache_dir(name))
    else:
        looked.append(f"download from {url}: not attempted (download disabled)")
    remedies = [f"pass --data-dir DIR (or set SRIGL_REF_DATA) to a folder holding "
                f"{', '.join(CHECKSUMS[name])}",
                "run once with network access to download into the user cache"]
    if name in APT_PACKAGES:
        remedies.insert(0, f"install Debian's package: apt-get install {APT_PACKAGES[name]}")
    raise ValueError(f"dataset {name!r} not found. Looked in:\n"
                     + "".join(f"  - {p}\n" for p in looked)
                     + "Remedies: " + "; or ".join(remedies))


def _download(name: str, base_url: str, progress: ProgressCallback | None) -> None:
    """Fetch every missing file of ``CHECKSUMS[name]`` into ``cache_dir(name)``."""
    folder = cache_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    for file, sha256 in CHECKSUMS[name].items():
        dest = folder / file
        if not dest.is_file():
            _fetch(base_url.rstrip("/") + "/" + file, dest, sha256, progress)


def _fetch(url: str, dest: Path, sha256: str, progress: ProgressCallback | None) -> None:
    """Stream ``url`` to a temporary file beside ``dest``, check its length and SHA-256,
    then rename it to ``dest``. On any failure the temporary file is removed."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest, n_bytes, last = hashlib.sha256(), 0, 0.0
        with os.fdopen(fd, "wb") as out, \
                urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total is not None else None
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                n_bytes += len(chunk)
                if progress is not None and time.monotonic() - last > _REPORT_EVERY:
                    last = time.monotonic()
                    progress(DownloadProgress(url, n_bytes, total, done=False))
        if progress is not None:
            progress(DownloadProgress(url, n_bytes, total, done=True))
        if total is not None and n_bytes != total:
            raise ValueError(f"{url}: transfer interrupted: received {n_bytes} of {total} "
                             f"bytes; nothing was written to {dest.parent}")
        if digest.hexdigest() != sha256:
            raise ValueError(f"{url}: SHA-256 mismatch: expected {sha256}, got "
                             f"{digest.hexdigest()} ({n_bytes} bytes); nothing was written "
                             f"to {dest.parent}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
