"""Tests of the feature_cache package: layout, round trips, crash safety, resume, refusals,
background and atomic writing, the torch Dataset, and sharded writing joined by virtual datasets.

Every sample's data is a pure function of its index (:func:`sample_batch`), so a cache written in
any order, resumed, sharded or killed and resumed must equal the uninterrupted single-file write.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import feature_cache as fc
from feature_cache import format as fmt
from feature_cache import convert as fc_convert
from feature_cache import writer as fc_writer

REPO = Path(__file__).resolve().parents[1]
N = 10
SCALES = [(3, 8, 8), (6, 4, 4)]
FINGERPRINT = "f00dfeed" * 8
LABEL_SHAPE = (16, 16)
TARGETS = {"semseg": (LABEL_SHAPE, "uint8"), "depth": ((1, *LABEL_SHAPE), "float32")}
IDS = [f"img_{i // 2:03d}" for i in range(N)]       # two views per image
VIEWS = [i % 2 for i in range(N)]
CREATE_KW = dict(
    num_samples=N, scales=SCALES, targets=TARGETS, ids=IDS, fingerprint=FINGERPRINT,
    input_size=(32, 32), backbone="hrnet_w18_small_v2",
    normalisation={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    dataset="pascal", split="val", view_index=VIEWS, view_param_names=("flip", "zoom", "angle"),
    metadata={"note": "test", "seed": 0},
)
HAS_HDF5PLUGIN = importlib.util.find_spec("hdf5plugin") is not None


def sample_batch(indices, scales=SCALES):
    """Deterministic features/targets/view params for the given global indices."""
    feats = [[] for _ in scales]
    labels, depth, params = [], [], []
    for i in indices:
        rng = np.random.default_rng(1000 + int(i))
        for s, shape in enumerate(scales):
            feats[s].append(rng.standard_normal(shape).astype(np.float32) * 3)
        lab = rng.integers(0, 21, LABEL_SHAPE)
        lab[rng.random(LABEL_SHAPE) < 0.1] = 255
        labels.append(lab)  # int64, as datasets return labels
        depth.append(rng.uniform(0.5, 10.0, (1, *LABEL_SHAPE)).astype(np.float32))
        params.append([i % 2, 1.0 + 0.1 * (i % 3), -20.0 + i])
    return ([np.stack(f) for f in feats],
            {"semseg": np.stack(labels), "depth": np.stack(depth)},
            np.asarray(params, np.float32))


def write_all(writer, indices, batch=3):
    indices = list(indices)
    for k in range(0, len(indices), batch):
        idx = indices[k:k + batch]
        feats, tgts, params = sample_batch(idx)
        writer.write(idx, feats, tgts, params)


def make_cache(path, **overrides):
    kw = {**CREATE_KW, **overrides}
    w = fc.FeatureCacheWriter.create(path, **kw)
    write_all(w, range(N))
    w.finalize()
    return Path(path)


def row_data(path):
    """Every per-row dataset of a cache as numpy arrays (raw stored values)."""
    with h5py.File(path, "r") as f:
        names = [fmt.feature_key(s) for s in range(len(SCALES))]
        names += [fmt.target_key(t) for t in TARGETS]
        names += [fmt.VIEW, fmt.VIEW_PARAMS, fmt.COMPLETE]
        out = {n: f[n][...] for n in names}
        out[fmt.IDS] = f[fmt.IDS].asstr()[...]
    return out


def assert_same_rows(a, b):
    da, db = row_data(a), row_data(b)
    assert da.keys() == db.keys()
    for key in da:
        assert da[key].dtype == db[key].dtype, key
        if da[key].dtype == object:  # the ids: str objects
            assert da[key].tolist() == db[key].tolist(), key
        else:
            assert da[key].tobytes() == db[key].tobytes(), key  # byte for byte


def comparable_attrs(path):
    with fc.FeatureCacheReader(path) as r:
        return {k: v for k, v in r.attrs.items() if k not in (fmt.ATTR_CREATED, fmt.ATTR_FINISHED)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-process write (float16, no compression)."""
    return make_cache(tmp_path_factory.mktemp("ref") / "ref.h5")


# -- round trips and layout -----------------------------------------------------------------------
def test_round_trip_float16_within_tolerance(reference):
    feats, tgts, params = sample_batch(range(N))
    with fc.FeatureCacheReader(reference, fingerprint=FINGERPRINT) as r:
        assert len(r) == N and r.ids == IDS and r.view.tolist() == VIEWS
        for i in range(N):
            got = r.features(i)
            assert [g.dtype for g in got] == [np.float16] * len(SCALES)
            for s in range(len(SCALES)):
                # float16 keeps 11 significant bits: relative error <= 2^-11
                np.testing.assert_allclose(got[s].astype(np.float32), feats[s][i], rtol=2**-11, atol=1e-7)
                assert np.array_equal(got[s], feats[s][i].astype(np.float16))
            t = r.targets(i)
            assert t["semseg"].dtype == np.int64 and np.array_equal(t["semseg"], tgts["semseg"][i])
            assert t["depth"].dtype == np.float32 and np.array_equal(t["depth"], tgts["depth"][i])
            assert np.array_equal(r.view_params(i), params[i])
        assert r.targets(3, decode=False)["semseg"].dtype == np.uint8


def test_round_trip_float32_is_exact(tmp_path):
    path = make_cache(tmp_path / "f32.h5", dtype="float32")
    feats, _, _ = sample_batch(range(N))
    with fc.FeatureCacheReader(path) as r:
        for s, arr in enumerate(r.features_batch(range(N))):
            assert arr.dtype == np.float32 and np.array_equal(arr, feats[s])


def test_batched_reads_any_order_with_repeats(reference):
    order = [7, 2, 2, 9, 0, 1, -1]
    feats, tgts, params = sample_batch([i % N for i in order])
    with fc.FeatureCacheReader(reference) as r:
        for s, arr in enumerate(r.features_batch(order)):
            assert np.array_equal(arr, feats[s].astype(np.float16))
        got = r.targets_batch(order, tasks=["semseg"])
        assert list(got) == ["semseg"] and np.array_equal(got["semseg"], tgts["semseg"])
        assert np.array_equal(r.view_params_batch(order), params)
        with pytest.raises(IndexError):
            r.features(N)


def test_chunks_hold_one_sample_and_layout_is_plain_hdf5(reference):
    with h5py.File(reference, "r") as f:
        for s, (c, h, w) in enumerate(SCALES):
            d = f[f"features/{s}"]
            assert d.shape == (N, c, h, w) and d.chunks == (1, c, h, w) and d.dtype == np.float16
        assert f["targets/semseg"].chunks == (1, *LABEL_SHAPE) and f["targets/semseg"].dtype == np.uint8
        assert f["targets/depth"].chunks == (1, 1, *LABEL_SHAPE)
        assert h5py.check_string_dtype(f["ids"].dtype).encoding == "utf-8"
        assert f["view"].dtype == np.int32 and f["complete"].dtype == np.uint8
        assert f["view_params"].shape == (N, 3) and f["view_params"].attrs["names"] == '["flip","zoom","angle"]'
        assert f["features/0"].compression is None


def test_a_cache_that_cannot_fit_on_its_disk_is_refused_before_writing(tmp_path, monkeypatch):
    import collections
    import feature_cache.skeleton as writer

    row = fc.estimate_bytes_per_sample(SCALES, "float16", TARGETS, view_params=3)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(writer.shutil, "disk_usage", lambda path: usage(10**12, 0, row * 3))
    with pytest.raises(fc.FeatureCacheError, match=r"needs about .* GB .* but only .* free there"):
        fc.FeatureCacheWriter.create(tmp_path / "big.h5", **CREATE_KW)
    assert not (tmp_path / "big.h5").exists()
    # compressed caches are checked too, against an upper bound (issue 13, item 9): refused up front
    with pytest.raises(fc.FeatureCacheError, match=r"may need up to .* GB .* before compression\) but only"):
        fc.FeatureCacheWriter.create(tmp_path / "small.h5", **{**CREATE_KW, "compression": "gzip"})
    assert not (tmp_path / "small.h5").exists()
    layout = fc.FeatureCacheWriter._requested_layout(**{k: CREATE_KW.get(k) for k in (
        "num_samples", "scales", "targets", "fingerprint", "input_size", "backbone", "normalisation",
        "dataset", "split", "view_param_names")}, strides=None, dtype="float16", compression="gzip")
    bound = fmt.disk_bytes_bound(layout)
    monkeypatch.setattr(writer.shutil, "disk_usage", lambda path: usage(10**12, 0, bound))
    w = fc.FeatureCacheWriter.create(tmp_path / "small.h5", **{**CREATE_KW, "compression": "gzip"})
    write_all(w, range(N))
    w.finalize()
    assert (tmp_path / "small.h5").stat().st_size <= bound  # the bound holds


def test_a_huge_input_size_is_refused_before_anything_is_allocated(tmp_path):
    # `cache-features --size 100000 --compression gzip` (issue 13, item 9): one clear line, no file
    huge = [(18, 25000, 25000), (36, 12500, 12500)]
    for compression in (None, "gzip"):
        with pytest.raises(fc.FeatureCacheError, match=r"features of scale 0 .* GiB per row, but HDF5 stores "
                                                       r"at most 4 GiB per row .* smaller input size"):
            fc.FeatureCacheWriter.create(tmp_path / "huge.h5", **{**CREATE_KW, "scales": huge,
                                                                  "input_size": (100000, 100000),
                                                                  "compression": compression})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("compression", ["lzf", "gzip", "zstd", "blosc"])
def test_compression_options_store_equal_data(tmp_path, reference, compression):
    if compression in ("zstd", "blosc") and not HAS_HDF5PLUGIN:
        pytest.skip("hdf5plugin not installed")
    path = make_cache(tmp_path / f"{compression}.h5", compression=compression)
    assert_same_rows(path, reference)
    with h5py.File(path, "r") as f:
        assert f["features/0"].chunks == (1, *SCALES[0])
        assert f.attrs["compression"] == compression
        assert len(f["features/0"]._filters) >= 1  # a filter really is in the pipeline


def test_missing_hdf5plugin_names_the_option(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "hdf5plugin", None)  # makes `import hdf5plugin` fail
    with pytest.raises(fc.FeatureCacheError, match=r"compression='zstd' needs the hdf5plugin package"):
        fc.FeatureCacheWriter.create(tmp_path / "z.h5", **{**CREATE_KW, "compression": "zstd"})
    with pytest.raises(fc.FeatureCacheError, match="unknown compression 'lz4'"):
        fc.FeatureCacheWriter.create(tmp_path / "z.h5", **{**CREATE_KW, "compression": "lz4"})
    assert not (tmp_path / "z.h5").exists()


def test_attrs_round_trip(reference):
    with fc.FeatureCacheReader(reference) as r:
        a = r.attrs
    assert a["format_version"] == fc.FORMAT_VERSION
    assert a["fingerprint"] == FINGERPRINT and a["backbone"] == "hrnet_w18_small_v2"
    assert a["input_size"] == (32, 32)
    assert a["normalisation"] == CREATE_KW["normalisation"]
    assert (a["dataset"], a["split"], a["views"]) == ("pascal", "val", 2)
    assert a["feature_dtype"] == "float16" and a["compression"] == "none"
    assert a["scales"] == [list(s) for s in SCALES] and a["strides"] == [4, 8]
    assert a["tasks"] == ["semseg", "depth"]
    assert a["targets"]["semseg"] == {"shape": [16, 16], "dtype": "uint8", "decoded_dtype": "int64"}
    assert a["view_param_names"] == ["flip", "zoom", "angle"]
    assert a["metadata"] == {"note": "test", "seed": 0}
    assert a["created"] <= a["finished"] and a["finished"].endswith("+00:00")
    with h5py.File(reference, "r") as f:  # what h5ls/h5dump show: plain scalars and strings
        assert isinstance(f.attrs["fingerprint"], str) and f.attrs["num_samples"] == N


def test_estimates_and_label_dtype():
    hrnet = [(18, 32, 32), (36, 16, 16), (72, 8, 8), (144, 4, 4)]
    # 18*32*32 + 36*16*16 + 72*8*8 + 144*4*4 = 34560 values, 2 bytes each, + view/complete bytes
    # + 4 bytes of feature scale per scale + an 8-byte checksum per dataset (scales, tasks, 2 more)
    assert fc.estimate_bytes_per_sample(hrnet, "float16") == 69120 + 5 + 4 * 4 + 8 * 6
    assert fc.estimate_bytes_per_sample(hrnet, "float32", {"semseg": ((128, 128), "uint8")}, 3) == \
        138240 + 16384 + 4 + 12 + 1 + 4 * 4 + 8 * 7
    assert fc.label_storage_dtype(255) == "uint8" and fc.label_storage_dtype(459) == "uint16"


# -- validation on write -----------------------------------------------------------------------
def test_minimal_cache_without_targets_or_view_params(tmp_path):
    path = tmp_path / "min.h5"
    w = fc.FeatureCacheWriter.create(path, 4, SCALES, fingerprint="fp", input_size=(32, 32))
    feats, _, _ = sample_batch(range(4))
    w.write(range(4), feats)
    w.finalize()
    with fc.FeatureCacheReader(path) as r:
        assert r.ids == ["0", "1", "2", "3"] and r.tasks == [] and r.view_params(2).shape == (0,)
    item = fc.FeatureCacheDataset(path)[2]
    assert set(item) == {"features", "id", "index", "view"} and item["view"] == 0


@pytest.mark.skipif(os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() in ("FALSE", "0"),
                    reason="HDF5 file locking is disabled in this environment")
def test_a_cache_open_for_writing_elsewhere_is_reported_busy(tmp_path):
    path = tmp_path / "busy.h5"
    fc.FeatureCacheWriter.create(path, **CREATE_KW).close()
    code = f"import h5py, time; f = h5py.File({str(path)!r}, 'r+'); print('open', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(fc.CacheBusyError, match="in another process"):
            fc.FeatureCacheWriter.create(path, **CREATE_KW)
    finally:
        holder.kill()
        holder.wait()


def test_write_refuses_data_that_does_not_fit(tmp_path):
    w = fc.FeatureCacheWriter.create(tmp_path / "v.h5", **CREATE_KW)
    feats, tgts, params = sample_batch([0, 1])
    with pytest.raises(fc.LayoutMismatchError, match=r"features of scale 1 have shape \(2, 6, 4, 5\)"):
        w.write([0, 1], [feats[0], np.zeros((2, 6, 4, 5))], tgts, params)
    bad = dict(tgts, semseg=tgts["semseg"] + 300)
    with pytest.raises(fc.LayoutMismatchError, match="targets of 'semseg' do not fit the stored dtype uint8"):
        w.write([0, 1], feats, bad, params)
    with pytest.raises(fc.FeatureCacheError, match="features of scale 0 hold NaN or inf values; check the backbone"):
        w.write([0, 1], [feats[0] * np.nan, feats[1]], tgts, params)
    inf16 = feats[0].astype(np.float16)
    inf16[1, 0, 0, 0] = -np.inf
    with pytest.raises(fc.FeatureCacheError, match=r"scale 0 hold NaN or inf .* pass float32 features"):
        w.write([0, 1], [inf16, feats[1]], tgts, params)
    with pytest.raises(fc.FeatureCacheError, match="pass view_params"):
        w.write([0, 1], feats, tgts)
    with pytest.raises(fc.FeatureCacheError, match="index 10 is outside"):
        w.write([9, 10], feats, tgts, params)
    assert w.num_complete() == 0  # nothing was marked by refused batches
    w.close()


def test_float32_features_are_stored_as_the_per_row_scaled_float16_of_the_format(tmp_path):
    """One max and one min per row give the scales and the finiteness check: the stored values and
    scales are float16(x / 2**k) and 2**k with the format's k (float16_scales), at the edges too."""
    feats, tgts, params = sample_batch(range(4))
    big = feats[0].copy()
    big[0, 0, 0, 0] = 65504.0          # the largest float16: k = 0
    big[1, 1, 2, 3] = -65519.0         # rounds to -65504 in float16, yet beyond it: k = 1
    big[2] *= np.float32(3e4)          # far beyond: k > 1
    stored, scales = fc_convert.stored_features([big, feats[1]], fc.FeatureCacheWriter.create(
        tmp_path / "c.h5", **CREATE_KW).layout, 4, "c.h5")
    k = fmt.float16_scales(big)
    assert k.tolist()[:2] == [1.0, 2.0] and k[2] > 2 and k[3] == 1
    assert scales[:, 0].tolist() == k.tolist() and scales[:, 1].tolist() == [1.0] * 4
    expect = (big / k[:, None, None, None]).astype(np.float16)
    assert stored[0].dtype == np.float16 and stored[0].tobytes() == expect.tobytes()
    assert stored[1].tobytes() == feats[1].astype(np.float16).tobytes()


def test_round_to_storage_gives_the_stored_values_at_the_float16_edges():
    """The largest magnitude per row comes from a max and a min (no |x| copy): the same scales as
    the format's, a NaN kept where it was (the writer refuses it), channels_last input too."""
    x = torch.from_numpy(sample_batch(range(4))[0][0].copy())
    x[0, 0, 0, 0], x[1, 1, 2, 3] = 65504.0, -65519.0
    x[2] *= 3e4
    x[3, 2, 1, 0] = float("nan")
    k = torch.from_numpy(fmt.float16_scales(x.numpy())).reshape(-1, 1, 1, 1)
    assert k.flatten().tolist()[:2] == [1.0, 2.0] and k[2] > 2 and k[3] == 1
    expect = (x / k).to(torch.float16).float() * k
    for given in (x, x.contiguous(memory_format=torch.channels_last)):
        got = fc.round_to_storage(given, "float16")
        assert got.dtype == torch.float32 and torch.equal(got.nan_to_num(7.0), expect.nan_to_num(7.0))
        assert torch.isnan(got).sum() == 1
    small = x[[0, 3]]  # every row fits float16: a plain cast
    assert torch.equal(fc.round_to_storage(small, "float16").nan_to_num(7.0), small.to(torch.float16).nan_to_num(7.0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float32_features_are_refused_in_any_row(tmp_path, bad):
    w = fc.FeatureCacheWriter.create(tmp_path / "c.h5", **CREATE_KW)
    feats, tgts, params = sample_batch([0, 1, 2])
    feats[1][2, 5, 3, 1] = bad  # one value of the last row
    with pytest.raises(fc.FeatureCacheError, match="features of scale 1 hold NaN or inf values; check the backbone"):
        w.write([0, 1, 2], feats, tgts, params)
    with pytest.raises(fc.LayoutMismatchError, match="features of scale 0 have dtype int32, not a float type"):
        w.write([0, 1, 2], [feats[0].astype(np.int32), feats[1]], tgts, params)
    assert w.num_complete() == 0 and w.missing_indices().tolist() == list(range(N))
    w.close()


def test_write_reads_no_completion_flag_from_the_file(tmp_path):
    """The completion flags are kept in memory: a batch writes its own rows' flags and reads none
    (the whole mask used to be read for every batch)."""
    w = fc.FeatureCacheWriter.create(tmp_path / "c.h5", **CREATE_KW)
    reads, writes, real = [], [], w._complete

    class Flags:  # the /complete dataset, watched
        def __getitem__(self, key):
            reads.append(key)
            return real[key]

        def __setitem__(self, key, value):
            writes.append((key, value))
            real[key] = value

    w._complete = Flags()
    write_all(w, [0, 1, 2, 5, 6, 7])
    write_all(w, [1, 2, 3])  # two of them rewritten: unmarked first
    assert reads == []
    assert writes == [(slice(0, 3), 1), (slice(5, 8), 1), (slice(1, 4), 0), (slice(1, 4), 1)]
    w._complete = real
    assert w.missing_indices().tolist() == [4, 8, 9]
    w.close()


def test_an_interrupted_rewrite_leaves_its_rows_unmarked_and_resumes(tmp_path, reference, monkeypatch):
    """A write that fails after unmarking complete rows (a full disk, say) leaves them missing in
    the file and in memory; writing them again, in the same writer or after reopening, completes
    the cache with the same rows as an uninterrupted run."""
    path = tmp_path / "c.h5"
    w = fc.FeatureCacheWriter.create(path, **CREATE_KW)
    write_all(w, range(N))
    real = fc_writer._write_raw_chunks

    def full_disk(dset, rows, arr):
        real(dset, rows[:1], arr[:1])  # part of the batch lands, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fc_writer, "_write_raw_chunks", full_disk)
    feats, tgts, params = sample_batch([3, 4])
    with pytest.raises(fc.FeatureCacheError, match="writing 2 rows to cache .* failed \\(.*No space left"):
        w.write([3, 4], [f * 2 for f in feats], tgts, params)  # other values: a half-written rewrite
    assert w.missing_indices().tolist() == [3, 4] and w.num_complete() == N - 2
    with pytest.raises(fc.CacheIncompleteError, match="8 of 10 samples"):
        w.finalize()
    w.close()
    with pytest.raises(fc.CacheIncompleteError):
        fc.FeatureCacheReader(path)
    monkeypatch.setattr(fc_writer, "_write_raw_chunks", real)
    w = fc.FeatureCacheWriter.create(path, **CREATE_KW)
    assert w.resumed and w.missing_indices().tolist() == [3, 4]
    write_all(w, w.missing_indices())
    w.finalize()
    assert_same_rows(path, reference)
    assert fc.verify_file(path) == []


def test_rewriting_complete_rows_keeps_the_cache_valid(tmp_path, reference):
    w = fc.FeatureCacheWriter.create(tmp_path / "r.h5", **CREATE_KW)
    write_all(w, range(N))
    write_all(w, [4, 3, 5])  # rows already complete, written again in another order
    w.finalize()
    assert_same_rows(tmp_path / "r.h5", reference)


# -- resume and crash safety -------------------------------------------------------------------
def test_resume_writes_only_the_missing_half(tmp_path, reference):
    path = tmp_path / "resume.h5"
    w = fc.FeatureCacheWriter.create(path, **CREATE_KW)
    write_all(w, [0, 2, 4, 6, 8])
    w.close()  # the run stops without finalize()
    w = fc.FeatureCacheWriter.create(path, **CREATE_KW)
    assert w.resumed and w.missing_indices().tolist() == [1, 3, 5, 7, 9]
    write_all(w, w.missing_indices())
    w.finalize()
    assert_same_rows(path, reference)


def test_reopen_with_another_layout_or_fingerprint_is_refused(tmp_path):
    path = tmp_path / "c.h5"
    fc.FeatureCacheWriter.create(path, **CREATE_KW).close()
    with pytest.raises(fc.LayoutMismatchError, match=r"exists with another layout \(scales: stored") as e:
        fc.FeatureCacheWriter.create(path, **{**CREATE_KW, "scales": [(3, 8, 8), (7, 4, 4)]})
    assert "overwrite" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(fc.LayoutMismatchError, match="ids differ"):
        fc.FeatureCacheWriter.create(path, **{**CREATE_KW, "ids": IDS[::-1]})
    with pytest.raises(fc.FingerprintMismatchError, match="made with backbone fingerprint f00dfeedf00d"):
        fc.FeatureCacheWriter.create(path, **{**CREATE_KW, "fingerprint": "0" * 64})
    w = fc.FeatureCacheWriter.create(path, **{**CREATE_KW, "fingerprint": "0" * 64}, overwrite=True)
    assert not w.resumed and w.num_complete() == 0
    w.close()


def test_unreadable_file_is_reported_with_a_way_out(tmp_path):
    path = tmp_path / "broken.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)  # a truncated superblock
    with pytest.raises(fc.CacheCorruptError, match=r"cannot be opened as HDF5 .*overwrite=True"):
        fc.FeatureCacheWriter.create(path, **CREATE_KW)
    with pytest.raises(fc.CacheCorruptError):
        fc.FeatureCacheReader(path)
    fc.FeatureCacheWriter.create(path, **CREATE_KW, overwrite=True).close()  # the offered restart


CHILD = textwrap.dedent("""
    import os, signal, sys, time
    sys.path[:0] = [{repo!r}, {tests!r}]
    import h5py
    import feature_cache as fc
    from test_feature_cache import CREATE_KW, sample_batch
    kill_at = {kill_at}
    calls = [0]
    real_flush = h5py.File.flush
    def flush(self):  # SIGKILL ourselves at the chosen flush: mid-batch, at the worst instants
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        real_flush(self)
    h5py.File.flush = flush
    w = fc.FeatureCacheWriter.create({path!r}, **dict(CREATE_KW, compression={compression!r}))
    for k in range(0, 10, 2):
        feats, tgts, params = sample_batch([k, k + 1])
        w.write([k, k + 1], feats, tgts, params)
        print("batch", k // 2, flush=True)
        time.sleep({pause})
    print("done", flush=True)
""")


def _run_child(path, kill_at, compression=None, pause=0.0):
    code = CHILD.format(repo=str(REPO), tests=str(REPO / "tests"), path=str(path), kill_at=kill_at,
                        compression=compression, pause=pause)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def _resume_and_check(path, reference, compression):
    """Every row marked complete holds its data; resuming completes a cache equal to reference."""
    with fc.FeatureCacheReader(path, require_complete=False) as r:
        done = np.flatnonzero(r.complete)
        if len(done):
            feats, tgts, _ = sample_batch(done)
            got = r.features_batch(done)
            for s in range(len(SCALES)):
                assert np.array_equal(got[s], feats[s].astype(np.float16))
            assert np.array_equal(r.targets_batch(done)["semseg"], tgts["semseg"])
    w = fc.FeatureCacheWriter.create(path, **dict(CREATE_KW, compression=compression))
    assert w.resumed
    missing = w.missing_indices()
    write_all(w, missing)
    w.finalize()
    assert_same_rows(path, reference)
    return len(done)


# flush calls per batch: 1 after the rows, 1 after the complete flags; 3rd batch = calls 5, 6
@pytest.mark.slow
@pytest.mark.parametrize("kill_at,compression,expected_done", [
    (5, None, {4}),      # rows of batch 3 written, not flushed: 2 batches complete
    (6, None, {4, 6}),   # rows flushed, flags set but not flushed: either is fine, never more
    (5, "lzf", {4}),     # compressed: chunks allocated, chunk index not flushed
])
def test_sigkill_mid_write_then_resume_equals_uninterrupted(tmp_path, reference, kill_at, compression,
                                                           expected_done):
    path = tmp_path / "killed.h5"
    proc = _run_child(path, kill_at, compression)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert _resume_and_check(path, reference, compression) in expected_done


@pytest.mark.slow
def test_sigkill_from_outside_at_a_random_instant(tmp_path, reference):
    path = tmp_path / "killed.h5"
    proc = _run_child(path, kill_at=-1, pause=0.002)
    line = proc.stdout.readline()
    while line and not line.startswith("batch 1"):
        line = proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)  # somewhere in batch 2, 3 or 4
    proc.communicate(timeout=60)
    done = _resume_and_check(path, reference, None)
    assert 4 <= done <= N


# -- reader refusals -----------------------------------------------------------------------------
def test_reader_refuses_a_missing_file(tmp_path):
    with pytest.raises(fc.CacheMissingError, match=r"feature cache not found: .*nope\.h5; run cache-features"):
        fc.FeatureCacheReader(tmp_path / "nope.h5")


def test_reader_refuses_an_incomplete_cache(tmp_path):
    path = tmp_path / "inc.h5"
    w = fc.FeatureCacheWriter.create(path, **CREATE_KW)
    write_all(w, range(3))
    w.close()
    with pytest.raises(fc.CacheIncompleteError) as e:
        fc.FeatureCacheReader(path)
    assert str(e.value) == f"cache {path} is incomplete: 3 of {N} samples; run cache-features again to resume"
    with pytest.raises(fc.CacheIncompleteError, match="3 of 10"):
        w = fc.FeatureCacheWriter.create(path, **CREATE_KW)
        w.finalize()
    w.close()


def test_reader_refuses_another_fingerprint(reference):
    with pytest.raises(fc.FingerprintMismatchError) as e:
        fc.FeatureCacheReader(reference, fingerprint="beefcafe" * 8)
    assert str(e.value) == (f"cache {reference} was made with backbone fingerprint f00dfeedf00d..., the "
                            "workspace's is beefcafebeef...; re-run cache-features (--overwrite) to rebuild it")


def test_reader_refuses_another_format_version(tmp_path, reference):
    path = tmp_path / "old.h5"
    shutil.copy(reference, path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(fc.CacheVersionError, match="has format version 99, this feature_cache reads versions 1, 2"):
        fc.FeatureCacheReader(path)
    with pytest.raises(fc.CacheVersionError):
        fc.FeatureCacheWriter.create(path, **CREATE_KW)


# -- atomic overwrite and background writing ----------------------------------------------------
def test_atomic_cache_keeps_the_old_file_on_failure_and_replaces_on_success(tmp_path, reference):
    path = tmp_path / "cache.h5"
    shutil.copy(reference, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="backbone crashed"):
        with fc.atomic_cache(path) as tmp:
            w = fc.FeatureCacheWriter.create(tmp, **{**CREATE_KW, "dtype": "float32"})
            write_all(w, range(4))
            raise RuntimeError("backbone crashed")
    assert path.read_bytes() == before and fc.partial_path(path).exists()  # kept for resuming
    with pytest.raises(fc.CacheIncompleteError, match="is not finalised"):
        with fc.atomic_cache(path) as tmp:
            fc.FeatureCacheWriter.create(tmp, **{**CREATE_KW, "dtype": "float32"}).close()
    assert path.read_bytes() == before
    with fc.atomic_cache(path) as tmp:
        w = fc.FeatureCacheWriter.create(tmp, **{**CREATE_KW, "dtype": "float32"})
        assert w.resumed and w.missing_indices().tolist() == list(range(4, N))
        write_all(w, w.missing_indices())
        w.finalize()
    assert not fc.partial_path(path).exists()
    with fc.FeatureCacheReader(path) as r:
        assert r.layout.dtype == "float32"


def test_background_writer_writes_everything_without_copying(tmp_path, reference, monkeypatch):
    path = tmp_path / "bg.h5"
    w = fc.FeatureCacheWriter.create(path, **CREATE_KW)
    given, received = [], []
    real_write = w.write

    def spy(indices, features, targets, view_params):
        received.append(features[0])
        real_write(indices, features, targets, view_params)

    monkeypatch.setattr(w, "write", spy)
    with fc.BackgroundWriter(w, max_pending=2) as bg:
        for k in range(0, N, 3):
            idx = list(range(k, min(k + 3, N)))
            feats, tgts, params = sample_batch(idx)
            given.append(feats[0])
            bg.put(torch.tensor(idx), [torch.from_numpy(f) for f in feats],
                   {t: torch.from_numpy(v) for t, v in tgts.items()}, torch.from_numpy(params))
    w.finalize()
    assert_same_rows(path, reference)
    # put() takes ownership: the writer thread sees the caller's own buffers, not clones
    assert len(received) == len(given) and all(np.shares_memory(a, b) for a, b in zip(given, received))


def test_background_writer_reraises_the_writer_error(tmp_path):
    w = fc.FeatureCacheWriter.create(tmp_path / "bg.h5", **CREATE_KW)
    bg = fc.BackgroundWriter(w, max_pending=1)
    feats, tgts, params = sample_batch([0, 1])
    bg.put([0, 1], [feats[0], feats[1][:, :2]], tgts, params)  # wrong channel count
    with pytest.raises(fc.LayoutMismatchError, match="features of scale 1 have shape"):
        for _ in range(20):  # raised at a later put at the latest, or at close
            bg.put([2, 3], feats, tgts, params)
        bg.close()
    # every later call raises the same error (several producer threads may put: each learns why)
    with pytest.raises(fc.LayoutMismatchError, match="features of scale 1 have shape"):
        bg.put([2, 3], feats, tgts, params)
    with pytest.raises(fc.LayoutMismatchError):
        bg.close()
    w.close()


# -- the torch Dataset ---------------------------------------------------------------------------
def _items(loader):
    out = {}
    for batch in loader:
        for j, index in enumerate(batch["index"].tolist()):
            out[index] = (batch["id"][j], [f[j] for f in batch["features"]], batch["semseg"][j],
                          batch["depth"][j], int(batch["view"][j]), batch["view_params"][j])
    return out


def test_dataset_items_workers_and_in_memory_agree(reference):
    ds = fc.FeatureCacheDataset(reference, fingerprint=FINGERPRINT)
    item = ds[3]
    assert set(item) == {"features", "semseg", "depth", "id", "index", "view", "view_params"}
    assert [tuple(f.shape) for f in item["features"]] == SCALES and item["features"][0].dtype == torch.float32
    assert item["semseg"].dtype == torch.int64 and item["depth"].shape == (1, *LABEL_SHAPE)
    assert (item["id"], item["index"], item["view"]) == (IDS[3], 3, 1)
    ds.close()
    assert ds._reader is None
    workers = _items(DataLoader(ds, batch_size=4, num_workers=2))
    assert ds._reader is None  # the parent never opened a handle: each worker opened its own
    memory = _items(DataLoader(fc.FeatureCacheDataset(reference, in_memory=True), batch_size=3))
    feats, tgts, params = sample_batch(range(N))
    assert sorted(workers) == sorted(memory) == list(range(N))
    for i in range(N):
        for a, b in zip(workers[i], memory[i]):
            assert all(torch.equal(x, y) for x, y in zip(a, b)) if isinstance(a, list) else \
                (torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b)
        assert torch.equal(workers[i][1][0], torch.from_numpy(feats[0][i].astype(np.float16)).float())
        assert torch.equal(workers[i][2], torch.from_numpy(tgts["semseg"][i]))


def test_dataset_opened_in_the_parent_still_reads_right_in_forked_workers(reference):
    ds = fc.FeatureCacheDataset(reference)
    parent_first = ds[0]  # the parent holds a handle when the workers fork
    items = _items(DataLoader(ds, batch_size=5, num_workers=2))
    feats, _, _ = sample_batch(range(N))
    for i in range(N):
        assert torch.equal(items[i][1][1], torch.from_numpy(feats[1][i].astype(np.float16)).float())
    assert torch.equal(ds[0]["features"][0], parent_first["features"][0])


def test_dataset_pickles_without_its_handle_and_selects_tasks(reference):
    ds = fc.FeatureCacheDataset(reference, tasks=["depth"], dtype=torch.float16)
    first = ds[0]
    assert ds._reader is not None and "semseg" not in first and first["features"][0].dtype == torch.float16
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._reader is None
    assert torch.equal(clone[0]["depth"], first["depth"])
    with pytest.raises(fc.FeatureCacheError, match=r"has no targets for \['edges'\]"):
        fc.FeatureCacheDataset(reference, tasks=["edges"])


def test_in_memory_refuses_a_cache_that_does_not_fit(reference):
    with pytest.raises(fc.FeatureCacheError, match=r"needs 0\.00 GiB in memory but only .* in_memory=False"):
        fc.FeatureCacheDataset(reference, in_memory=True, max_memory_bytes=1000)
    assert fc.available_memory_bytes() > 0


# -- sharded writing ---------------------------------------------------------------------------
def test_shard_range_is_contiguous_and_balanced():
    for n in (0, 1, 7, 10, 11):
        for world in (1, 2, 3, 4):
            ranges = [fc.shard_range(n, r, world) for r in range(world)]
            assert [i for r in ranges for i in r] == list(range(n))
            assert max(map(len, ranges)) - min(map(len, ranges)) <= 1
    assert fc.shard_range(11, 0, 2) == range(0, 6) and fc.shard_range(11, 1, 2) == range(6, 11)
    assert fc.shard_path("/c/pascal_val.h5", 1, 4) == Path("/c/pascal_val.shard1of4.h5")


def _write_shards(path, world, ranks=None, **overrides):
    for rank in (range(world) if ranks is None else ranks):
        w = fc.create_shard_writer(path, rank, world, **{**CREATE_KW, **overrides})
        rows = fc.shard_range(N, rank, world)
        assert w.missing_indices().tolist() == list(rows)  # global indices
        write_all(w, rows[::-1])  # any order within the shard
        w.finalize()


def test_joined_shards_read_exactly_like_a_single_file(tmp_path, reference):
    path = tmp_path / "cache.h5"
    _write_shards(path, 3)
    fc.join_shards(path, 3)
    with h5py.File(path, "r") as f:
        assert f["features/0"].is_virtual and f["ids"].is_virtual and f["complete"].is_virtual
        assert {s.file_name for s in f["features/0"].virtual_sources()} == {
            f"cache.shard{r}of3.h5" for r in range(3)}  # relative names
    assert_same_rows(path, reference)
    assert comparable_attrs(path) == comparable_attrs(reference)
    with fc.FeatureCacheReader(path, fingerprint=FINGERPRINT) as r, fc.FeatureCacheReader(reference) as ref:
        assert r.is_virtual and r.ids == ref.ids
        for a, b in zip(r.features_batch(range(N)), ref.features_batch(range(N))):
            assert np.array_equal(a, b)
    ds = fc.FeatureCacheDataset(path)
    assert torch.equal(ds[7]["features"][1], fc.FeatureCacheDataset(reference)[7]["features"][1])


def test_joined_cache_reads_after_its_folder_moves(tmp_path, reference, monkeypatch):
    folder = tmp_path / "a"
    folder.mkdir()
    _write_shards(folder / "cache.h5", 2)
    fc.join_shards(folder / "cache.h5", 2)
    moved = tmp_path / "elsewhere" / "b"
    shutil.move(str(folder), str(moved))
    monkeypatch.chdir(tmp_path)  # neither the old folder nor the working directory holds the shards
    assert_same_rows(moved / "cache.h5", reference)
    with fc.FeatureCacheReader(moved / "cache.h5") as r:
        assert len(r) == N and r.disk_bytes_per_sample() > 0


def test_join_refuses_missing_or_incomplete_shards(tmp_path):
    path = tmp_path / "cache.h5"
    _write_shards(path, 2, ranks=[0])
    with pytest.raises(fc.CacheMissingError, match=r"shard .*cache\.shard1of2\.h5 \(rank 1 of 2\) .* is missing"):
        fc.join_shards(path, 2)
    w = fc.create_shard_writer(path, 1, 2, **CREATE_KW)
    write_all(w, [5, 6])
    w.close()
    with pytest.raises(fc.CacheIncompleteError, match=r"shard1of2\.h5 is incomplete: 2 of 5 samples"):
        fc.join_shards(path, 2)
    assert not path.exists()
    w = fc.create_shard_writer(path, 1, 2, **CREATE_KW)  # resume the shard, then the join works
    write_all(w, w.missing_indices())
    w.finalize()
    fc.join_shards(path, 2)
    fc.shard_path(path, 0, 2).unlink()  # a shard vanishing later is reported, not read as zeros
    with pytest.raises(fc.CacheMissingError, match=r"shard .*shard0of2\.h5 of cache .* is missing"):
        fc.FeatureCacheReader(path)


def test_join_refuses_shards_of_another_backbone(tmp_path):
    path = tmp_path / "cache.h5"
    _write_shards(path, 2, ranks=[0])
    _write_shards(path, 2, ranks=[1], fingerprint="1" * 64)
    with pytest.raises(fc.LayoutMismatchError, match="differ .*fingerprint"):
        fc.join_shards(path, 2)


def test_consolidate_copies_a_joined_cache_into_one_file(tmp_path, reference):
    path = tmp_path / "cache.h5"
    _write_shards(path, 2)
    fc.join_shards(path, 2)
    joined_attrs = comparable_attrs(path)
    fc.consolidate(path, remove_shards=True)
    assert not fc.shard_path(path, 0, 2).exists()
    with h5py.File(path, "r") as f:
        assert not f["features/0"].is_virtual and f["features/0"].chunks == (1, *SCALES[0])
    assert_same_rows(path, reference)
    assert comparable_attrs(path) == joined_attrs


def test_package_does_not_import_ufl():
    code = "import sys, feature_cache; assert not any(m == 'ufl' or m.startswith('ufl.') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_file_of_targets_alone(tmp_path):
    """No feature scales: the targets of a task added beside an existing cache, row for row."""
    path = tmp_path / "c.targets-road.h5"
    w = fc.FeatureCacheWriter.create(path, 4, (), {"road": ((2, 3), "uint8", "int64")}, ids=list("aabb"),
                                     fingerprint="fp", input_size=(8, 12), strides=(), view_index=[0, 1, 0, 1],
                                     view_param_names=("flip",))
    labels = np.arange(24).reshape(4, 2, 3) % 5
    w.write([2, 0, 3, 1], [], {"road": labels[[2, 0, 3, 1]]}, [[0], [0], [1], [1]])
    w.finalize()
    data = fc.FeatureCacheDataset(path, "fp")
    assert data.tasks == ["road"] and len(data) == 4 and data.ids == list("aabb")
    item = data[3]
    assert item["features"] == [] and item["road"].dtype == torch.int64
    assert torch.equal(item["road"], torch.from_numpy(labels[3])) and item["view"] == 1
    with pytest.raises(fc.FeatureCacheError, match="empty only for a file of targets alone"):
        fc.FeatureCacheWriter.create(tmp_path / "none.h5", 4, (), fingerprint="fp", input_size=(8, 12))


# -- checksums, damaged files, old versions (issue 13) ----------------------------------------
def _row_offset(path, name, row):
    """Byte offset in the file of one row (chunk) of an uncompressed dataset."""
    with h5py.File(path, "r") as f:
        return f[name].id.get_chunk_info_by_coord((row,) + (0,) * (f[name].ndim - 1)).byte_offset


def _flip(path, offset, count=1):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = bytearray(fh.read(count))
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


def test_flipped_bytes_are_refused_on_every_read_path_naming_the_row(tmp_path, reference):
    path = tmp_path / "flipped.h5"
    shutil.copy(reference, path)
    _flip(path, _row_offset(path, "features/1", 7) + 5)
    _flip(path, _row_offset(path, "targets/semseg", 3) + 100, count=2)
    expected = (rf"cache {path} \(split val\) is corrupt: row 7 \(sample 'img_003'\) of features/1 does not "
                r"match its checksum; rewrite this cache \(cache-features --overwrite --split val\)")
    for direct in (True, "pread", False):
        with fc.FeatureCacheReader(path, direct=direct) as r:
            assert ("features/1" in r.direct_datasets) == bool(direct)
            with pytest.raises(fc.CacheCorruptError, match=expected):
                r.features(7)
            with pytest.raises(fc.CacheCorruptError, match=expected):
                r.features_batch([0, 7, 2])
            with pytest.raises(fc.CacheCorruptError, match=r"row 3 \(sample 'img_001'\) of targets/semseg"):
                r.targets(3)
            ok = r.features_batch([0, 1, 2, 8, 9])  # the other rows still read, and right
            assert np.array_equal(ok[1], sample_batch([0, 1, 2, 8, 9])[0][1].astype(np.float16))
    ds = fc.FeatureCacheDataset(path, tasks=["depth"])
    with pytest.raises(fc.CacheCorruptError, match=expected):
        list(DataLoader(ds, batch_size=4))
    with pytest.raises(fc.CacheCorruptError, match=expected):
        fc.FeatureCacheDataset(path, in_memory=True)
    problems = fc.verify_file(path)
    assert len(problems) == 2 and "row 7 (sample 'img_003') of features/1" in problems[0] \
        and "row 3 (sample 'img_001') of targets/semseg" in problems[1]
    assert fc.verify_file(reference) == []


def test_verify_false_skips_only_the_row_checks_and_is_never_the_default(tmp_path, reference):
    path = tmp_path / "flipped.h5"
    shutil.copy(reference, path)
    _flip(path, _row_offset(path, "features/1", 7) + 5)
    with fc.FeatureCacheReader(reference) as good:
        expected = bytearray(good.features(7)[1].tobytes())
    expected[5] ^= 0xFF
    for direct in (True, "pread", False):
        with fc.FeatureCacheReader(path, direct=direct, verify=False) as r:
            assert not r.verified
            assert r.features_batch([7])[1].tobytes() == bytes(expected)  # the damaged bytes, unchecked
        with fc.FeatureCacheReader(path, direct=direct) as r, \
                pytest.raises(fc.CacheCorruptError, match=r"row 7 \(sample 'img_003'\) of features/1"):
            assert r.verified
            r.features_batch([7])
    assert fc.FeatureCacheDataset(path).verified


@pytest.mark.parametrize("compression", ["lzf", "gzip"])
def test_damaged_compressed_rows_are_reported_by_verify_file(tmp_path, compression):
    path = make_cache(tmp_path / "c.h5", compression=compression)
    with h5py.File(path, "r") as f:
        info = f["features/0"].id.get_chunk_info_by_coord((4, 0, 0, 0))
    _flip(path, info.byte_offset + info.size // 2, count=4)
    problems = fc.verify_file(path)
    assert len(problems) == 1 and "row 4" in problems[0] and "features/0" in problems[0]
    assert "--overwrite --split val" in problems[0]
    with fc.FeatureCacheReader(path) as r, pytest.raises(fc.CacheCorruptError, match=r"rows? 4"):
        r.features(4)


def test_verify_file_reports_missing_rows_of_a_finalised_file(tmp_path, reference):
    path = tmp_path / "holes.h5"
    shutil.copy(reference, path)
    with h5py.File(path, "r+") as f:
        f["complete"][5] = 0
    assert fc.verify_file(path) == [
        f"cache {path} (split val) was finalised but 1 of {N} rows are not marked written (first: row 5); "
        "rewrite this cache (cache-features --overwrite --split val)"]
    unfinished = tmp_path / "unfinished.h5"
    w = fc.FeatureCacheWriter.create(unfinished, **CREATE_KW)
    write_all(w, range(4))
    w.close()
    assert fc.verify_file(unfinished) == [
        f"cache {unfinished} (split val) is incomplete: 4 of {N} rows written (an interrupted run); "
        "run cache-features again to resume it"]
    assert fc.verify_file(tmp_path / "nope.h5")[0].startswith("feature cache not found")


def test_a_truncated_file_is_reported_truncated_not_locked(tmp_path, reference):
    path = tmp_path / "cut.h5"
    shutil.copy(reference, path)
    os.truncate(path, path.stat().st_size // 2)
    for attempt in (lambda: fc.FeatureCacheWriter.create(path, **CREATE_KW), lambda: fc.FeatureCacheReader(path)):
        with pytest.raises(fc.CacheCorruptError, match=rf"cache {path} is truncated \(truncated file: eof = \d+.* "
                                                       r"rewrite it \(cache-features --overwrite\)") as e:
            attempt()
        assert "lock" not in str(e.value).replace("sblock", "")
    assert "is truncated" in fc.verify_file(path)[0]


@pytest.mark.parametrize("direct", ["mmap", "pread"])
def test_rows_beyond_the_end_of_a_file_are_reported_truncated(tmp_path, reference, direct):
    # a file shortened after HDF5 checked it (its header says nothing of the last chunk's end);
    # mapped: refused before the copy touches a page beyond the end (SIGBUS would end pytest)
    path = tmp_path / "short.h5"
    shutil.copy(reference, path)
    with fc.FeatureCacheReader(path, direct=direct) as r:
        os.truncate(path, _row_offset(path, "targets/depth", 9) + 10)  # rows are allocated in order
        r.features_batch(range(N)), r.targets_batch(range(N), ["semseg"])  # the rows before still read
        with pytest.raises(fc.CacheCorruptError, match=rf"cache {path} \(split val\) is truncated: row 9 of "
                                                       r"targets/depth has 10 of 1024 bytes; rewrite this cache"):
            r.targets_batch(range(N), ["depth"])


FULL_DISK_CHILD = textwrap.dedent("""
    import resource, signal, sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    import feature_cache as fc
    from test_feature_cache import CREATE_KW, sample_batch
    w = fc.FeatureCacheWriter.create({path!r}, **dict(CREATE_KW, compression="gzip"))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the file size limit stands in for a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    try:
        for k in range(0, 10, 2):
            feats, tgts, params = sample_batch([k, k + 1])
            w.write([k, k + 1], feats, tgts, params)
    except fc.FeatureCacheError as e:
        print(e, flush=True)
""")


@pytest.mark.slow
def test_a_compressed_cache_cut_short_by_a_full_disk_is_reported_on_resume(tmp_path):
    path = tmp_path / "full.h5"
    probe = tmp_path / "probe.h5"
    fc.FeatureCacheWriter.create(probe, **dict(CREATE_KW, compression="gzip")).close()
    limit = probe.stat().st_size + 2000  # the skeleton fits, the third batch does not
    code = FULL_DISK_CHILD.format(repo=str(REPO), tests=str(REPO / "tests"), path=str(path), limit=limit)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert f"writing 2 rows to cache {path} failed (File too large); if the disk is full, free space" in out
    assert "rewrite it (cache-features --overwrite)" in out
    # the next run says what is wrong (not "locked by another process", not an HDF5 traceback)
    with pytest.raises(fc.CacheCorruptError, match=rf"cache {path} is (truncated|damaged)"):
        fc.FeatureCacheWriter.create(path, **dict(CREATE_KW, compression="gzip"))
    assert "truncated" in fc.verify_file(path)[0] or "damaged" in fc.verify_file(path)[0]
    w = fc.FeatureCacheWriter.create(path, **dict(CREATE_KW, compression="gzip"), overwrite=True)
    write_all(w, range(N))
    w.finalize()
    assert fc.verify_file(path) == []


def _as_version_1(src, dst):
    """A copy of ``src`` as an earlier feature_cache wrote it: no checksums, no feature scales."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        del f["checksums"], f["feature_scale"]
        del f.attrs["checksum"]
        f.attrs["format_version"] = 1


def test_version_1_caches_are_read_unverified_and_not_resumed(tmp_path, reference, caplog):
    path = tmp_path / "v1.h5"
    _as_version_1(reference, path)
    with caplog.at_level("WARNING", logger="feature_cache"):
        with fc.FeatureCacheReader(path) as r, fc.FeatureCacheReader(reference) as ref:
            assert not r.verified and ref.verified and r.version == 1
            for a, b in zip(r.features_batch(range(N)), ref.features_batch(range(N))):
                assert np.array_equal(a, b)
    assert "format version 1: its rows carry no checksums and are read unverified" in caplog.text
    assert fc.verify_file(path) == []
    assert "without row checksums, so its rows cannot be verified" in fc.verify_file(path, require_checksums=True)[0]
    assert not fc.FeatureCacheDataset(path).verified
    with pytest.raises(fc.CacheVersionError, match="format version 1 .* cannot be resumed, rewrite it"):
        fc.FeatureCacheWriter.create(path, **CREATE_KW)


# -- float16 range (issue 13, item 10) ----------------------------------------------------------
def test_features_beyond_float16_range_round_trip(tmp_path):
    path = tmp_path / "big.h5"
    feats, tgts, params = sample_batch(range(N))
    big = feats[0] * np.float32(1e5)  # up to ~1e6: float16 alone would store inf
    big[3] = feats[0][3]              # one ordinary row among them
    w = fc.FeatureCacheWriter.create(path, **CREATE_KW)
    w.write(range(N), [big, feats[1]], tgts, params)
    w.finalize()
    with fc.FeatureCacheReader(path) as r:
        assert r.feature_dtypes == [np.float32, np.float16]
        scales = r.feature_scale[:, 0]
        assert scales[3] == 1 and (scales[np.arange(N) != 3] > 1).all()
        assert (np.log2(scales) % 1 == 0).all()  # powers of two: only the exponent changes
        got = r.features_batch(range(N))
        assert got[0].dtype == np.float32 and np.isfinite(got[0]).all()
        np.testing.assert_allclose(got[0], big, rtol=2**-11, atol=0)  # float16's relative precision
        for i in range(N):  # exactly float16(x / 2^k) * 2^k
            expect = (big[i] / scales[i]).astype(np.float16).astype(np.float32) * scales[i]
            assert np.array_equal(got[0][i], expect)
        assert np.array_equal(got[1], feats[1].astype(np.float16))
        with fc.FeatureCacheReader(path, direct=False) as slow:
            assert all(np.array_equal(a, b) for a, b in zip(slow.features_batch(range(N)), got))
    item = fc.FeatureCacheDataset(path, dtype=None)[5]
    assert item["features"][0].dtype == torch.float32 and item["features"][1].dtype == torch.float16
    assert torch.equal(item["features"][0], torch.from_numpy(got[0][5]))
    copy = fc.consolidate(path, tmp_path / "copy.h5")  # stored bytes and scales travel unchanged
    with fc.FeatureCacheReader(copy) as r:
        assert np.array_equal(r.features_batch(range(N))[0], got[0])
    # what online evaluation computes (round_to_storage) is what the cache gives back, and stores the same
    online = fc.round_to_storage(torch.from_numpy(big), "float16")
    assert online.dtype == torch.float32 and torch.equal(online, torch.from_numpy(got[0]))
    assert fc.round_to_storage(torch.from_numpy(feats[1]), "float16").dtype == torch.float16
    again = tmp_path / "again.h5"
    w = fc.FeatureCacheWriter.create(again, **CREATE_KW)
    w.write(range(N), [online, feats[1]], tgts, params)
    w.finalize()
    with fc.FeatureCacheReader(again) as r:
        assert np.array_equal(r.features_batch(range(N))[0], got[0])
    assert fmt.float16_scales(np.array([[65504.0], [65520.0], [-131008.0], [np.inf]], np.float32)).tolist() == \
        [1.0, 2.0, 2.0, 1.0]


# -- direct chunk reads and batched Dataset reads (issue 14) ------------------------------------
@pytest.mark.parametrize("direct", [True, "mmap", "pread"])
def test_direct_reads_equal_h5py_reads_and_fall_back_where_they_must(tmp_path, reference, direct):
    order = [9, 0, 3, 3, -2, 5, 1]
    with fc.FeatureCacheReader(reference, direct=direct) as fast, \
            fc.FeatureCacheReader(reference, direct=False) as slow:
        assert set(fast.direct_datasets) == {"features/0", "features/1", "targets/semseg", "targets/depth",
                                             "view_params"}
        assert slow.direct_datasets == []
        assert (fast._map is None) == (direct == "pread")
        for a, b in zip(fast.features_batch(order), slow.features_batch(order)):
            assert a.dtype == b.dtype == np.float16 and np.array_equal(a, b)
            assert a.flags.c_contiguous and a.flags.writeable  # a copy: a view of the mapping is read-only
        expected = sample_batch([i % N for i in order])[0][0].astype(np.float16)
        assert np.array_equal(fast.features_batch(order)[0], expected)
        for decode in (True, False):
            ta, tb = fast.targets_batch(order, decode=decode), slow.targets_batch(order, decode=decode)
            assert all(ta[t].dtype == tb[t].dtype and np.array_equal(ta[t], tb[t]) for t in ta)
        assert np.array_equal(fast.view_params_batch(order), slow.view_params_batch(order))
        assert [f.shape for f in fast.features_batch([])] == [f.shape for f in slow.features_batch([])]
        writable = fast.features_batch([2])[1]
        writable += 1  # the caller owns what it gets: the file is untouched
        assert np.array_equal(fast.features(2)[1], slow.features(2)[1])
    assert fast._map is None and fast._fd is None  # close() unmapped the file
    with pytest.raises(ValueError, match="direct must be True, False, 'mmap' or 'pread', not 'fast'"):
        fc.FeatureCacheReader(reference, direct="fast")
    compressed = make_cache(tmp_path / "lzf.h5", compression="lzf")
    with fc.FeatureCacheReader(compressed) as r:
        assert r.direct_datasets == ["view_params"]  # filtered chunks go through h5py
        assert all(np.array_equal(a, b) for a, b in zip(r.features_batch(order), fc.FeatureCacheReader(
            reference).features_batch(order)))
    _write_shards(tmp_path / "joined.h5", 2)
    fc.join_shards(tmp_path / "joined.h5", 2)
    with fc.FeatureCacheReader(tmp_path / "joined.h5") as r:
        assert r.is_virtual and r.direct_datasets == []
        assert fc.verify_file(tmp_path / "joined.h5") == []  # checksums are joined with the rows


def test_a_file_that_cannot_be_mapped_is_read_with_positional_reads(reference, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(fc.reader.mmap, "mmap", refuse)
    with fc.FeatureCacheReader(reference) as r, fc.FeatureCacheReader(reference, direct=False) as slow:
        assert r._map is None and "features/0" in r.direct_datasets
        assert all(np.array_equal(a, b) for a, b in zip(r.features_batch([3, 1]), slow.features_batch([3, 1])))


def test_dataset_batched_items_equal_single_items(reference):
    ds = fc.FeatureCacheDataset(reference, dtype=None)
    batch = ds.__getitems__([4, 1, 4, 8])
    for item, i in zip(batch, [4, 1, 4, 8]):
        single = ds[i]
        assert item.keys() == single.keys() and item["index"] == i and item["id"] == IDS[i]
        assert all(torch.equal(a, b) and a.dtype == torch.float16 for a, b in zip(item["features"], single["features"]))
        assert torch.equal(item["semseg"], single["semseg"]) and item["semseg"].dtype == torch.int64
    memory = fc.FeatureCacheDataset(reference, in_memory=True, dtype=None).__getitems__([4, 1, 4, 8])
    for a, b in zip(batch, memory):
        assert all(torch.equal(x, y) for x, y in zip(a["features"], b["features"]))
        assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["view_params"], b["view_params"])
    loaded = next(iter(DataLoader(fc.FeatureCacheDataset(reference), batch_size=4)))  # calls __getitems__
    assert loaded["features"][0].shape == (4, *SCALES[0]) and loaded["features"][0].dtype == torch.float32
    assert torch.equal(loaded["features"][0][2], ds[2]["features"][0].float())


def test_batch_loader_gives_the_default_collated_batches(reference):
    ds = fc.FeatureCacheDataset(reference)
    plain = list(DataLoader(ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3)))
    batched = list(ds.loader(4, shuffle=True, generator=torch.Generator().manual_seed(3)))
    assert len(plain) == len(batched) == 3
    for a, b in zip(plain, batched):
        assert a.keys() == b.keys() and a["id"] == b["id"]
        assert all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a["features"], b["features"]))
        for key in ("semseg", "depth", "index", "view", "view_params"):
            assert torch.equal(a[key], b[key]) and a[key].dtype == b[key].dtype, key
    assert sorted(i for b in batched for i in b["index"].tolist()) == list(range(N))
    assert [len(b["id"]) for b in ds.loader(4, drop_last=True)] == [4, 4]


# -- raw chunk writes (issue 14) -------------------------------------------------------------------
def _write_in_order(path, order, **overrides):
    w = fc.FeatureCacheWriter.create(path, **{**CREATE_KW, **overrides})
    write_all(w, order)
    w.finalize()
    return path


def test_raw_chunk_writes_give_the_same_file_bytes_as_slice_writes(tmp_path, monkeypatch):
    """An uncompressed cache's rows go to the file as raw chunks (one H5Dwrite_chunk per row and
    dataset); the file is byte for byte the one h5py's slice assignment writes, in any row order."""
    monkeypatch.setattr(fc_writer, "utc_now", lambda: "2026-01-01T00:00:00+00:00")
    raw_calls = []
    real = fc_writer._write_raw_chunks
    monkeypatch.setattr(fc_writer, "_write_raw_chunks",
                        lambda dset, rows, arr: raw_calls.append(dset.name) or real(dset, rows, arr))
    order = [7, 2, 3, 4, 0, 9, 1, 8, 6, 5]  # batches of 3: out of order, runs and gaps
    fast = _write_in_order(tmp_path / "raw.h5", order)
    assert set(raw_calls) == {"/features/0", "/features/1", "/targets/semseg", "/targets/depth"}
    monkeypatch.setattr(fc_writer, "_raw_chunk_rows", lambda dset: False)  # the h5py slice path
    raw_calls.clear()
    slow = _write_in_order(tmp_path / "slice.h5", order)
    assert raw_calls == []
    assert fast.read_bytes() == slow.read_bytes()
    assert_same_rows(fast, make_cache(tmp_path / "reference.h5"))
    assert fc.verify_file(fast) == []


def test_compressed_or_foreign_rows_fall_back_to_slice_writes(tmp_path, monkeypatch):
    raw_calls = []
    monkeypatch.setattr(fc_writer, "_write_raw_chunks", lambda *args: raw_calls.append(args))
    compressed = _write_in_order(tmp_path / "lzf.h5", range(N), compression="lzf")
    assert raw_calls == []  # filtered chunks: HDF5 compresses them
    assert_same_rows(compressed, make_cache(tmp_path / "plain.h5", compression="lzf"))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        assert not fc_writer._raw_chunk_rows(f.create_dataset("big_endian", (4, 3), ">f4", chunks=(1, 3)))
        assert not fc_writer._raw_chunk_rows(f.create_dataset("two_rows", (4, 3), "f4", chunks=(2, 3)))
        assert not fc_writer._raw_chunk_rows(f.create_dataset("contiguous", (4, 3), "f4"))
        assert fc_writer._raw_chunk_rows(f.create_dataset("one_row", (4, 3), "f4", chunks=(1, 3)))


@pytest.mark.parametrize("compression", [None, "lzf"])
def test_targets_given_as_lists_of_rows_store_the_same_bytes(tmp_path, monkeypatch, compression):
    """write() and BackgroundWriter.put() take each target as a list of per-row tensors (the caching
    loop's batches, not stacked): the file is byte for byte the one written from stacked batches."""
    monkeypatch.setattr(fc_writer, "utc_now", lambda: "2026-01-01T00:00:00+00:00")
    stacked = _write_in_order(tmp_path / "stacked.h5", range(N), compression=compression)
    path = tmp_path / "rows.h5"
    w = fc.FeatureCacheWriter.create(path, **dict(CREATE_KW, compression=compression))
    with fc.BackgroundWriter(w, max_pending=2) as bg:
        for k in range(0, N, 3):
            idx = list(range(k, min(k + 3, N)))[::-1]  # out of order as well
            feats, tgts, params = sample_batch(idx)
            rows = {t: [torch.from_numpy(row) for row in v] for t, v in tgts.items()}  # int64 labels: cast per row
            bg.put(torch.tensor(idx), [torch.from_numpy(f) for f in feats], rows, torch.from_numpy(params))
    w.finalize()
    assert path.read_bytes() == stacked.read_bytes()


def test_a_list_of_rows_of_the_wrong_length_or_shape_is_refused(tmp_path):
    w = fc.FeatureCacheWriter.create(tmp_path / "c.h5", **CREATE_KW)
    feats, tgts, params = sample_batch([0, 1])
    with pytest.raises(fc.LayoutMismatchError, match="targets of 'semseg' have 1 rows, .* expects 2"):
        w.write([0, 1], feats, {**tgts, "semseg": [tgts["semseg"][0]]}, params)
    with pytest.raises(fc.LayoutMismatchError, match=r"a row of the targets of 'depth' has shape \(16, 16\)"):
        w.write([0, 1], feats, {**tgts, "depth": [row[0] for row in tgts["depth"]]}, params)
    bad = [tgts["semseg"][0], np.full(LABEL_SHAPE, 300)]
    with pytest.raises(fc.LayoutMismatchError, match="do not fit the stored dtype uint8"):
        w.write([0, 1], feats, {**tgts, "semseg": bad}, params)
    assert w.num_complete() == 0
    w.close()
