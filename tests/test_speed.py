"""Speed work (issue 14): light CLI imports, the caching pipeline (stored dtypes, one decode per
image, only the image pinned), head precision, and the per-image edge count cache."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feature_cache import FeatureCacheReader
from ufl.cli import main
from ufl.errors import UflError
from ufl.evalcache import CountCache, MetricsCache, cache_content_id, image_key
from ufl.metrics import EdgeMetric
from ufl.runtime import Precision, named_precision
from ufl.workspace import HeadTrainingConfig, Workspace
from ufl.workspace.cache import ImageBuffer, RowBatch, dataset_specs, open_split, resolve_data, target_layout
from ufl.workspace.evaluate import (EDGE_CACHE, METRICS_CACHE, head_precision, metrics_key, recorded_protocol,
                                    task_metrics)
from ufl.workspace.views import ImageRows, ViewDataset

REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 64)
QUICK = HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-3)
HEAVY = ("torch", "timm", "torchvision", "wandb")


@pytest.fixture(scope="module")
def small_ws(synthetic_root, tmp_path_factory):
    """A ResNet-18 workspace (random init) with PASCAL cached at 64 px, a bf16 saliency head and
    an fp32 edges head."""
    root = tmp_path_factory.mktemp("speed") / "ws"
    ws = Workspace.from_backbone(root, "resnet18")
    ws.cache_features("pascal", data_root=synthetic_root, size=SIZE, views=1, device="cpu", progress=False,
                      batch_size=4, workers=0)
    ws.add_task("saliency", config=HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-3, precision="bf16"),
                device="cpu", progress=False)
    ws.add_task("edges", config=QUICK, device="cpu", progress=False)
    return root


@pytest.fixture
def ws(small_ws, workspace_copy):
    return workspace_copy(small_ws)


def _modules_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout first on the path); return the heavy
    modules it imported and what it printed."""
    probe = (f"import sys, json\n{code}\n"
             f"print('MODULES=' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    line = [x for x in done.stdout.splitlines() if x.startswith("MODULES=")][-1]
    return {"modules": json.loads(line[len("MODULES="):]), "stdout": done.stdout}


_RUN_CLI = ("from ufl.cli import main\n"
            "try:\n    main({args!r}, prog_name='ufl')\nexcept SystemExit as e:\n    assert not e.code, e.code\n")


# -- 1. lazy imports -----------------------------------------------------------------------------
@pytest.mark.slow
def test_help_and_list_tasks_import_neither_torch_nor_timm(small_ws):
    assert _modules_after("import ufl.cli")["modules"] == []
    assert _modules_after(_RUN_CLI.format(args=["--help"]))["modules"] == []
    listed = _modules_after(_RUN_CLI.format(args=["list-tasks", "--workspace", str(small_ws), "--json"]))
    assert listed["modules"] == []
    assert '"saliency"' in listed["stdout"] and '"edges"' in listed["stdout"]


@pytest.mark.slow
def test_evaluate_on_cached_features_imports_neither_timm_nor_torchvision(ws):
    done = _modules_after(_RUN_CLI.format(args=["evaluate", "--workspace", str(ws.root), "--all-tasks", "--json"]))
    assert "timm" not in done["modules"] and "torchvision" not in done["modules"] and "wandb" not in done["modules"]
    data = json.loads([x for x in done["stdout"].splitlines() if x.startswith("{")][-1])
    assert {name: task["drift"] for name, task in data["tasks"].items()} == {"saliency": 0.0, "edges": 0.0}


def test_the_local_blocks_are_torchvisions():
    """heads.py re-declares torchvision's BasicBlock and Conv2dNormActivation: same keys, same
    initial weights for a seed, same outputs (heads saved before load unchanged)."""
    from torchvision.models.resnet import BasicBlock as TVBlock
    from torchvision.ops import Conv2dNormActivation as TVConv

    from ufl.models.heads import BasicBlock, Conv2dNormActivation

    x = torch.randn(2, 8, 9, 7)
    for ours, theirs in ((lambda: BasicBlock(8, 8), lambda: TVBlock(8, 8)),
                         (lambda: BasicBlock(8, 5, torch.nn.Sequential(torch.nn.Conv2d(8, 5, 1, bias=False),
                                                                      torch.nn.BatchNorm2d(5))),
                          lambda: TVBlock(8, 5, downsample=torch.nn.Sequential(torch.nn.Conv2d(8, 5, 1, bias=False),
                                                                              torch.nn.BatchNorm2d(5)))),
                         (lambda: Conv2dNormActivation(8, 6), lambda: TVConv(8, 6)),
                         (lambda: Conv2dNormActivation(8, 6, kernel_size=1), lambda: TVConv(8, 6, kernel_size=1))):
        torch.manual_seed(3)
        a = ours()
        torch.manual_seed(3)
        b = theirs()
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        for mode in (True, False):
            a.train(mode), b.train(mode)
            assert torch.equal(a(x.clone()), b(x.clone()))


# -- 2. the caching pipeline ---------------------------------------------------------------------
def _pascal(ws):
    folder, _ = resolve_data(ws, "pascal", None, None, SIZE)
    return open_split(ws, "pascal", "train", folder, dataset_specs(ws, "pascal", None))


@pytest.mark.slow
@pytest.mark.parametrize("views,batch_size", [(1, 4), (2, 4), (3, 5)])
def test_cached_rows_equal_the_per_row_path_in_the_stored_dtypes(ws, views, batch_size):
    """The rows a cache holds (one decode per image, targets in the stored dtypes) equal the old
    path's: each row decoded on its own in int64/float32 and cast by the writer."""
    ws.cache_features("pascal", ["train"], views=views, device="cpu", progress=False, batch_size=batch_size,
                      workers=0, overwrite=True)
    base = _pascal(ws)
    layouts = {s.name: target_layout(s, "pascal", SIZE) for s in dataset_specs(ws, "pascal", None)}
    old = ViewDataset(base, views, SIZE)
    with FeatureCacheReader(ws.cache_file("pascal", "train", views), ws.fingerprint) as reader:
        assert len(reader) == len(base) * views
        for row in range(len(reader)):
            expected = old[row]
            targets = reader.targets(row)
            for task, (_, dtype, _) in layouts.items():
                stored = expected[task].numpy().astype(dtype)  # what the writer made of the old rows
                np.testing.assert_array_equal(targets[task], stored.astype(targets[task].dtype), err_msg=task)
            np.testing.assert_array_equal(reader.view_params(row), expected["view_params"].numpy())
    if views >= 2:  # by hand: view 1 is view 0 mirrored, the normals' x negated
        with FeatureCacheReader(ws.cache_file("pascal", "train", views), ws.fingerprint) as reader:
            first, flipped = reader.targets(0), reader.targets(1)
        np.testing.assert_array_equal(flipped["semseg"], first["semseg"][:, ::-1])
        np.testing.assert_array_equal(flipped["edges"], first["edges"][..., ::-1])
        np.testing.assert_array_equal(flipped["normals"][0], -first["normals"][0][:, ::-1])


@pytest.mark.slow
def test_every_image_is_decoded_once_for_all_its_views(ws, monkeypatch):
    base = _pascal(ws)
    rows = ViewDataset(base, 3, SIZE, storage={"semseg": "uint8", "normals": "float16"})
    decoded = []
    original = type(base).__getitem__
    monkeypatch.setattr(type(base), "__getitem__", lambda self, i: decoded.append(i) or original(self, i))
    wanted = [1, 2, 3, 4, 5, 8, 9]  # image 0: views 1, 2; image 1: all; image 2: 2; image 3: 0
    chunks = ImageRows(rows, wanted, batch_size=4)
    assert chunks.chunks == [[(0, [1, 2])], [(1, [0, 1, 2]), (2, [2])], [(3, [0])]]
    got = [sample for i in range(len(chunks)) for sample in chunks[i]]
    assert sorted(decoded) == [0, 1, 2, 3]
    assert [s["row"] for s in got] == wanted
    for sample in got:
        assert sample["semseg"].dtype == torch.uint8 and sample["normals"].dtype == torch.float16
        assert sample["image"].dtype == torch.float32
    # plain consecutive batches when the batch size is a multiple of the views
    plain = ImageRows(ViewDataset(base, 2, SIZE), range(16), 4).chunks
    assert [[image * 2 + view for image, views in chunk for view in views] for chunk in plain] == \
        [list(range(start, start + 4)) for start in range(0, 16, 4)]


@pytest.mark.slow
def test_a_row_batch_pins_only_the_image(ws, monkeypatch):
    rows = ViewDataset(_pascal(ws), 1, SIZE)
    batch = RowBatch.collate([rows[0], rows[1]])
    assert not batch.pinned
    pinned = []

    def fake_pin(self, *args, **kwargs):  # no CUDA here: record what would be page-locked
        pinned.append(tuple(self.shape))
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    from torch.utils.data._utils.pin_memory import pin_memory  # what the DataLoader's pinning thread calls

    out = pin_memory(batch)
    assert isinstance(out, RowBatch) and out.pinned
    assert pinned == [tuple(batch["image"].shape)]
    assert out["semseg"] is batch["semseg"] and torch.equal(out["image"], batch["image"])


@pytest.mark.slow
def test_the_caching_process_collates_images_channels_last_and_keeps_target_rows_apart(ws, monkeypatch):
    rows = ViewDataset(_pascal(ws), 1, SIZE, storage={"semseg": "uint8"})
    samples = [rows[0], rows[1], rows[2]]
    stacked = RowBatch.collate(samples)  # no targets named: default_collate
    batch = RowBatch.collate(samples, targets=["semseg", "normals"])
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch["image"], stacked["image"]) and torch.equal(batch["row"], stacked["row"])
    assert torch.equal(batch["view_params"], stacked["view_params"]) and batch["id"] == stacked["id"]
    assert all(a is s["semseg"] for a, s in zip(batch["semseg"], samples))  # the rows themselves, not copies
    assert torch.equal(torch.stack(batch["normals"]), stacked["normals"])
    assert torch.equal(batch["edges"], stacked["edges"])  # a key not named is stacked
    # in a DataLoader worker the stacked batch is what goes to shared memory: default_collate
    monkeypatch.setattr("ufl.workspace.cache.get_worker_info", lambda: object())
    in_worker = RowBatch.collate(samples, targets=["semseg"])
    assert torch.equal(in_worker["semseg"], stacked["semseg"]) and in_worker["image"].is_contiguous()


@pytest.mark.slow
def test_image_batches_are_collated_into_memory_reused_once_released(ws):
    """The caching process collates each image batch into the memory of the one before, once the
    loop has released it (no fresh 50 MB allocation per batch at 512 px); never while in use."""
    rows = ViewDataset(_pascal(ws), 1, SIZE)
    samples = [rows[0], rows[1], rows[2]]
    stacked = RowBatch.collate(samples)["image"]
    buffer = ImageBuffer()
    first = RowBatch.collate(samples, images=buffer)["image"]
    assert torch.equal(first, stacked) and first.is_contiguous(memory_format=torch.channels_last)
    kept = first.clone()
    second = RowBatch.collate(samples[1:], images=buffer)["image"]  # the first is still in use
    buffer.release(second)  # not the buffer's memory: ignored
    third = RowBatch.collate(samples[:2], images=buffer)["image"]
    assert len({first.data_ptr(), second.data_ptr(), third.data_ptr()}) == 3 and torch.equal(first, kept)
    assert torch.equal(second, stacked[1:]) and torch.equal(third, stacked[:2])
    buffer.release(first)
    fourth = RowBatch.collate(samples[:2], images=buffer)["image"]  # a smaller last batch: the same memory
    assert fourth.data_ptr() == first.data_ptr() and torch.equal(fourth, stacked[:2])
    assert fourth.is_contiguous(memory_format=torch.channels_last)


def test_an_image_buffer_keeps_one_batch_per_lane():
    buffer = ImageBuffer(capacity=2)
    shape = (4, 3, 8, 8)
    first, second = buffer.take(shape, torch.float32), buffer.take(shape, torch.float32)  # both lanes' batches
    third = buffer.take(shape, torch.float32)  # both kept ones in use: a fresh one, not kept
    assert len({first.data_ptr(), second.data_ptr(), third.data_ptr()}) == 3
    buffer.release(third)  # not kept: ignored
    buffer.release(second)
    buffer.release(second)  # twice: still one free buffer
    assert buffer.take(shape, torch.float32).data_ptr() == second.data_ptr()
    assert buffer.take(shape, torch.float32).data_ptr() not in {first.data_ptr(), second.data_ptr()}
    buffer.release(first)
    other = buffer.take((4, 3, 16, 16), torch.float32)  # another shape replaces the free kept one
    assert other.data_ptr() != first.data_ptr() and other.shape == (4, 3, 16, 16)
    buffer.release(other)
    assert buffer.take((2, 3, 16, 16), torch.float32).data_ptr() == other.data_ptr()  # a smaller last batch


def test_forward_lanes_share_the_threads_equally():
    from ufl.runtime import forward_lanes, torch_threads

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    with torch_threads(2):
        assert forward_lanes(cpu) == (2, 1) and forward_lanes(cpu, 1) == (1, 2) and forward_lanes(cpu, 5) == (2, 1)
        assert forward_lanes(cuda) == (1, 2) and forward_lanes(cuda, 3) == (1, 2)  # the GPU computes
    with torch_threads(1):
        assert forward_lanes(cpu) == (1, 1)
    with torch_threads(5):
        assert forward_lanes(cpu) == (2, 2) and forward_lanes(cpu, 3) == (3, 1)


def test_run_lanes_steps_every_item_once_on_each_lanes_threads():
    import threading
    import time

    from ufl.runtime import run_lanes, torch_threads

    seen = []

    def step(item):
        time.sleep(0.002)  # long enough for the second lane to take items too
        seen.append((item, threading.current_thread().name, torch.get_num_threads()))

    with torch_threads(2):
        run_lanes(iter(range(40)), step, lanes=2, threads=1)
        assert torch.get_num_threads() == 2  # the caller's threads are restored
    assert sorted(item for item, _, _ in seen) == list(range(40))
    assert {threads for _, _, threads in seen} == {1}
    assert len({name for _, name, _ in seen}) == 2  # both lanes worked


@pytest.mark.parametrize("failing", ["caller", "helper"])
def test_run_lanes_raises_the_first_error_in_the_callers_thread_and_stops(failing):
    import threading
    import time

    from ufl.runtime import run_lanes

    done = []
    caller = threading.current_thread()

    def step(item):
        time.sleep(0.002)
        in_caller = threading.current_thread() is caller
        if item >= 4 and in_caller == (failing == "caller"):
            raise ValueError(f"bad item {item}")
        done.append(item)

    with pytest.raises(ValueError, match="bad item"):
        run_lanes(iter(range(1000)), step, lanes=2, threads=1)
    assert len(done) < 100  # the other lane stopped after its current item


@pytest.mark.parametrize("later", [RuntimeError, KeyboardInterrupt])
def test_run_lanes_raises_the_error_that_came_first_and_an_interrupt_before_any(later):
    import threading

    from ufl.runtime import run_lanes

    caller = threading.current_thread()
    both = threading.Barrier(2, timeout=5)  # each lane holds an item before either fails
    helper_failed = threading.Event()

    def step(item):
        both.wait()
        if threading.current_thread() is not caller:
            helper_failed.set()
            raise ValueError("the helper failed first")
        helper_failed.wait(5)
        raise later("the caller failed later")

    with pytest.raises(ValueError if later is RuntimeError else KeyboardInterrupt):
        run_lanes(iter(range(10)), step, lanes=2, threads=1)


@pytest.mark.slow
def test_the_loader_of_a_run_with_workers_pickles(ws, monkeypatch):
    """With DataLoader workers the collate function goes to them (pickled under spawn and
    forkserver): it carries no ImageBuffer (whose lock does not pickle; workers stack their own)."""
    import pickle

    from ufl.runtime import torch_threads

    seen = {}

    class Stop(Exception):
        pass

    def loader(dataset, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr("ufl.workspace.cache.DataLoader", loader)
    for workers in (1, 0):
        with pytest.raises(Stop), torch_threads(2):
            ws.cache_features("pascal", ["train"], device="cpu", progress=False, workers=workers, overwrite=True,
                              lanes=2)
        if workers:
            pickle.dumps(seen["collate_fn"])
        else:  # in the caching process itself: the image batches' memory is reused, one batch per lane
            assert seen["collate_fn"].keywords["images"].capacity == 2


@pytest.mark.slow
def test_lanes_cache_the_very_rows_of_one_lane(ws):
    """Two lanes on one thread each write the same features and targets as one loop on two
    threads (bit for bit) for a backbone whose kernels do not depend on the thread count
    (ResNet-18), whichever lane ran a batch; and the same rows again when run again."""
    from ufl.runtime import torch_threads

    path = ws.cache_file("pascal", "train", 1)
    caches = []
    with torch_threads(2):
        for lanes in (1, 2, 2):
            ws.cache_features("pascal", ["train"], device="cpu", progress=False, batch_size=3, workers=0,
                              overwrite=True, lanes=lanes)
            with FeatureCacheReader(path, ws.fingerprint) as reader:
                rows = range(len(reader))
                caches.append([(reader.features(r), reader.targets(r)) for r in rows])
    for one, *two in zip(*caches):
        for (features, targets), (features2, targets2) in ((one, two[0]), (two[0], two[1])):
            assert all(np.array_equal(a, b) for a, b in zip(features, features2))
            assert targets.keys() == targets2.keys() and all(np.array_equal(targets[k], targets2[k]) for k in targets)


@pytest.mark.slow
def test_the_caching_process_decodes_on_one_thread_and_a_worker_keeps_its_own(ws, monkeypatch):
    from ufl.runtime import torch_threads

    rows = ViewDataset(_pascal(ws), 1, SIZE)
    seen = []
    real = rows.decode
    monkeypatch.setattr(rows, "decode", lambda image: seen.append(torch.get_num_threads()) or real(image))
    with torch_threads(2):
        samples = ImageRows(rows, [0, 1], 2)[0]
        assert torch.get_num_threads() == 2  # restored
        assert seen == [1, 1]
        monkeypatch.setattr("ufl.workspace.views.get_worker_info", lambda: object())  # as in a DataLoader worker
        again = ImageRows(rows, [0, 1], 2)[0]
        assert seen == [1, 1, 2, 2]
    assert all(torch.equal(a["image"], b["image"]) and torch.equal(a["normals"], b["normals"])
               for a, b in zip(samples, again))


# -- 3. precision ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_bf16_head_records_its_precision_and_evaluates_with_zero_drift(ws):
    record = ws.tasks["saliency"]
    assert record["precision"] == "bf16" and record["training"]["precision"] == "bf16"
    assert ws.tasks["edges"]["precision"] == "fp32"
    evaluation = ws.evaluate(["saliency"], device="cpu", progress=False).to_dict()["tasks"]["saliency"]
    assert evaluation["drift"] == 0.0 and evaluation["metrics"] == record["registered"]
    # the precision is applied: the same head in float32 predicts other numbers
    head = ws.head("saliency")
    features = [torch.randn(1, c, 64 // s, 64 // s) for c, s in zip([64, 128, 256, 512], [4, 8, 16, 32])]
    with torch.no_grad():
        with head_precision("bf16", torch.device("cpu")).autocast():
            bf16 = head(features)["out"]
        fp32 = head(features)["out"]
    assert bf16.dtype == torch.bfloat16 and not torch.equal(bf16.float(), fp32)
    again = task_metrics(ws, "saliency", ws.spec("saliency"), "pascal", head, device="cpu", progress=False,
                         threads=record["eval"]["threads"], precision="bf16", **recorded_protocol(record))
    assert again == record["registered"]


@pytest.mark.slow
def test_an_old_record_without_precision_is_fp32(ws):
    with ws.manifest.update() as manifest:
        del manifest["tasks"]["edges"]["precision"]
    assert head_precision(ws.tasks["edges"].get("precision"), torch.device("cpu")) == Precision("cpu", None)
    assert ws.evaluate(["edges"], device="cpu", progress=False).to_dict()["tasks"]["edges"]["drift"] == 0.0


def test_precision_names_and_their_refusals():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert named_precision("fp32", cpu) == Precision("cpu", None)
    assert named_precision("bf16", cpu) == Precision("cpu", torch.bfloat16) and not named_precision("bf16", cpu).needs_scaler
    fp16 = named_precision("fp16", cuda)  # built without a GPU: the CUDA path's settings
    assert fp16 == Precision("cuda", torch.float16) and fp16.needs_scaler
    with pytest.raises(UflError, match="needs a CUDA GPU"):
        named_precision("fp16", cpu)
    with pytest.raises(UflError, match="unknown precision"):
        named_precision("fp64", cpu)
    assert head_precision("fp16", cpu) == Precision("cpu", None)  # a GPU's fp16 head on the CPU: float32


@pytest.mark.slow
def test_fp16_on_the_cpu_is_one_line_before_any_work(ws):
    before = json.loads((ws.root / "workspace.json").read_text())
    result = CliRunner().invoke(main, ["add-task", "human_parts", "--workspace", str(ws.root), "--precision", "fp16",
                                       "--device", "cpu", "--epochs", "1"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "ufl: error: --precision fp16 needs a CUDA GPU (it uses a gradient scaler there); on the CPU use bf16 or fp32"]
    assert json.loads((ws.root / "workspace.json").read_text()) == before
    result = CliRunner().invoke(main, ["pretrain", "--precision", "fp16", "--device", "cpu", "--out", str(ws.root / "r")])
    assert result.exit_code == 1 and "needs a CUDA GPU" in result.stderr and not (ws.root / "r").exists()


# -- 4. edge counts cache --------------------------------------------------------------------------
def _edge_batch(seed=0, n=3):
    rng = np.random.default_rng(seed)
    pred = rng.random((n, 40, 56)).astype(np.float32)
    target = (rng.random((n, 40, 56)) > 0.9).astype(np.float32)
    target[0, :5] = 255  # some ignored pixels
    return pred, target


def _counts(metric):
    return {k: v for k, v in metric.state().items()}


def _same(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_cached_edge_counts_are_identical_and_skip_matching(tmp_path, monkeypatch):
    pred, target = _edge_batch()
    plain = EdgeMetric(num_thresholds=9)
    plain.update(pred, target)
    first = EdgeMetric(num_thresholds=9, cache=tmp_path)
    first.update(pred, target)
    assert (first.cache.hits, first.cache.misses) == (0, 3) and len(first.cache.entries()) == 3
    assert _same(_counts(first), _counts(plain))

    import ufl.metrics.edge_matching

    def no_matching(*args, **kwargs):
        raise AssertionError("matched again")

    monkeypatch.setattr(ufl.metrics.edge_matching, "_edge_image_counts", no_matching)
    second = EdgeMetric(num_thresholds=9, cache=tmp_path)
    second.update(pred, target)
    assert (second.cache.hits, second.cache.misses) == (3, 0)
    assert _same(_counts(second), _counts(plain)) and second.compute() == plain.compute()


def test_the_edge_cache_key_holds_prediction_truth_and_settings(tmp_path):
    pred, target = _edge_batch()
    EdgeMetric(num_thresholds=9, cache=tmp_path).update(pred, target)
    changed = [(EdgeMetric(num_thresholds=9, max_dist=0.02, cache=tmp_path), pred, target, 0),
               (EdgeMetric(num_thresholds=7, cache=tmp_path), pred, target, 0),
               (EdgeMetric(num_thresholds=9, cache=tmp_path), np.nextafter(pred, 2).clip(0, 1), target, 0),
               # only image 0 has ignored pixels: images 1 and 2 are unchanged
               (EdgeMetric(num_thresholds=9, cache=tmp_path), pred, np.where(target == 255, 0, target), 2)]
    for metric, p, t, hits in changed:
        metric.update(p, t)
        assert metric.cache.hits == hits, metric
        reference = EdgeMetric(num_thresholds=metric.thresholds.size, max_dist=metric.max_dist)
        reference.update(p, t)
        assert _same(_counts(metric), _counts(reference))
    # a setting added later (e.g. a thinning switch) is part of the key without code here knowing it
    later = EdgeMetric(num_thresholds=9, cache=tmp_path)
    later.thinning = "none"
    later.update(pred, target)
    assert later.cache.hits == 0


def test_a_damaged_entry_is_a_miss_and_the_cache_is_bounded(tmp_path):
    pred, target = _edge_batch(n=4)
    EdgeMetric(num_thresholds=5, cache=tmp_path).update(pred, target)
    files = CountCache(tmp_path).entries()
    files[0].write_bytes(b"not an npz")
    again = EdgeMetric(num_thresholds=5, cache=tmp_path)
    again.update(pred, target)
    assert (again.cache.hits, again.cache.misses) == (3, 1)
    reference = EdgeMetric(num_thresholds=5)
    reference.update(pred, target)
    assert _same(_counts(again), _counts(reference))
    bounded = EdgeMetric(num_thresholds=5, cache=CountCache(tmp_path / "small", max_entries=2))
    bounded.update(pred, target)
    bounded.compute()
    assert len(bounded.cache.entries()) == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_atomic_path_fsyncs_unless_told_not_to(tmp_path, monkeypatch):
    from ufl.io import atomic_path

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("a")
    assert len(synced) == 1
    with atomic_path(tmp_path / "b.txt", fsync=False) as tmp:
        tmp.write_text("b")
    assert len(synced) == 1 and (tmp_path / "a.txt").read_text() + (tmp_path / "b.txt").read_text() == "ab"


def test_a_count_cache_entry_is_written_like_every_other_file_and_a_failed_write_leaves_nothing(tmp_path,
                                                                                               monkeypatch):
    import ufl.evalcache

    cache = CountCache(tmp_path)
    key = image_key([1], np.arange(3))
    counts = {"tp": np.arange(5, dtype=np.int64), "n": np.array([3.5])}
    expected = {name: (value.shape, value.dtype.str) for name, value in counts.items()}
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    cache.put(key, counts)
    assert synced == [] and cache.written == 1  # a cache entry is not flushed to disk
    assert _same(cache.get(key, expected), counts)
    (entry,) = cache.entries()
    umask = os.umask(0)
    os.umask(umask)
    assert entry.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by whoever shares the workspace
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [entry.name]

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half an entry")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ufl.evalcache.np, "savez", broken_savez)
    other = image_key([2], np.arange(3))
    cache.put(other, counts)  # swallowed: a full disk only costs the speed-up
    cache.put(key, {"tp": np.zeros(5, dtype=np.int64), "n": np.array([0.0])})  # the stored entry is kept
    monkeypatch.setattr(ufl.evalcache.np, "savez", lambda file, **arrays: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # not an OS error: raised, still nothing left behind
        cache.put(other, counts)
    assert cache.written == 1 and [p.name for p in tmp_path.rglob("*") if p.is_file()] == [entry.name]
    assert cache.get(other, expected) is None and _same(cache.get(key, expected), counts)


def test_edge_counts_split_by_image_and_threshold_over_the_pool_are_identical(tmp_path):
    pred, target = _edge_batch(seed=1, n=2)
    here = EdgeMetric(num_thresholds=9)
    here.update(pred, target)
    pooled = EdgeMetric(num_thresholds=9, workers=2, cache=tmp_path)
    pooled.update(pred, target)
    assert _same(_counts(pooled), _counts(here))
    cached = EdgeMetric(num_thresholds=9, cache=tmp_path)  # what the pool stored, reassembled
    cached.update(pred, target)
    assert cached.cache.hits == 2 and _same(_counts(cached), _counts(here))


@pytest.mark.slow
def test_a_second_evaluate_reuses_the_edge_counts(ws, monkeypatch):
    import ufl.metrics.edge_matching

    assert CountCache(ws.root / EDGE_CACHE).entries()  # filled when the head was registered
    shutil.rmtree(ws.root / EDGE_CACHE)
    first = ws.evaluate(["edges"], device="cpu", progress=False).to_dict()["tasks"]["edges"]
    shutil.rmtree(ws.root / METRICS_CACHE)  # the head runs again: its counts come from the edge cache
    monkeypatch.setattr(ufl.metrics.edge_matching, "_edge_image_counts", lambda *a, **k: pytest.fail("matched again"))
    second = ws.evaluate(["edges"], device="cpu", progress=False).to_dict()["tasks"]["edges"]
    assert second == first and second["drift"] == 0.0


# -- 5b. per-task metrics cache --------------------------------------------------------------------
@pytest.fixture
def forwards(monkeypatch):
    """Counts the heads' forward passes and the images whose edges were matched (not read from the
    edge cache; in this process or the pool): ``{"head": n, "match": n}``."""
    from ufl.models import MedusaHead

    calls = {"head": 0, "match": 0}
    forward, finish = MedusaHead.forward, EdgeMetric._finish

    def counted_forward(self, *args, **kwargs):
        calls["head"] += 1
        return forward(self, *args, **kwargs)

    def counted_finish(self, *args, **kwargs):
        calls["match"] += 1
        return finish(self, *args, **kwargs)

    monkeypatch.setattr(MedusaHead, "forward", counted_forward)
    monkeypatch.setattr(EdgeMetric, "_finish", counted_finish)
    return calls


def _evaluate(ws, **options):
    result = ws.evaluate(device="cpu", progress=False, **options)
    return result.to_dict(), result.cached


@pytest.mark.slow
def test_a_second_evaluate_reads_the_metrics_without_running_a_head(ws, forwards):
    first, cached = _evaluate(ws)
    assert cached == {"saliency": False, "edges": False} and forwards["head"] > 0
    assert len(MetricsCache(ws.root / METRICS_CACHE).entries()) == 2
    forwards["head"] = 0
    second, cached = _evaluate(ws)
    assert forwards["head"] == 0 and cached == {"saliency": True, "edges": True}
    assert second == first  # the JSON contract: same shape, same numbers
    assert all(t["drift"] == 0.0 for t in second["tasks"].values())
    assert {n: t["metrics"] for n, t in second["tasks"].items()} == {n: r["registered"] for n, r in ws.tasks.items()}
    # per-class figures come from the same entry, and equal a full recomputation
    detailed, cached = _evaluate(ws, all_metrics=True)
    assert forwards["head"] == 0 and all(cached.values())
    assert detailed == _evaluate(ws, all_metrics=True, cache=False)[0] and forwards["head"] > 0


@pytest.mark.slow
def test_a_changed_head_protocol_or_precision_recomputes(ws, forwards):
    first, _ = _evaluate(ws)
    ws.add_task("edges", config=HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-2, seed=1), device="cpu",
                progress=False, replace=True)  # another head file
    forwards["head"] = 0
    after, cached = _evaluate(ws)
    assert cached == {"saliency": True, "edges": False} and forwards["head"] > 0
    assert after["tasks"]["edges"]["drift"] == 0.0 and after["tasks"]["saliency"] == first["tasks"]["saliency"]
    keys = {n: metrics_key(ws, n, r, "cpu") for n, r in ws.tasks.items()}
    with ws.manifest.update() as manifest:  # another matching distance: another protocol
        manifest["tasks"]["edges"]["eval"]["metric_options"]["max_dist"] = 0.02
        manifest["tasks"]["saliency"]["precision"] = "fp32"
    assert all(metrics_key(ws, n, r, "cpu") != keys[n] for n, r in ws.tasks.items())
    forwards["head"] = 0
    _, cached = _evaluate(ws)
    assert cached == {"saliency": False, "edges": False} and forwards["head"] > 0


@pytest.mark.slow
def test_no_cache_recomputes_everything_and_writes_nothing(ws, forwards):
    first, _ = _evaluate(ws)
    shutil.rmtree(ws.root / "eval-cache")
    forwards.update(head=0, match=0)
    again, cached = _evaluate(ws, cache=False)
    assert again == first and not any(cached.values())
    assert forwards["head"] > 0 and forwards["match"] > 0 and not (ws.root / "eval-cache").exists()
    _evaluate(ws)  # fills the caches
    forwards.update(head=0, match=0)
    result = CliRunner().invoke(main, ["evaluate", "--workspace", str(ws.root), "--all-tasks", "--json", "--no-cache",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == first and forwards["head"] > 0 and forwards["match"] > 0
    forwards["head"] = 0
    result = CliRunner().invoke(main, ["evaluate", "--workspace", str(ws.root), "--all-tasks", "--device", "cpu"])
    assert result.exit_code == 0 and forwards["head"] == 0, result.output
    assert "read from the eval cache" in result.stdout and "--no-cache" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["garbage", "empty", "wrong_key", "bad_value"])
def test_a_corrupt_entry_is_recomputed_with_a_warning(ws, forwards, caplog, damage):
    first, _ = _evaluate(ws)
    entries = MetricsCache(ws.root / METRICS_CACHE).entries()
    for path in entries:
        entry = json.loads(path.read_text())
        if damage == "garbage":
            path.write_bytes(b"\x00{not json")
        elif damage == "empty":
            path.write_bytes(b"")
        elif damage == "wrong_key":
            path.write_text(json.dumps({**entry, "key": "0" * 64}))
        else:
            path.write_text(json.dumps({**entry, "metrics": {"maxF": "high"}}))
    forwards["head"] = 0
    with caplog.at_level("WARNING", logger="ufl.evalcache"):
        again, cached = _evaluate(ws)
    assert again == first and not any(cached.values()) and forwards["head"] > 0
    assert sum("eval cache entry" in r.getMessage() and "recomputed" in r.getMessage() for r in caplog.records) == 2
    assert sorted(MetricsCache(ws.root / METRICS_CACHE).entries()) == sorted(entries)  # rewritten whole
    assert _evaluate(ws)[1] == {"saliency": True, "edges": True}
    for path in entries:  # through the command: no traceback, the same numbers
        path.write_bytes(b"{")
    result = CliRunner().invoke(main, ["evaluate", "--workspace", str(ws.root), "--all-tasks", "--json",
                                       "--device", "cpu"])
    assert result.exit_code == 0 and json.loads(result.stdout) == first, result.output


@pytest.mark.slow
def test_the_val_cache_content_id_follows_its_stored_checksums(ws, tmp_path):
    import h5py

    path = ws.cache_path(ws.find_cache("pascal", "val", 1))
    ident = cache_content_id(path)
    copy = tmp_path / "copy.h5"
    shutil.copyfile(path, copy)
    os.utime(copy, (0, 0))
    assert cache_content_id(copy) == ident  # the content, not the file's name or time
    with h5py.File(copy, "r+") as f:
        sums = f["checksums"][...]
        sums[0, 0] ^= 1  # what a rewritten row would change
        f["checksums"][...] = sums
    assert cache_content_id(copy) != ident
    shutil.copyfile(path, copy)
    with h5py.File(copy, "r+") as f:
        f.attrs["finished"] = "2030-01-01T00:00:00Z"
    assert cache_content_id(copy) != ident
    with h5py.File(copy, "r+") as f:
        del f["checksums"]  # a format version 1 file: no id, so its metrics are not cached
    assert cache_content_id(copy) is None
    assert cache_content_id(tmp_path / "missing.h5") is None


@pytest.mark.slow
def test_doctor_passes_on_a_workspace_with_the_eval_cache(ws):
    _evaluate(ws)
    assert MetricsCache(ws.root / METRICS_CACHE).entries() and CountCache(ws.root / EDGE_CACHE).entries()
    report = ws.doctor()
    assert report.ok, report.findings
    result = CliRunner().invoke(main, ["doctor", "--workspace", str(ws.root)])
    assert result.exit_code == 0, result.output
