"""Readers for the datasets kdforge knows, each returning uint8 N x C x H x W arrays and int64 labels.

Nothing is downloaded unless `download=True` is asked for; a missing dataset raises a one-line
`DataNotFoundError` naming where kdforge looked and how to get the data.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import sys
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from kdforge.errors import DataNotFoundError, UserError
from kdforge.fileio import atomic_write_bytes

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
CIFAR_ARCHIVES = {
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("KDFORGE_CACHE", Path.home() / ".cache" / "kdforge"))


def data_roots(root: str | os.PathLike | None, extra: tuple[str, ...] = ()) -> list[Path]:
    """Where datasets are looked for, in order: the config's root, $KDFORGE_DATA, ./data, the download cache,
    then dataset-specific system folders."""
    candidates = [root, os.environ.get("KDFORGE_DATA"), "data", cache_dir() / "data", *extra]
    seen, roots = set(), []
    for c in candidates:
        if c:
            p = Path(c).expanduser()
            if p not in seen:
                seen.add(p)
                roots.append(p)
    return roots


def find_file(names: tuple[str, ...], roots: list[Path]) -> Path | None:
    for r in roots:
        for n in names:
            if (r / n).exists():
                return r / n
    return None


def _where(roots: list[Path]) -> str:
    return ", ".join(str(r) for r in roots)


def download(url: str, target: Path, md5: str | None = None) -> Path:
    """Fetch `url` to `target` atomically (only ever called when the user asked for a download)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            payload = response.read()
    except OSError as exc:
        raise DataNotFoundError(f"download of {url} failed ({exc}); fetch it by hand into {target.parent}") from None
    if md5 and hashlib.md5(payload).hexdigest() != md5:
        raise DataNotFoundError(f"download of {url} has the wrong checksum; fetch it by hand into {target.parent}")
    atomic_write_bytes(target, payload)
    return target


# --- CIFAR-10 / CIFAR-100, official python-pickle archives -----------------------------------------

_ALLOWED_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 carry raw bytes; a pure conversion
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: an archive cannot run code on load."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_PICKLE_GLOBALS:
            raise UserError(f"refusing to unpickle {module}.{name} from a dataset file: it is not a CIFAR archive")
        module = module.replace("numpy.core.", "numpy._core.") if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _load_batch(raw: bytes, where: str) -> dict:
    try:
        entry = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except UserError:
        raise
    except Exception:  # EOFError, UnpicklingError, ...: a cut or damaged file
        raise UserError(f"{where} is truncated or not a CIFAR batch; download the archive again") from None
    if not isinstance(entry, dict):
        raise UserError(f"{where} is not a CIFAR batch (expected a dict of arrays)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _open_tar(path: Path, mode: str = "r:*") -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{path} is truncated or not a tar archive ({type(exc).__name__}); fetch it again") from None


def _cifar_members(kind: str, root, download_ok: bool) -> dict[str, bytes]:
    folder, archive, url, md5 = CIFAR_ARCHIVES[kind]
    roots = data_roots(root)
    found = find_file((folder, archive), roots)
    if found is None and download_ok:
        found = download(url, cache_dir() / "data" / archive, md5)
    if found is None:
        raise DataNotFoundError(
            f"{kind} not found: looked for {folder}/ or {archive} in {_where(roots)}; "
            f"put the official archive there or set data.download=true"
        )
    if found.is_dir():
        return {p.name: p.read_bytes() for p in found.iterdir() if p.is_file()}
    try:
        with _open_tar(found) as tar:
            return {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{found} is truncated or corrupted ({type(exc).__name__}); fetch it again") from None


def read_cifar_pickle(kind: str, root=None, download_ok: bool = False) -> dict:
    """{'train': (x, y), 'test': (x, y), 'classes': [...]} from the official pickle layout."""
    members = _cifar_members(kind, root, download_ok)
    if kind == "cifar10":
        train_names, test_names, label_key = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"
        meta_name, names_key = "batches.meta", "label_names"
    else:
        train_names, test_names, label_key = ["train"], ["test"], "fine_labels"
        meta_name, names_key = "meta", "fine_label_names"
    missing = [n for n in train_names + test_names if n not in members]
    if missing:
        raise DataNotFoundError(f"{kind} archive is incomplete: {', '.join(missing)} missing; download it again")

    def split(names):
        batches = [_load_batch(members[n], f"{kind} member {n}") for n in names]
        try:
            x = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
            y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{kind} archive has malformed batches ({type(exc).__name__}: {exc}); fetch it again") from None
        if len(x) != len(y):
            raise UserError(f"{kind} archive has {len(x)} images but {len(y)} labels; fetch it again")
        return x, y

    classes = None
    if meta_name in members:
        names = _load_batch(members[meta_name], f"{kind} member {meta_name}").get(names_key)
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else None
    return {"train": split(train_names), "test": split(test_names), "classes": classes}


# --- CIFAR-10 JPEG archive (train/<class>/NNNN.jpg, test/<class>/NNNN.jpg) -------------------------

def read_cifar10_jpeg(root=None) -> dict:
    """Decode the JPEG archive once into uint8 arrays, cached beside the other kdforge caches."""
    roots = data_roots(root)
    archive = find_file(("cifar10-jpeg.tar.gz",), roots)
    if archive is None:
        raise DataNotFoundError(
            f"cifar10-jpeg not found: looked for cifar10-jpeg.tar.gz in {_where(roots)}; "
            "copy the archive there or set data.root"
        )
    # keyed by the archive's bytes (20 MB: hashed in well under a second, against 10-17 s of decoding), not by its
    # path and time stamp: a copy of the same archive, or one placed anew by a machine's set-up, is the same data
    key = hashlib.sha1(archive.read_bytes()).hexdigest()[:12]
    cached = cache_dir() / f"cifar10-jpeg-{key}.npz"
    if cached.exists():
        try:
            with np.load(cached) as z:
                return {"train": (z["train_x"], z["train_y"]), "test": (z["test_x"], z["test_y"]),
                        "classes": CIFAR10_CLASSES}
        except Exception:  # a damaged cache is rebuilt, never trusted
            cached.unlink(missing_ok=True)
    arrays = _decode_jpeg_archive(archive)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(cached, buffer.getvalue())
    return {"train": (arrays["train_x"], arrays["train_y"]), "test": (arrays["test_x"], arrays["test_y"]),
            "classes": CIFAR10_CLASSES}


def _decode_jpeg_archive(archive: Path) -> dict[str, np.ndarray]:
    from PIL import Image
    from tqdm import tqdm

    samples: dict[str, list[tuple[str, int, np.ndarray]]] = {"train": [], "test": []}
    class_index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
    try:
        with _open_tar(archive, "r:gz") as tar:
            for member in tqdm(tar, total=60000, desc="decoding CIFAR-10 JPEG (once)", unit="img", leave=False,
                               disable=not sys.stderr.isatty()):
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) < 3 or parts[-3] not in samples or parts[-2] not in class_index:
                    continue
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as img:
                    pixels = np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
                if pixels.shape != (3, 32, 32):
                    raise UserError(f"{archive}: {member.name} is {pixels.shape[2]}x{pixels.shape[1]}, not 32x32")
                samples[parts[-3]].append((parts[-1], class_index[parts[-2]], pixels))
    except (tarfile.TarError, EOFError, OSError) as exc:  # includes PIL's UnidentifiedImageError
        raise UserError(f"{archive} is truncated or holds a damaged image ({type(exc).__name__}); fetch it again") from None
    if not samples["train"] or not samples["test"]:
        raise UserError(f"{archive} holds no train/<class>/*.jpg or test/<class>/*.jpg images")
    out = {}
    for split, items in samples.items():
        items.sort(key=lambda t: (t[1], t[0]))  # class, then file name: a fixed order
        out[f"{split}_x"] = np.stack([t[2] for t in items])
        out[f"{split}_y"] = np.array([t[1] for t in items], dtype=np.int64)
    return out


# --- Fashion-MNIST, IDX files ----------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise UserError(f"{path} is truncated or not gzip ({type(exc).__name__}); reinstall or fetch it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {body.size}")
    return body.reshape(dims)


def read_fashion_mnist(root=None, download_ok: bool = False) -> dict:
    roots = data_roots(root, ("/usr/share/datasets/fashion-mnist",))
    roots = roots + [r / "fashion-mnist" for r in roots if r.name != "fashion-mnist"]
    out = {"classes": FASHION_CLASSES}
    for split, names in FASHION_FILES.items():
        arrays = []
        for name in names:
            path = find_file((name + ".gz", name), roots)
            if path is None and download_ok:
                path = download(FASHION_URL + name + ".gz", cache_dir() / "data" / "fashion-mnist" / (name + ".gz"))
            if path is None:
                raise DataNotFoundError(
                    f"fashion-mnist not found: looked for {name}.gz in {_where(roots)}; "
                    "install it with `apt-get install dataset-fashion-mnist` or set data.download=true"
                )
            arrays.append(read_idx(path))
        images, labels = arrays
        out[split] = (images[:, None].copy(), labels.astype(np.int64))
    return out


# --- digits (scikit-learn), fixed stratified split -------------------------------------------------

def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test indices with the same class proportions; depends only on (labels, fraction, seed)."""
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def read_digits() -> dict:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataNotFoundError("digits needs scikit-learn: pip install 'kdforge[data]'") from None
    digits = load_digits()
    images = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    train, test = stratified_split(labels, 0.3, seed=0)
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test]),
            "classes": [str(i) for i in range(10)]}
