"""ds.save_safetensors / ds.load_safetensors against the real `safetensors` package."""
import numpy as np
import pytest

import deepseek as ds

st = pytest.importorskip("safetensors", reason="pip install safetensors")
from safetensors.numpy import load_file, save_file  # noqa: E402

NUMPY_DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int32", "int64", "bool"]
SHAPES = [(3, 5), (), (0, 4), (7,)]


def sample(dtype, shape, rng):
    if dtype == "bool":
        values = rng.integers(0, 2, size=shape).astype(bool)
    elif np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    else:
        values = (rng.standard_normal(size=shape) * 100).astype(dtype)
    return np.asarray(values)


def arrays(rng):
    return {f"{dt}.{i}": sample(dt, shape, rng) for dt in NUMPY_DTYPES
            for i, shape in enumerate(SHAPES)}


def test_ds_writes_what_safetensors_reads(tmp_path, rng):
    want = arrays(rng)
    path = tmp_path / "ds.safetensors"
    ds.save_safetensors(path, {k: ds.Tensor(v) for k, v in want.items()}, {"format": "pt"})
    got = load_file(str(path))
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    with st.safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}


def test_safetensors_writes_what_ds_reads(tmp_path, rng):
    want = arrays(rng)
    path = tmp_path / "py.safetensors"
    save_file(want, str(path), metadata={"epoch": "3", "note": "from python"})
    got = ds.load_safetensors(path)
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert str(got[k].dtype) == str(v.dtype), k
        np.testing.assert_array_equal(got[k].numpy(), v, err_msg=k)
    assert ds.load_safetensors_metadata(path) == {"epoch": "3", "note": "from python"}


def test_bfloat16_bytes_match_the_format(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)  # exact in bfloat16
    path = tmp_path / "bf16.safetensors"
    ds.save_safetensors(path, {"w": ds.Tensor(values, dtype="bfloat16")})
    [(name, spec)] = st.deserialize(path.read_bytes())
    assert name == "w" and spec["dtype"] == "BF16" and list(spec["shape"]) == [4]
    # bfloat16 is the upper half of the float32 bits.
    want = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    assert bytes(spec["data"]) == want
    np.testing.assert_array_equal(ds.load_safetensors(path)["w"].numpy(), values)


def test_views_and_numpy_inputs_are_saved_by_value(tmp_path, rng):
    m = rng.standard_normal((4, 6)).astype(np.float32)
    path = tmp_path / "views.safetensors"
    ds.save_safetensors(path, {"t": m.T, "s": m[:, 1::2], "d": ds.Tensor(m).transpose(0, 1)})
    got = load_file(str(path))
    np.testing.assert_array_equal(got["t"], m.T)
    np.testing.assert_array_equal(got["s"], m[:, 1::2])
    np.testing.assert_array_equal(got["d"], m.T)


def test_corrupt_files_raise_ds_ioerror_naming_the_file(tmp_path):
    path = tmp_path / "good.safetensors"
    save_file({"w": np.ones(16, np.float32)}, str(path))
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-3])
    with pytest.raises(ds.IOError, match="cut.safetensors.*out of range"):
        ds.load_safetensors(cut)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(data[:8] + b"{not json" + data[17:])
    with pytest.raises(ds.IOError, match="garbage.safetensors.*JSON error"):
        ds.load_safetensors(garbage)
    with pytest.raises(ds.NotFoundError):
        ds.load_safetensors(tmp_path / "absent.safetensors")
