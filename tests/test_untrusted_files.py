"""Weight files are untrusted input: crafted PyTorch and safetensors files give a clear
ValueError and never run code or read outside their buffers (jaxdiff.state_dict).

The files are written here from the published formats (pickle opcodes as ``torch.save``
emits them, the zip and legacy layouts, safetensors' header), without torch; a well-formed one
reads back exactly, and the real torch.save fixtures read as before."""

import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jaxdiff import state_dict
from jaxdiff.state_dict import UnsafeFileError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def torch_pickle(tensors: dict, *, extra: bytes = b"") -> bytes:
    """The data.pkl of torch.save for ``{name: (storage class, key, numel, offset, size,
    stride)}`` (protocol 2, as torch emits it); ``extra`` is spliced in as another value."""
    out = b"\x80\x02}("
    for name, (cls, key, numel, offset, size, stride) in tensors.items():
        storage = _tuple([_str("storage"), b"ctorch\n" + cls.encode() + b"\n", _str(key), _str("cpu"), _int(numel)])
        args = [
            storage + b"Q",
            _int(offset),
            _tuple(_int(v) for v in size),
            _tuple(_int(v) for v in stride),
            b"\x89",
            b"ccollections\nOrderedDict\n)R",
        ]
        out += _str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n" + _tuple(args) + b"R"
    if extra:
        out += _str("extra") + extra
    return out + b"u."


def write_zip(path, pkl: bytes, storages: dict) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
    return path


def write_legacy(path, pkl: bytes, storages: dict, *, magic=None, keys=None) -> Path:
    head = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) if magic is None else magic
    head += pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    body = pickle.dumps(list(storages) if keys is None else keys, protocol=2) if not isinstance(keys, bytes) else keys
    data = b""
    for raw in storages.values():
        data += struct.pack("<q", len(raw) // 4) + raw
    Path(path).write_bytes(head + pkl + body + data)
    return Path(path)


A = np.arange(6, dtype=np.float32)
GOOD = {"w": ("FloatStorage", "0", 6, 0, (2, 3), (3, 1)), "wt": ("FloatStorage", "0", 6, 0, (3, 2), (1, 3))}


@pytest.mark.parametrize("writer", [write_zip, write_legacy])
def test_well_formed_crafted_file_reads_exactly(tmp_path, writer):
    sd = state_dict.read_torch_state_dict(writer(tmp_path / "ok.pt", torch_pickle(GOOD), {"0": A.tobytes()}))
    np.testing.assert_array_equal(sd["w"], A.reshape(2, 3))
    np.testing.assert_array_equal(sd["wt"], A.reshape(2, 3).T)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_real_torch_save_files_still_read(fmt):
    sd = state_dict.read_torch_state_dict(FIXTURES / f"torch_state_dict_{fmt}.pt")
    np.testing.assert_array_equal(sd["a.t"], np.arange(6, dtype=np.float32).reshape(3, 2).T)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_files(tmp_path):
    """Every place a pickle is read, each with an os.system payload (the issue's reproduction)."""
    marker = tmp_path / "PWNED"
    evil = pickle.dumps(_Evil(marker), protocol=2)
    payload = evil[2:-1]  # the object's opcodes, without PROTO and STOP
    storages = {"0": A.tobytes()}
    return marker, {
        "zip main pickle": write_zip(tmp_path / "z.pt", torch_pickle(GOOD, extra=payload), storages),
        "legacy magic": write_legacy(tmp_path / "l1.pt", torch_pickle(GOOD), storages, magic=evil),
        "legacy main pickle": write_legacy(tmp_path / "l2.pt", torch_pickle(GOOD, extra=payload), storages),
        "legacy key list": write_legacy(tmp_path / "l3.pt", torch_pickle(GOOD), storages, keys=evil),
    }


def test_pickled_code_is_never_run(tmp_path):
    marker, files = _evil_files(tmp_path)
    for where, path in files.items():
        with pytest.raises(UnsafeFileError, match="posix.system|os.system|refusing"):
            state_dict.read_torch_state_dict(path)
        assert not marker.exists(), f"code ran from the {where}"


def test_cli_stats_with_a_malicious_weights_file_runs_nothing(tmp_path):
    """The issue's reproduction: ``jaxdiff stats --weights evil.pth``: one line, exit 2, no code
    run (with the checksum check disabled through the API, the reader refuses it too)."""
    marker, files = _evil_files(tmp_path)
    evil = files["legacy magic"].rename(tmp_path / "evil.pth")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "jaxdiff", "stats", "--dataset", "digits", "--output", str(tmp_path / "st.npz"), "--weights", str(evil)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not marker.exists() and not (tmp_path / "st.npz").exists()
    from jaxdiff.metrics import fid

    with pytest.raises(UnsafeFileError, match="refusing"):
        fid.load_inception(evil, sha256="")
    assert not marker.exists()


BAD_RECORDS = {
    "sizes past the storage": {"w": ("FloatStorage", "0", 6, 0, (4, 3), (3, 1))},
    "huge stride": {"w": ("FloatStorage", "0", 6, 0, (2, 2), (1 << 40, 1))},
    "offset past the end": {"w": ("FloatStorage", "0", 6, 5, (2,), (1,))},
    "negative offset": {"w": ("FloatStorage", "0", 6, -4, (2,), (1,))},
    "negative size": {"w": ("FloatStorage", "0", 6, 0, (-1, 3), (3, 1))},
    "negative stride": {"w": ("FloatStorage", "0", 6, 5, (3,), (-1,))},
    "sizes and strides of different length": {"w": ("FloatStorage", "0", 6, 0, (2, 3), (3,))},
    "numel beyond the bytes": {"w": ("FloatStorage", "0", 600, 0, (2, 3), (3, 1))},
    "unknown storage class": {"w": ("ComplexStorage", "0", 6, 0, (2, 3), (3, 1))},
}


@pytest.mark.parametrize("writer", [write_zip, write_legacy])
@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_every_tensor_record_is_checked_against_its_storage(tmp_path, writer, case):
    path = writer(tmp_path / "bad.pt", torch_pickle(BAD_RECORDS[case]), {"0": A.tobytes()})
    with pytest.raises(UnsafeFileError):
        state_dict.read_torch_state_dict(path)


def test_truncated_and_missing_storages(tmp_path):
    pkl = torch_pickle(GOOD)
    with pytest.raises(UnsafeFileError, match="bytes"):
        state_dict.read_torch_state_dict(write_zip(tmp_path / "a.pt", pkl, {"0": A.tobytes()[:-3]}))
    with pytest.raises(UnsafeFileError, match="missing"):
        state_dict.read_torch_state_dict(write_zip(tmp_path / "b.pt", pkl, {}))
    legacy = write_legacy(tmp_path / "c.pt", pkl, {"0": A.tobytes()})
    legacy.write_bytes(legacy.read_bytes()[:-5])
    with pytest.raises(UnsafeFileError):
        state_dict.read_torch_state_dict(legacy)
    (tmp_path / "d.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UnsafeFileError, match="not a"):
        state_dict.read_torch_state_dict(tmp_path / "d.pt")


def _safetensors(header: bytes, data: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def test_safetensors_records_are_checked(tmp_path):
    good = b'{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}'
    (tmp_path / "ok.safetensors").write_bytes(_safetensors(good, A.tobytes()))
    np.testing.assert_array_equal(state_dict.read_safetensors(tmp_path / "ok.safetensors")["w"], A.reshape(2, 3))
    bad = {
        "past the end": b'{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 240]}}',
        "shape vs bytes": b'{"w": {"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 24]}}',
        "negative": b'{"w": {"dtype": "F32", "shape": [-2, -3], "data_offsets": [0, 24]}}',
        "dtype": b'{"w": {"dtype": "C64", "shape": [2, 3], "data_offsets": [0, 24]}}',
        "not json": b"{{{{",
    }
    for name, header in bad.items():
        (tmp_path / "bad.safetensors").write_bytes(_safetensors(header, A.tobytes()))
        with pytest.raises(UnsafeFileError):
            state_dict.read_safetensors(tmp_path / "bad.safetensors")
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    with pytest.raises(UnsafeFileError, match="header"):
        state_dict.read_safetensors(tmp_path / "huge.safetensors")


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.save(io.BytesIO(), np.zeros(1))
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UnsafeFileError, match="npz"):
        state_dict.load_state_dict(tmp_path / "obj.npz")
