"""``.safetensors`` reader and writer: round trip, the reference writer's files, and every
way a header can be broken (overlap, out of range, gaps, bad JSON, truncation)."""
import json

import numpy as np
import pytest

from srigl_ref.interchange.safetensors import read_safetensors, write_safetensors
from tests.interchange.conftest import FIXTURES


def test_round_trip_keeps_dtype_shape_values_and_metadata(tmp_path, rng):
    tensors = {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "d": rng.standard_normal((2, 2, 2)),
        "i": np.arange(-3, 4, dtype=np.int64), "i8": np.arange(-2, 2, dtype=np.int8),
        "u8": np.arange(5, dtype=np.uint8), "m": rng.random((4, 3)) > 0.5,
        "scalar": np.array(2.5, np.float32), "empty": np.zeros((0, 3), np.float32),
        "strided": np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2],
        "big_endian": np.arange(3, dtype=">f8"),
    }
    before = {k: v.copy() for k, v in tensors.items()}
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, {"format": "pt", "note": "hi"})
    got, meta = read_safetensors(path)
    assert meta == {"format": "pt", "note": "hi"}
    assert list(got) == list(tensors)
    for k, a in tensors.items():
        assert got[k].dtype == a.dtype.newbyteorder("=") and got[k].shape == a.shape, k
        np.testing.assert_array_equal(got[k], a)
        assert got[k].flags.writeable
        assert before[k].tobytes() == a.tobytes()          # inputs not modified
    n = int.from_bytes(path.read_bytes()[:8], "little")
    assert n % 8 == 0                                        # header padded, as the reference


def test_half_precision_is_widened_on_read(tmp_path):
    x = np.array([[1.5, -2.25], [65504.0, 1e-3]], np.float16)
    write_safetensors(tmp_path / "h.safetensors", {"h": x})
    got, _ = read_safetensors(tmp_path / "h.safetensors")
    assert got["h"].dtype == np.float32
    np.testing.assert_array_equal(got["h"], x.astype(np.float32))


def test_reads_the_reference_writers_file():
    got, meta = read_safetensors(FIXTURES / "official.safetensors")
    expected = np.load(FIXTURES / "expected.npz")
    assert meta == {"format": "pt"}
    for k, a in got.items():
        want = expected[f"official/{k}"]
        assert a.dtype == want.dtype and a.tobytes() == want.tobytes(), k


def blob(header, data=b"", length=None):
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    n = len(text) if length is None else length
    return n.to_bytes(8, "little") + text + data


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize("raw, message", [
    (b"\x05\x00", r"truncated safetensors file \(2 bytes"),
    (blob({"a": F32x2}, b"\0" * 8, length=500), r"truncated safetensors file \(header length "
                                                r"500 needs 508 bytes"),
    (blob({}, length=2 ** 40), r"header length 1099511627776 exceeds"),
    (blob(b"{not json", b""), r"bad JSON header"),
    (blob(b"\xff\xfe", b""), r"bad JSON header"),
    (blob([1, 2]), r"JSON header is a list, must be an object"),
    (blob({"a": dict(F32x2, dtype="C64")}, b"\0" * 8), r"tensor 'a' has unknown dtype 'C64'"),
    (blob({"a": dict(F32x2, shape=[-2])}, b"\0" * 8), r"tensor 'a' has shape \[-2\]"),
    (blob({"a": dict(F32x2, data_offsets=[0])}, b"\0" * 8), r"tensor 'a' has data_offsets "
                                                            r"\[0\], must be"),
    (blob({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),
     r"tensor 'a' has header .* must be an object with exactly dtype, shape"),
    (blob({"a": F32x2}, b"\0" * 4), r"tensor 'a' has data_offsets \[0, 8\] out of range; the "
                                    r"data section has 4 bytes \(truncated file\?\)"),
    (blob({"a": dict(F32x2, data_offsets=[0, 4])}, b"\0" * 4),
     r"tensor 'a' spans 4 bytes, but dtype F32 and shape \[2\] need 8"),
    (blob({"a": F32x2, "b": dict(F32x2, data_offsets=[4, 12])}, b"\0" * 12),
     r"tensor 'b' at data_offsets \[4, 12\] overlaps the previous tensor"),
    (blob({"a": F32x2, "b": dict(F32x2, data_offsets=[12, 20])}, b"\0" * 20),
     r"gap in the data section before tensor 'b'"),
    (blob({"a": F32x2}, b"\0" * 12), r"the data section has 12 bytes, but the tensors cover 8"),
    (blob({"__metadata__": {"a": 1}}), r"__metadata__ must map strings to strings"),
], ids=lambda v: "raw" if isinstance(v, bytes) else v.replace("\\", "")[:32])
def test_corrupt_files_are_refused_naming_the_file(tmp_path, raw, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=rf"bad\.safetensors: {message}"):
        read_safetensors(path)


def test_truncated_real_file_and_missing_file(tmp_path, rng):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"w": rng.standard_normal((8, 8)).astype(np.float32)})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"t\.safetensors: tensor 'w' has data_offsets "
                                         r"\[0, 256\] out of range"):
        read_safetensors(path)
    with pytest.raises(ValueError, match=r"none\.safetensors: no such file"):
        read_safetensors(tmp_path / "none.safetensors")


def test_writer_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match=r"tensors\['c'\]\.dtype == complex64, must be one of"):
        write_safetensors(tmp_path / "x.safetensors", {"c": np.zeros(2, np.complex64)})
    with pytest.raises(TypeError, match=r"tensors\['l'\] must be a numpy.ndarray, got list"):
        write_safetensors(tmp_path / "x.safetensors", {"l": [1, 2]})
    with pytest.raises(ValueError, match=r"may not contain the key '__metadata__'"):
        write_safetensors(tmp_path / "x.safetensors", {"__metadata__": np.zeros(1)})
    with pytest.raises(ValueError, match=r"metadata: __metadata__ must map strings"):
        write_safetensors(tmp_path / "x.safetensors", {}, {"n": 1})
    assert not (tmp_path / "x.safetensors").exists()
