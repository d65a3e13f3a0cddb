"""Reading ``torch.save`` files without PyTorch, and refusing everything else.

The fixtures were made once with real PyTorch 2.13 (fixtures/make_fixtures.py);
``expected.npz`` holds every tensor as torch converted it. Crafted archives below are
written opcode by opcode, so no test needs torch.
"""
import os
import pickle
import zipfile

import numpy as np
import pytest

from srigl_ref.interchange.torch_pickle import UnsafePickleError, load_torch
from tests.interchange.conftest import FIXTURES

EXPECTED = np.load(FIXTURES / "expected.npz")
STEMS = sorted({k.split("/")[0] for k in EXPECTED.files} - {"official"})


def flat(obj, prefix=""):
    for k, v in obj.items():
        if isinstance(v, dict):
            yield from flat(v, f"{prefix}{k}.")
        elif isinstance(v, np.ndarray):
            yield prefix + k, v


@pytest.mark.parametrize("stem", STEMS)
def test_fixture_tensors_equal_what_torch_saved(stem):
    got = dict(flat(load_torch(FIXTURES / f"{stem}.pt")))
    want = {k.split("/", 1)[1]: EXPECTED[k] for k in EXPECTED.files if k.startswith(stem + "/")}
    assert set(got) == set(want)
    for k, a in got.items():
        assert a.dtype == want[k].dtype and a.shape == want[k].shape, k
        assert a.tobytes() == want[k].tobytes(), k               # bit for bit
        assert a.flags.c_contiguous


def test_half_types_widen_to_float32_and_views_are_resolved():
    d = load_torch(FIXTURES / "dtypes.pt")
    assert d["f16"].dtype == d["bf16"].dtype == np.float32 and d["f64"].dtype == np.float64
    assert d["bool"].dtype == np.bool_ and d["u8"].dtype == np.uint8
    np.testing.assert_array_equal(d["param"], EXPECTED["dtypes/param"])
    v = load_torch(FIXTURES / "views.pt")
    base = v["base"]
    np.testing.assert_array_equal(v["slice"], base[1:4, 2::3])
    np.testing.assert_array_equal(v["t"], base.T)
    np.testing.assert_array_equal(v["row"], base[3])
    np.testing.assert_array_equal(v["narrow"], base[:, 5:8])


def test_scheduler_state_keeps_its_structure():
    d = load_torch(FIXTURES / "scheduler.pt")
    masks = d["pruner"]["backward_masks"]
    assert [None if m is None else m.shape for m in masks] == [(4, 1, 3, 3), None, (3, 6)]
    assert d["pruner"]["S"] == [0.45, 0.0, 0.66] and d["step"] == 300


# ------------------------------------------------------------------ crafted archives
def _s(text):                                       # BINUNICODE
    b = text.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def _i(n):                                          # BININT
    return b"J" + int(n).to_bytes(4, "little", signed=True)


def _tuple(*items):                                 # MARK ... TUPLE
    return b"(" + b"".join(items) + b"t"


def tensor_pickle(storage="FloatStorage", key="0", numel=6, offset=0, size=(2, 3),
                  stride=(3, 1)):
    """Protocol-2 pickle of ``{'w': tensor}`` exactly as torch.save lays it out."""
    pid = _tuple(_s("storage"), b"ctorch\n" + storage.encode() + b"\n", _s(key), _s("cpu"),
                 _i(numel))
    rebuild = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"Q" + _i(offset)
               + _tuple(*map(_i, size)) + _tuple(*map(_i, stride)) + b"\x89"
               + b"ccollections\nOrderedDict\n)R" + b"tR")
    return b"\x80\x02}(" + _s("w") + rebuild + b"u."


def torch_zip(path, pkl, storages=None, *, prefix="archive", version=b"3\n", byteorder=None):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{prefix}/data.pkl", pkl)
        if byteorder is not None:
            zf.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in (storages or {}).items():
            zf.writestr(f"{prefix}/data/{key}", raw)
        if version is not None:
            zf.writestr(f"{prefix}/version", version)
    return path


DATA = np.arange(6, dtype="<f4")


def test_crafted_archive_with_any_prefix_and_big_endian_data(tmp_path):
    f = torch_zip(tmp_path / "a.pt", tensor_pickle(), {"0": DATA.tobytes()},
                  prefix="my model v2")
    np.testing.assert_array_equal(load_torch(f)["w"], DATA.reshape(2, 3))
    f = torch_zip(tmp_path / "b.pt", tensor_pickle(offset=1, size=(2, 2), stride=(1, 2)),
                  {"0": DATA.astype(">f4").tobytes()}, byteorder=b"big")
    np.testing.assert_array_equal(load_torch(f)["w"], [[1, 3], [2, 4]])


class Touch:
    """Unpickling this would create ``target`` (via os.system, or builtins.open)."""

    def __init__(self, target, how):
        self.target, self.how = target, how

    def __reduce__(self):
        if self.how == "system":
            return os.system, (f"touch {self.target}",)
        return open, (str(self.target), "w")


@pytest.mark.parametrize("how", ["system", "open"])
def test_malicious_pickle_is_refused_without_executing_anything(tmp_path, how):
    target = tmp_path / "pwned"
    payload = pickle.dumps({"w": Touch(target, how)}, protocol=2)
    assert b"system" in payload or b"open" in payload
    f = torch_zip(tmp_path / "evil.pt", payload)
    with pytest.raises(UnsafePickleError, match=r"evil\.pt: refused global (posix|os|nt|io|"
                                                r"builtins)\.(system|open) in data\.pkl.*"
                                                r"nothing was executed"):
        load_torch(f)
    assert not target.exists()
    # the same payload behind a valid tensor: still refused, still nothing created
    f = torch_zip(tmp_path / "evil2.pt", tensor_pickle()[:-2] + _s("x")
                  + pickle.dumps(Touch(target, how), protocol=2)[2:-1] + b"u.",
                  {"0": DATA.tobytes()})
    with pytest.raises(UnsafePickleError, match="refused global"):
        load_torch(f)
    assert not target.exists()


def test_whole_module_save_is_refused_with_a_hint():
    with pytest.raises(UnsafePickleError, match=r"refused global torch\.nn\.modules\.linear"
                                                r"\.Linear .*save model\.state_dict\(\)"):
        load_torch(FIXTURES / "module.pt")


def test_legacy_format_is_refused():
    with pytest.raises(ValueError, match=r"legacy\.pt: legacy \(non-zip\) torch\.save format"):
        load_torch(FIXTURES / "legacy.pt")


def test_truncated_zip_and_wrong_magic(tmp_path):
    raw = (FIXTURES / "prune.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut\.pt: truncated or corrupt zip archive"):
        load_torch(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_bytes(b"hello, not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.pt: not a PyTorch checkpoint: wrong magic "
                                         r"bytes b'hell'"):
        load_torch(tmp_path / "text.pt")
    with pytest.raises(ValueError, match=r"missing\.pt: no such file"):
        load_torch(tmp_path / "missing.pt")


def test_unknown_storage_dtype_is_refused(tmp_path):
    f = torch_zip(tmp_path / "c.pt", tensor_pickle(storage="ComplexFloatStorage"),
                  {"0": DATA.tobytes()})
    with pytest.raises(UnsafePickleError, match=r"torch\.ComplexFloatStorage .*unsupported "
                                                r"storage dtype"):
        load_torch(f)


@pytest.mark.parametrize("kw, storages, message", [
    (dict(size=(3, 3)), {"0": DATA.tobytes()}, r"reaches element 8, but its FloatStorage "
                                               r"has 6 elements"),
    (dict(offset=7, size=(1,), stride=(1,)), {"0": DATA.tobytes()}, r"reaches element 7"),
    ({}, {"0": DATA.tobytes()[:10]}, r"data/0 has 10 bytes, its FloatStorage of 6 elements "
                                     r"needs 24 \(truncated\?\)"),
    ({}, {}, r"storage '0' has no entry archive/data/0"),
])
def test_inconsistent_storages_are_refused(tmp_path, kw, storages, message):
    f = torch_zip(tmp_path / "s.pt", tensor_pickle(**kw), storages)
    with pytest.raises(ValueError, match=rf"s\.pt: .*{message}"):
        load_torch(f)


def test_version_byteorder_and_layout_are_checked(tmp_path):
    ok = {"0": DATA.tobytes()}
    with pytest.raises(ValueError, match=r"archive/version == '9', must be one of \(1, 2, 3\)"):
        load_torch(torch_zip(tmp_path / "v.pt", tensor_pickle(), ok, version=b"9\n"))
    with pytest.raises(ValueError, match=r"byteorder == 'middle'"):
        load_torch(torch_zip(tmp_path / "b.pt", tensor_pickle(), ok, byteorder=b"middle"))
    with zipfile.ZipFile(tmp_path / "n.pt", "w") as zf:
        zf.writestr("archive/other.txt", b"x")
    with pytest.raises(ValueError, match=r"n\.pt: zip archive has 0 '<prefix>/data\.pkl'"):
        load_torch(tmp_path / "n.pt")
    with pytest.raises(ValueError, match=r"t\.pt: corrupt data\.pkl"):
        load_torch(torch_zip(tmp_path / "t.pt", tensor_pickle()[:-5], ok))
