"""Data: IDX and CIFAR-10 readers on small files written here, corrupt / truncated /
mismatched files, the restricted unpickler, dataset lookup, downloads from a local HTTP
server on 127.0.0.1 (nothing else is contacted), synthetic data, normalisation, batches."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from srigl_ref import data
from srigl_ref.data import (batches, channel_stats, find_dataset, load_dataset, normalize,
                            read_cifar10_binary, read_cifar10_python, read_idx, synthetic)
from srigl_ref.train import download_printer

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(a: np.ndarray) -> bytes:
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
             np.float32: 0x0D, np.float64: 0x0E}
    header = bytes([0, 0, codes[a.dtype.type], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def mnist_like(rng, n_train=20, n_test=8) -> dict[str, bytes]:
    """The four IDX files of a tiny MNIST-like dataset, uncompressed."""
    arrays = [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_train, dtype=np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_test, dtype=np.uint8)]
    return {name: idx_bytes(a) for name, a in zip(IDX_NAMES, arrays)}


def write_files(folder: Path, files: dict[str, bytes], *, gz=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(blob) if gz else blob)
    return folder


def cifar_records(rng, n) -> tuple[np.ndarray, np.ndarray, bytes]:
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    blob = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1).tobytes()
    return images, labels, blob


def cifar_pickle(images, labels) -> bytes:
    return pickle.dumps({b"batch_label": b"test", b"labels": [int(v) for v in labels],
                         b"data": images.reshape(len(images), -1)}, protocol=4)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No dataset anywhere: empty cache, no env settings, no system folder, no proxies."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("SRIGL_REF_DATA", "SRIGL_REF_DATA_URL", "http_proxy", "https_proxy",
                "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", tmp_path / "no-system-folder")
    return tmp_path


# --- IDX ---------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_round_trip(tmp_path, rng, gz, dtype):
    a = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(idx_bytes(a)) if gz else idx_bytes(a))
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative and b.flags.writeable
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_and_trailing(tmp_path, rng, gz):
    blob = idx_bytes(rng.integers(0, 256, (4, 3, 3), dtype=np.uint8))
    path = tmp_path / "x"
    for bad, what in [(blob[:-5], r"truncated: the header declares shape \(4, 3, 3\) of "
                                  r"uint8 \(36 data bytes\), the file holds 31"),
                      (blob + b"\0", r"trailing bytes: .* the file holds 37"),
                      (blob[:9], r"truncated IDX header \(9 bytes, 3 dimensions need 16\)"),
                      (blob[:2], r"truncated IDX file \(2 bytes")]:
        path.write_bytes(gzip.compress(bad) if gz else bad)
        with pytest.raises(ValueError, match=rf"{path}: {what}"):
            read_idx(path)


def test_read_idx_wrong_magic(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(ValueError, match=rf"{path}: not an IDX file: magic number 0x00000701"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ValueError, match=r"magic number 0x504b0304"):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path, rng):
    blob = gzip.compress(idx_bytes(rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "x.gz"
    corrupt = bytearray(blob)
    corrupt[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match=rf"{path}: corrupt or truncated gzip data"):
        read_idx(path)
    path.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError, match=rf"{path}: corrupt or truncated gzip data"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope: cannot be read \(No such file"):
        read_idx(tmp_path / "nope")


# --- CIFAR-10 ----------------------------------------------------------------------------

def test_read_cifar10_binary(tmp_path, rng):
    images, labels, blob = cifar_records(rng, 5)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(blob)
    got_images, got_labels = read_cifar10_binary(path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_labels.dtype == np.int64
    path.write_bytes(blob[:-1])
    with pytest.raises(ValueError, match=rf"{path}: 15364 bytes, must be a positive multiple "
                                         r"of 3073"):
        read_cifar10_binary(path)
    bad = bytearray(blob)
    bad[3073] = 10
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"labels in \[\d, 10\], must be in \[0, 9\]"):
        read_cifar10_binary(path)


def test_read_cifar10_python(tmp_path, rng):
    images, labels, _ = cifar_records(rng, 4)
    path = tmp_path / "data_batch_1"
    path.write_bytes(cifar_pickle(images, labels))
    got_images, got_labels = read_cifar10_python(path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    path.write_bytes(pickle.dumps({b"data": images.reshape(4, -1)[:, :100],
                                   b"labels": [0] * 4}, protocol=4))
    with pytest.raises(ValueError, match=r"'data' is shape \(4, 100\) and dtype uint8, must "
                                         r"be uint8 of shape \(n, 3072\)"):
        read_cifar10_python(path)
    path.write_bytes(cifar_pickle(images, labels)[:-10])
    with pytest.raises(ValueError, match=rf"{path}: not a CIFAR-10 python batch"):
        read_cifar10_python(path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _Exploit(marker), "labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"not a CIFAR-10 python batch \(UnpicklingError: "
                                         r"global '(posix|os|nt)\.system' is not allowed\)"):
        read_cifar10_python(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(eval, protocol=4))
    with pytest.raises(ValueError, match=r"global 'builtins\.eval' is not allowed"):
        read_cifar10_python(path)


# --- lookup and loading ------------------------------------------------------------------

def test_load_idx_dataset_from_data_dir(isolated, rng):
    files = mnist_like(rng)
    write_files(isolated / "d", files)
    ds = load_dataset("fashion-mnist", data_dir=isolated / "d", download=False)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (8, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.x_train.flags.c_contiguous
    assert ds.y_train.dtype == np.int64 and ds.n_classes == 10
    assert ds.input_shape == (1, 28, 28)
    np.testing.assert_allclose(ds.x_train.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(), 1.0, atol=1e-5)
    raw = read_idx(isolated / "d" / "train-images-idx3-ubyte.gz")
    mean, std = raw.mean() / 255, raw.std() / 255
    np.testing.assert_allclose(ds.x_train[:, 0], (raw / 255 - mean) / std, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(ds.y_test, read_idx(isolated / "d" /
                                                      "t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(ValueError, match="read-only"):
        ds.x_train[0, 0, 0, 0] = 1.0


def test_plain_files_in_a_name_subfolder_and_env_var(isolated, rng, monkeypatch):
    write_files(isolated / "root" / "mnist", mnist_like(rng), gz=False)
    ds = load_dataset("mnist", data_dir=isolated / "root", download=False)
    assert len(ds.y_train) == 20
    monkeypatch.setenv("SRIGL_REF_DATA", str(isolated / "root"))
    kind, paths = find_dataset("mnist", download=False)
    assert kind == "idx" and paths[0] == isolated / "root" / "mnist" / IDX_NAMES[0]


def test_lookup_order(isolated, rng, monkeypatch):
    """--data-dir, then $SRIGL_REF_DATA, then the cache, then the system folder."""
    for place in ("arg", "env", "cache/srigl-ref/fashion-mnist", "system"):
        write_files(isolated / place, mnist_like(rng))
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", isolated / "system")
    monkeypatch.setenv("SRIGL_REF_DATA", str(isolated / "env"))

    def where(**kw):
        return find_dataset("fashion-mnist", download=False, **kw)[1][0].parent

    assert where(data_dir=isolated / "arg") == isolated / "arg"
    assert where() == isolated / "env"
    monkeypatch.delenv("SRIGL_REF_DATA")
    assert where(data_dir=isolated / "empty") == isolated / "cache/srigl-ref/fashion-mnist"
    for f in (isolated / "cache/srigl-ref/fashion-mnist").iterdir():
        f.unlink()
    assert where() == isolated / "system"


def test_nothing_found_names_every_place_and_both_remedies(isolated, monkeypatch):
    monkeypatch.setenv("SRIGL_REF_DATA", str(isolated / "env"))
    (isolated / "arg").mkdir()
    with pytest.raises(ValueError) as info:
        load_dataset("fashion-mnist", data_dir=isolated / "arg", download=False)
    msg = str(info.value)
    for expected in [f"--data-dir {isolated / 'arg'}: the dataset's files are missing",
                     f"--data-dir {isolated / 'arg' / 'fashion-mnist'}: no such folder",
                     f"$SRIGL_REF_DATA {isolated / 'env'}: no such folder",
                     f"user cache {isolated / 'cache/srigl-ref/fashion-mnist'}: no such folder",
                     f"system folder of Debian's dataset-fashion-mnist "
                     f"{isolated / 'no-system-folder'}",
                     "download from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
                     ": not attempted",
                     "apt-get install dataset-fashion-mnist", "--data-dir DIR"]:
        assert expected in msg, (expected, msg)
    assert msg.startswith("dataset 'fashion-mnist' not found. Looked in:")


def test_mismatched_idx_files(isolated, rng):
    files = mnist_like(rng)
    files["train-labels-idx1-ubyte"] = idx_bytes(rng.integers(0, 10, 19, dtype=np.uint8))
    write_files(isolated / "d", files)
    with pytest.raises(ValueError, match=r"mismatched files: .*train-images-idx3-ubyte.gz "
                                         r"holds 20 images but .*train-labels-idx1-ubyte.gz "
                                         r"holds 19 labels"):
        load_dataset("mnist", data_dir=isolated / "d", download=False)
    files["train-labels-idx1-ubyte"] = files["train-images-idx3-ubyte"]
    write_files(isolated / "d", files)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: must hold uint8 labels "
                                         r"in \[0, 9\] of shape \(n,\), holds uint8 of shape "
                                         r"\(20, 28, 28\)"):
        load_dataset("mnist", data_dir=isolated / "d", download=False)


def _cifar_tar(path: Path, rng, *, binary: bool, drop: str | None = None) -> None:
    folder = "cifar-10-batches-bin" if binary else "cifar-10-batches-py"
    with tarfile.open(path, "w:gz") as tar:
        for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            if batch == drop:
                continue
            images, labels, blob = cifar_records(rng, 3)
            body = blob if binary else cifar_pickle(images, labels)
            info = tarfile.TarInfo(f"{folder}/{batch}{'.bin' if binary else ''}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))


@pytest.mark.parametrize("binary", [True, False])
def test_load_cifar10_from_archives(isolated, rng, binary):
    name = "cifar-10-binary.tar.gz" if binary else "cifar-10-python.tar.gz"
    (isolated / "d").mkdir()
    _cifar_tar(isolated / "d" / name, rng, binary=binary)
    ds = load_dataset("cifar10", data_dir=isolated / "d", download=False)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    _cifar_tar(isolated / "d" / name, rng, binary=binary, drop="data_batch_3")
    with pytest.raises(ValueError, match=rf"{name}: has no file member "
                                         r"'cifar-10-batches-(bin|py)/data_batch_3"):
        load_dataset("cifar10", data_dir=isolated / "d", download=False)
    blob = (isolated / "d" / name).read_bytes()
    (isolated / "d" / name).write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError, match=rf"{name}: corrupt or truncated archive"):
        load_dataset("cifar10", data_dir=isolated / "d", download=False)


def test_load_cifar10_from_extracted_python_batches(isolated, rng):
    folder = isolated / "d" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images, labels, _ = cifar_records(rng, 2)
        (folder / batch).write_bytes(cifar_pickle(images, labels))
    ds = load_dataset("cifar10", data_dir=isolated / "d", download=False)
    assert ds.x_train.shape == (10, 3, 32, 32) and len(ds.y_test) == 2


# --- downloads from a local server -------------------------------------------------------

@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving ``files[name] = (body, n_bytes_to_send)``."""
    files: dict[str, tuple[bytes, int]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.rsplit("/", 1)[-1]
            if name not in files:
                self.send_error(404)
                return
            body, n_send = files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:n_send])          # fewer bytes: an interrupted transfer

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield files, f"http://127.0.0.1:{srv.server_address[1]}/datasets"
    srv.shutdown()
    srv.server_close()
    thread.join()


def _serve_mnist(files, rng, monkeypatch) -> dict[str, bytes]:
    """Serve a tiny MNIST as .gz files whose SHA-256 the loader expects."""
    blobs = {n + ".gz": gzip.compress(b) for n, b in mnist_like(rng).items()}
    for name, blob in blobs.items():
        files[name] = (blob, len(blob))
        monkeypatch.setitem(data.CHECKSUMS["mnist"], name, hashlib.sha256(blob).hexdigest())
    return blobs


def test_download_success(isolated, rng, server, monkeypatch, capsys):
    """Files land verified in the cache; progress goes to the callback, nothing is printed:
    each file's last report is ``done`` with every byte received."""
    files, url = server
    blobs = _serve_mnist(files, rng, monkeypatch)
    reports = []
    ds = load_dataset("mnist", base_url=url, progress=reports.append)
    assert len(ds.y_train) == 20
    cache = isolated / "cache" / "srigl-ref" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(blobs)
    assert all((cache / n).read_bytes() == b for n, b in blobs.items())
    assert capsys.readouterr() == ("", "")
    last = {r.url: r for r in reports if r.done}
    assert last == {f"{url}/{n}": data.DownloadProgress(f"{url}/{n}", len(b), len(b), True)
                    for n, b in blobs.items()}
    assert all(isinstance(r, data.DownloadProgress) for r in reports)
    files.clear()                                     # now served from the cache
    assert len(load_dataset("mnist", base_url=url).y_test) == 8


def test_trainer_prints_download_progress():
    out = io.StringIO()
    report = download_printer(out)
    report(data.DownloadProgress("http://h/f.gz", 500_000, 2_000_000, False))
    report(data.DownloadProgress("http://h/f.gz", 2_000_000, 2_000_000, True))
    report(data.DownloadProgress("http://h/g", 1_500_000, None, True))
    assert out.getvalue() == ("\rdownloading http://h/f.gz: 0.5/2.0 MB (25%)"
                              "\rdownloading http://h/f.gz: 2.0/2.0 MB (100%)\n"
                              "\rdownloading http://h/g: 1.5 MB\n")


def test_progress_must_be_callable(isolated):
    with pytest.raises(TypeError, match=r"progress == True, must be a callable taking a "
                                        r"DownloadProgress, or None"):
        find_dataset("mnist", progress=True)


def test_download_base_url_from_env(isolated, rng, server, monkeypatch):
    files, url = server
    _serve_mnist(files, rng, monkeypatch)
    monkeypatch.setenv("SRIGL_REF_DATA_URL", url)
    kind, paths = find_dataset("mnist")
    assert paths[0] == isolated / "cache" / "srigl-ref" / "mnist" / "train-images-idx3-ubyte.gz"


def test_download_checksum_mismatch_leaves_nothing(isolated, rng, server, monkeypatch):
    files, url = server
    _serve_mnist(files, rng, monkeypatch)
    bad = b"not the file" * 10
    files["t10k-images-idx3-ubyte.gz"] = (bad, len(bad))
    with pytest.raises(ValueError, match=rf"{url}/t10k-images-idx3-ubyte.gz: SHA-256 mismatch: "
                                         rf"expected [0-9a-f]{{64}}, got "
                                         rf"{hashlib.sha256(bad).hexdigest()} \(120 bytes\)"):
        load_dataset("mnist", base_url=url)
    cache = isolated / "cache" / "srigl-ref" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == ["train-images-idx3-ubyte.gz",
                                                       "train-labels-idx1-ubyte.gz"]


def test_download_interrupted_leaves_nothing(isolated, rng, server, monkeypatch):
    files, url = server
    blobs = _serve_mnist(files, rng, monkeypatch)
    first = "train-images-idx3-ubyte.gz"
    files[first] = (blobs[first], 100)
    with pytest.raises(ValueError, match=rf"{url}/{first}: transfer interrupted: received 100 "
                                         rf"of {len(blobs[first])} bytes"):
        load_dataset("mnist", base_url=url)
    assert list((isolated / "cache" / "srigl-ref" / "mnist").iterdir()) == []


def test_download_failure_is_listed_with_the_places(isolated, server):
    files, url = server                                   # serves nothing: 404
    with pytest.raises(ValueError, match=rf"(?s)dataset 'cifar10' not found\. Looked in:.*"
                                         rf"download from {url}: failed \(HTTP Error 404.*"
                                         r"Remedies: pass --data-dir DIR"):
        load_dataset("cifar10", base_url=url)


# --- real Fashion-MNIST (Debian's dataset-fashion-mnist) ---------------------------------

@pytest.mark.skipif(not FASHION_DIR.is_dir(),
                    reason="dataset-fashion-mnist is not installed (/usr/share/datasets/"
                           "fashion-mnist missing); .ci/run installs it")
def test_real_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("SRIGL_REF_DATA", raising=False)
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert abs(float(ds.x_train.mean())) < 1e-3 and abs(float(ds.x_train.std()) - 1) < 1e-3


# --- synthetic, normalisation, batches ---------------------------------------------------

def test_synthetic_is_deterministic(rng):
    a = synthetic(rng=np.random.default_rng(7), n_train=50, n_test=10, input_shape=(3, 9, 10))
    b = synthetic(rng=np.random.default_rng(7), n_train=50, n_test=10, input_shape=(3, 9, 10))
    assert a.x_train.shape == (50, 3, 9, 10) and a.x_train.dtype == np.float32
    assert all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("x_train", "y_train", "x_test", "y_test"))
    c = synthetic(rng=np.random.default_rng(8), n_train=50, n_test=10, input_shape=(3, 9, 10))
    assert not np.array_equal(a.x_train, c.x_train)
    big = synthetic(rng=rng, n_train=2000, n_test=10)
    assert abs(float(big.x_train.std()) - 1.0) < 0.05
    with pytest.raises(TypeError, match=r"load_dataset\('synthetic'\) needs rng="):
        load_dataset("synthetic")


def test_synthetic_is_learnable_by_an_mlp():
    """Two epochs of SGD on an MLP reach high test accuracy (the whole nn stack at work)."""
    from srigl_ref.nn import SGD, build_model, softmax_cross_entropy
    rng = np.random.default_rng(0)
    ds = load_dataset("synthetic", rng=rng)
    model = build_model("mlp", ds.input_shape, ds.n_classes, rng=rng, hidden=(64,))
    opt = SGD(model.params, lr=0.05, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):
        for x, y in batches(ds.x_train, ds.y_train, 128, rng=rng):
            logits, cache = model.forward(x)
            opt.step(model.backward(softmax_cross_entropy(logits, y)[1], cache))
    accuracy = (model.forward(ds.x_test, train=False)[0].argmax(axis=1) == ds.y_test).mean()
    assert accuracy > 0.95


def test_channel_stats_and_normalize(rng):
    images = rng.integers(0, 256, (7, 3, 4, 5), dtype=np.uint8)
    mean, std = channel_stats(images)
    as_float = images / 255.0
    np.testing.assert_allclose(mean, as_float.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, as_float.std(axis=(0, 2, 3)), rtol=1e-12)
    x = normalize(images, mean, std)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x, (as_float - mean[:, None, None]) / std[:, None, None],
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"images is float64 of shape \(7, 3, 4, 5\), must "
                                         r"be uint8"):
        channel_stats(as_float)
    with pytest.raises(ValueError, match=r"must both be \(3,\) with std > 0"):
        normalize(images, mean, np.zeros(3))


def test_batches(rng):
    x = np.arange(10 * 2 * 3, dtype=np.float64).reshape(10, 2, 3)
    y = np.arange(10)
    plain = list(batches(x, y, 4))
    assert [len(b[1]) for b in plain] == [4, 4, 2]
    assert all(bx.dtype == np.float32 and bx.flags.c_contiguous and by.dtype == np.int64
               for bx, by in plain)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in plain]), x)
    shuffled = list(batches(x, y, 4, rng=np.random.default_rng(1), drop_last=True))
    assert [len(b[1]) for b in shuffled] == [4, 4]
    seen = np.concatenate([b[1] for b in shuffled])
    assert len(set(seen)) == 8 and not np.array_equal(seen, np.arange(8))
    for bx, by in shuffled:
        np.testing.assert_array_equal(bx, x[by])
    again = list(batches(x, y, 4, rng=np.random.default_rng(1), drop_last=True))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(shuffled, again))
    with pytest.raises(ValueError, match=r"batch_size == 0, must be in \[1, inf\]"):
        batches(x, y, 0)
    with pytest.raises(ValueError, match=r"y.shape == \(len\(x\),\), got \(10, 2, 3\) and "
                                         r"\(9,\)"):
        batches(x, y[:9], 2)
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator"):
        batches(x, y, 2, rng=3)
