"""The workspace: init, the feature cache pipeline, add-task, evaluate, remove, predict."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feature_cache import FeatureCacheReader
from ufl.cli import main
from ufl.errors import CacheError, UflError, WorkspaceError
from ufl.training.pretrain import PretrainConfig, pretrain
from ufl.workspace import HeadTrainingConfig, Workspace
from ufl.workspace.views import ViewDataset, backbone_features

NYUD_SIZE = (64, 96)
PASCAL_SIZE = (64, 64)
QUICK = HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-3)


@pytest.fixture(scope="session")
def checkpoint(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "medusa"
    pretrain(PretrainConfig(out=str(out), data_root=str(synthetic_root), size=NYUD_SIZE, epochs=1, batch_size=4,
                            workers=0, device="cpu", progress=False, edge_thresholds=5))
    return out


@pytest.fixture(scope="session")
def base_workspace(checkpoint, synthetic_root, tmp_path_factory):
    """init --checkpoint, cache PASCAL (2 views), add saliency."""
    root = tmp_path_factory.mktemp("ws") / "ws"
    ws = Workspace.from_checkpoint(root, checkpoint, device="cpu", progress=False)
    ws.cache_features("pascal", data_root=synthetic_root, size=PASCAL_SIZE, views=2, device="cpu", progress=False,
                      batch_size=4, workers=0)
    ws.add_task("saliency", config=QUICK, device="cpu", progress=False)
    return root


@pytest.fixture
def ws(base_workspace, workspace_copy):
    return workspace_copy(base_workspace)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- init -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_init_from_checkpoint_registers_the_pretrained_tasks(ws, checkpoint):
    tasks = ws.tasks
    assert {"semseg", "depth", "normals", "edges", "saliency"} == set(tasks)
    assert tasks["semseg"]["role"] == "main" and tasks["edges"]["role"] == "auxiliary"
    assert set(tasks["depth"]["registered"]) == {"rmse", "log_rmse"}
    manifest = json.loads((ws.root / "workspace.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["backbone"]["channels"] == [18, 36, 72, 144]
    assert ws.backbone().fingerprint() == ws.fingerprint


def _strip_output_activation(ws, task):
    """Make ``task`` look registered by a ufl before the depth softplus: no ``output_activation`` in
    its manifest record (the head file's own config never held one)."""
    from ufl.models.medusa import read_head_metadata

    assert "output_activation" not in json.dumps(read_head_metadata(ws.head_file(task)))
    with ws.manifest.update() as manifest:
        del manifest["tasks"][task]["output_activation"]


@pytest.mark.slow
def test_an_old_identity_depth_head_keeps_its_predictions(ws, synthetic_root):
    from ufl.evaluation import postprocess
    from ufl.workspace.evaluate import recorded_protocol, task_metrics
    from ufl.workspace.predict import load_heads, _run_heads

    assert ws.tasks["depth"]["output_activation"] == "softplus"  # a new checkpoint's head records it
    assert ws.tasks["saliency"]["output_activation"] == "identity"
    _strip_output_activation(ws, "depth")
    record = ws.tasks["depth"]
    common = dict(device="cpu", progress=False, size=record["eval"]["size"], **recorded_protocol(record))
    head = ws.head("depth")
    identity = task_metrics(ws, "depth", ws.spec("depth"), "nyud", head, activation="identity", **common)
    softplus = task_metrics(ws, "depth", ws.spec("depth"), "nyud", head, activation="softplus", **common)
    assert identity != softplus  # the synthetic depths are small: softplus(x) differs from x there
    # an old workspace registered the identity metrics; upgrading must not move them
    with ws.manifest.update() as manifest:
        manifest["tasks"]["depth"]["registered"] = identity
    result = ws.evaluate(["depth"], device="cpu", progress=False).tasks["depth"]
    assert result["metrics"] == identity and result["drift"] == 0.0
    # predict / visualize: the raw output itself, not its softplus
    images = torch.rand(1, 3, *NYUD_SIZE)
    heads = load_heads(ws, ["depth"], "cpu")
    raw = head(ws.backbone("cpu")(images), out_size=NYUD_SIZE)["out"]
    pred = _run_heads(ws, heads, images, "cpu", attention=False)["depth"]["pred"]
    torch.testing.assert_close(pred, raw.float(), rtol=0, atol=0)
    assert not torch.equal(pred, postprocess("depth", raw))


@pytest.mark.slow
def test_a_new_depth_head_records_softplus_and_evaluates_with_no_drift(ws):
    from ufl.workspace.evaluate import recorded_protocol, task_metrics

    ws.add_task("depth", register_as="depth_new", config=QUICK, device="cpu", progress=False, workers=0)
    record = ws.tasks["depth_new"]
    assert record["output_activation"] == "softplus"
    result = ws.evaluate(["depth_new"], device="cpu", progress=False).tasks["depth_new"]
    assert result["drift"] == 0.0 and result["metrics"] == record["registered"]
    identity = task_metrics(ws, "depth_new", ws.spec("depth_new"), "nyud", ws.head("depth_new"), device="cpu",
                            progress=False, size=record["eval"]["size"], activation="identity",
                            **recorded_protocol(record))
    assert identity != record["registered"]  # registered through its softplus, not the old identity


@pytest.mark.slow
def test_export_and_serve_use_the_recorded_depth_activation(ws):
    import torch.nn.functional as F

    from ufl.export import build_graph
    from ufl.serve import ModelServer

    image = np.random.default_rng(0).integers(0, 256, (*NYUD_SIZE, 3), dtype=np.uint8)
    images = torch.from_numpy(image).permute(2, 0, 1).float().div(255)[None]
    with torch.no_grad():
        raw = ws.head("depth")(ws.backbone("cpu")(images), out_size=NYUD_SIZE)["out"]
    for activation, expected in (("softplus", F.softplus(raw)), ("identity", raw)):
        if activation == "identity":
            _strip_output_activation(ws, "depth")  # the same head, as an older ufl registered it
        graph, _ = build_graph(ws, ["depth"])
        with torch.no_grad():
            torch.testing.assert_close(graph(images)[0], expected)  # export: metres as the head was trained
        served = ModelServer(ws, device="cpu").predict_batch([image], [["depth"]])[0]["depth"]
        torch.testing.assert_close(served.reshape(NYUD_SIZE), expected.reshape(NYUD_SIZE), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_checkpoint_records_its_output_activations(checkpoint):
    from ufl.checkpoint import load_checkpoint
    from ufl.outputs import recorded_activation

    meta = load_checkpoint(checkpoint).meta
    assert meta["output_activation"] == {"semseg": "identity", "depth": "softplus",
                                         "normals": "identity", "edges": "identity"}
    old = {k: v for k, v in meta.items() if k != "output_activation"}  # a checkpoint from before the softplus
    assert recorded_activation(old, "depth") == "identity" and recorded_activation(meta, "depth") == "softplus"
    assert recorded_activation({}) == "identity"
    with pytest.raises(ValueError, match="unknown output activation 'exp'"):
        recorded_activation({"output_activation": "exp"})


def test_init_from_a_bare_backbone_and_refusals(tmp_path):
    ws = Workspace.from_backbone(tmp_path / "bare", "resnet18")
    assert ws.tasks == {} and ws.read()["backbone"]["channels"] == [64, 128, 256, 512]
    with pytest.raises(WorkspaceError, match="already holds a workspace"):
        Workspace.from_backbone(tmp_path / "bare", "resnet18")
    result = _invoke("init", "--workspace", tmp_path / "x")
    assert result.exit_code == 2 and "--checkpoint RUN or --backbone NAME" in result.output


@pytest.mark.slow
def test_missing_and_corrupt_manifest_give_one_line(tmp_path, ws):
    result = _invoke("list-tasks", "--workspace", tmp_path / "nowhere")
    assert result.exit_code == 1 and "no workspace at" in result.stderr and len(result.stderr.splitlines()) == 1
    (ws.root / "workspace.json").write_text("{broken")
    result = _invoke("list-tasks", "--workspace", ws.root)
    assert result.exit_code == 1 and "is not valid JSON" in result.stderr and "Traceback" not in result.output


# -- the feature cache ------------------------------------------------------------------------
@pytest.mark.slow
def test_cache_holds_the_backbone_features_and_aligned_targets(ws):
    record = ws.find_cache("pascal", "train")
    assert record["views"] == 2 and record["size"] == list(PASCAL_SIZE)
    reader = FeatureCacheReader(ws.root / record["file"], ws.fingerprint)
    assert reader.attrs["fingerprint"] == ws.fingerprint and reader.attrs["split"] == "train"
    rows = ViewDataset(_pascal(ws, "train"), 2, PASCAL_SIZE)
    backbone = ws.backbone()
    for row in (0, 1, 5):
        sample = rows[row]
        expected = backbone_features(backbone, sample["image"][None])
        for cached, exact in zip(reader.features(row), expected):
            np.testing.assert_allclose(cached, exact[0].numpy(), atol=1e-3, rtol=1e-3)
        targets = reader.targets(row)
        for task in ("semseg", "human_parts", "saliency", "normals", "edges"):
            np.testing.assert_allclose(targets[task], sample[task].numpy(), atol=1e-3)
    # view 1 is the flipped view 0: flipped labels, normals' x negated
    view0, view1 = reader.targets(0), reader.targets(1)
    np.testing.assert_array_equal(view1["semseg"], view0["semseg"][:, ::-1])
    np.testing.assert_allclose(view1["normals"][0], -view0["normals"][0][:, ::-1], atol=1e-3)
    assert reader.view_params(1)[0] == 1.0 and reader.view_params(0)[0] == 0.0
    assert reader.ids[0] == reader.ids[1]


def _pascal(ws, split):
    from ufl.workspace.cache import dataset_specs, open_split, resolve_data

    folder, _ = resolve_data(ws, "pascal", None, None, None)
    return open_split(ws, "pascal", split, folder, dataset_specs(ws, "pascal", None))


def _arrays(path):
    with FeatureCacheReader(path) as reader:
        features, targets, params = reader.read_all()
        return features, targets, params, list(reader.ids)


@pytest.mark.slow
def test_interrupted_cache_resumes_to_the_uninterrupted_result(ws, monkeypatch):
    from feature_cache import BackgroundWriter

    calls = {"n": 0}
    original = BackgroundWriter.put

    def flaky_put(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BackgroundWriter, "put", flaky_put)
    with pytest.raises(KeyboardInterrupt):
        ws.cache_features("pascal", ["train"], views=1, device="cpu", progress=False, batch_size=3, workers=0)
    monkeypatch.setattr(BackgroundWriter, "put", original)
    with h5py.File(ws.cache_file("pascal", "train", 1), "r") as f:
        assert f["complete"][...].sum() == 3  # the first batch is in, the rest is missing
    with pytest.raises(CacheError, match="no pascal/train feature cache"):  # not registered while incomplete
        from ufl.workspace.cache import require_cache
        require_cache(ws, "pascal", "train", 1)
    result = ws.cache_features("pascal", ["train"], views=1, device="cpu", progress=False, batch_size=3, workers=0)
    assert result[0].written == 8 - 3  # only the rows missing after the first batch
    resumed = _arrays(ws.cache_file("pascal", "train", 1))
    shutil.move(ws.cache_file("pascal", "train", 1), ws.root / "resumed.h5")
    ws.cache_features("pascal", ["train"], views=1, device="cpu", progress=False, batch_size=3, workers=0,
                      overwrite=True)
    fresh = _arrays(ws.cache_file("pascal", "train", 1))
    for a, b in zip(resumed[0], fresh[0]):
        np.testing.assert_array_equal(a, b)
    for task in resumed[1]:
        np.testing.assert_array_equal(resumed[1][task], fresh[1][task])
    assert resumed[3] == fresh[3]


@pytest.mark.slow
def test_failed_overwrite_leaves_the_old_cache_and_manifest(ws, monkeypatch):
    path = ws.cache_file("pascal", "val", 1)
    before = path.read_bytes()
    manifest = (ws.root / "workspace.json").read_text()
    from feature_cache import BackgroundWriter

    monkeypatch.setattr(BackgroundWriter, "put", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError, match="disk full"):
        ws.cache_features("pascal", ["val"], device="cpu", progress=False, overwrite=True, force=True, workers=0)
    assert path.read_bytes() == before
    assert (ws.root / "workspace.json").read_text() == manifest
    assert FeatureCacheReader(path, ws.fingerprint).attrs["split"] == "val"


@pytest.mark.slow
def test_a_cache_from_another_backbone_is_refused(ws, tmp_path):
    other = Workspace.create(tmp_path / "other", _random_backbone(seed=123), "test")
    shutil.copytree(ws.root / "caches", other.root / "caches")
    with other.manifest.update() as manifest:
        manifest["caches"] = ws.read()["caches"]
        manifest["data"] = ws.read()["data"]
    with pytest.raises(Exception, match="fingerprint"):
        other.add_task("human_parts", config=QUICK, device="cpu", progress=False)


def _random_backbone(seed):
    from ufl.models import Backbone

    torch.manual_seed(seed)
    return Backbone("hrnet_w18_small_v2", warn_random_init=False)


@pytest.mark.slow
def test_cache_size_must_fit_the_backbone(ws):
    with pytest.raises(UflError, match="not divisible by 32"):
        ws.cache_features("pascal", ["val"], size=(60, 60), device="cpu", progress=False, overwrite=True)


@pytest.mark.slow
def test_torchrun_shards_read_like_one_file(ws):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "ufl", "cache-features", "--workspace", str(ws.root), "--dataset", "pascal", "--split", "train",
         "--views", "3", "--device", "cpu", "--workers", "0", "--batch-size", "4"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    joined = ws.cache_file("pascal", "train", 3)
    assert sorted(p.name for p in joined.parent.glob("pascal-train-3v.shard*")) == [
        "pascal-train-3v.shard0of2.h5", "pascal-train-3v.shard1of2.h5"]
    sharded = _arrays(joined)
    with FeatureCacheReader(joined, ws.fingerprint) as reader:
        assert reader.is_virtual and len(reader) == 24
    ws.cache_features("pascal", ["train"], views=3, device="cpu", progress=False, overwrite=True, workers=0,
                      batch_size=4)
    single = _arrays(joined)
    assert sharded[3] == single[3]
    for a, b in zip(sharded[0], single[0]):
        np.testing.assert_allclose(a, b, atol=2e-3, rtol=2e-3)
    for task in single[1]:
        np.testing.assert_array_equal(sharded[1][task], single[1][task])
    np.testing.assert_array_equal(sharded[2], single[2])
    assert not list(joined.parent.glob("pascal-train-3v.shard*"))  # stale shards removed after overwrite


# -- add-task, evaluate, remove ------------------------------------------------------------------
@pytest.mark.slow
def test_add_task_registers_head_spec_and_metrics(ws):
    record = ws.tasks["saliency"]
    assert record["dataset"] == "pascal" and record["spec"]["kind"] == "saliency"
    assert record["fingerprint"] == ws.fingerprint and record["training"]["epochs"] == 1
    assert set(record["registered"]) == {"maxF", "maxF_b03", "mIoU"}
    assert (ws.root / record["head"]).is_file()


@pytest.mark.slow
def test_a_head_trained_from_disk_with_workers_equals_one_trained_in_memory(ws):
    ws.add_task("human_parts", config=QUICK, device="cpu", progress=False, in_memory=False, workers=2)
    from_disk = ws.head("human_parts").state_dict()
    ws.add_task("human_parts", config=QUICK, device="cpu", progress=False, in_memory=True, replace=True)
    in_memory = ws.head("human_parts").state_dict()
    for key, value in from_disk.items():
        assert torch.equal(value, in_memory[key]), key


@pytest.mark.slow
def test_a_head_trained_through_the_batched_reader_equals_one_through_a_default_collated_loader(ws, monkeypatch):
    """add-task reads whole batches with float16 features cast on the device; the path before (float32
    features from the CPU, one item per row, default collate) trains the same head bit for bit."""
    from torch.utils.data import DataLoader

    from feature_cache import FeatureCacheDataset
    from ufl.workspace import heads

    seen = []
    build_head = heads.build_head

    def recording_head(*args, **kwargs):  # the dtypes of the features reaching the head
        head = build_head(*args, **kwargs)
        head.register_forward_pre_hook(lambda module, inputs: seen.append({f.dtype for f in inputs[0]}))
        return head

    monkeypatch.setattr(heads, "build_head", recording_head)
    config = HeadTrainingConfig(epochs=2, batch_size=3, lr=1e-3, seed=5)  # 16 rows: 5 batches, shuffled
    ws.add_task("human_parts", config=config, device="cpu", progress=False, in_memory=False, workers=2)
    batched = ws.head("human_parts").state_dict()
    assert seen and all(dtypes == {torch.float32} for dtypes in seen)

    def default_collated(train_set, batch_size, generator, kwargs):
        assert {f.dtype for f in train_set.batch([0])["features"]} == {torch.float16}  # cast on the device
        plain = FeatureCacheDataset(train_set.path, train_set.fingerprint, tasks=train_set.tasks)  # float32
        return DataLoader(plain, batch_size=batch_size, shuffle=True, generator=generator,
                          drop_last=len(plain) > batch_size, **kwargs)

    monkeypatch.setattr(heads, "_train_loader", default_collated)
    ws.add_task("human_parts", config=config, device="cpu", progress=False, in_memory=False, workers=2, replace=True)
    reference = ws.head("human_parts").state_dict()
    assert batched.keys() == reference.keys()
    for key, value in batched.items():
        assert torch.equal(value, reference[key]), key


@pytest.mark.slow
def test_evaluate_json_contract_and_zero_drift_after_add_and_remove(ws):
    result = _invoke("evaluate", "--workspace", ws.root, "--all-tasks", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"tasks", "delta_m"} and data["delta_m"] is None
    assert set(data["tasks"]["semseg"]) == {"dataset", "metrics", "registered", "drift"}
    assert data["tasks"]["semseg"]["dataset"] == "nyud" and data["tasks"]["saliency"]["dataset"] == "pascal"
    assert all(t["drift"] == 0.0 for t in data["tasks"].values())
    ws.add_task("human_parts", config=QUICK, device="cpu", progress=False)
    ws.remove_task("saliency")
    after = ws.evaluate(device="cpu", progress=False).to_dict()
    for name, task in data["tasks"].items():
        if name != "saliency":
            assert after["tasks"][name]["metrics"] == task["metrics"], name
    assert all(t["drift"] == 0.0 for t in after["tasks"].values())


@pytest.mark.slow
def test_evaluation_repeats_the_registration_with_another_thread_count(ws):
    registered = {name: record["eval"]["threads"] for name, record in ws.tasks.items()}
    assert set(registered.values()) == {torch.get_num_threads()}  # recorded at init and add-task
    saved = torch.get_num_threads()
    torch.set_num_threads(saved + 1)
    try:
        tasks = ws.evaluate(device="cpu", progress=False).to_dict()["tasks"]
        assert torch.get_num_threads() == saved + 1  # restored after each task
    finally:
        torch.set_num_threads(saved)
    assert all(task["drift"] == 0.0 for task in tasks.values()), {n: t["drift"] for n, t in tasks.items()}


@pytest.mark.slow
def test_val_cache_keeps_the_original_targets_and_tasks_record_their_protocol(ws):
    record = ws.find_cache("pascal", "val", 1)
    base = _pascal(ws, "val")
    sizes = set()
    with FeatureCacheReader(ws.root / record["file"], ws.fingerprint) as reader:
        for row in range(len(base)):
            sample = base[row]
            h, w = sample["meta"]["orig_size"].tolist()
            sizes.add((h, w))
            targets = reader.targets(row)
            assert targets["original_size"].tolist() == [h, w]
            for task in ("semseg", "human_parts", "saliency", "normals", "edges"):
                np.testing.assert_allclose(targets[f"{task}@original"][..., :h, :w], sample[task].numpy(), atol=1e-3)
    assert sizes - {PASCAL_SIZE}  # the generated images are not all at the working size
    tasks = ws.tasks
    assert tasks["saliency"]["eval"]["resolution"] == tasks["semseg"]["eval"]["resolution"] == "original"
    assert tasks["edges"]["eval"]["metric_options"] == {"max_dist": 0.011, "thin": True}  # NYUD's benchmark
    assert tasks["semseg"]["eval"]["metric_options"] == {}


@pytest.mark.slow
def test_a_record_at_the_working_size_is_evaluated_at_the_working_size(ws):
    from ufl.workspace.evaluate import task_metrics

    record = ws.task("saliency")
    original = record["registered"]
    working = task_metrics(ws, "saliency", ws.spec("saliency"), "pascal", ws.head("saliency"), device="cpu",
                           progress=False, threads=record["eval"]["threads"], resolution="working")
    assert working != original  # the same head measured at 64 x 64 instead of each image's own size
    with ws.manifest.update() as manifest:  # a record written before resolutions were recorded
        saved = manifest["tasks"]["saliency"]
        del saved["eval"]["resolution"], saved["eval"]["metric_options"]
        saved["registered"] = working
    assert ws.evaluate(["saliency"], device="cpu", progress=False).tasks["saliency"]["drift"] == 0.0
    with pytest.raises(ValueError, match="original, working"):
        task_metrics(ws, "saliency", ws.spec("saliency"), "pascal", ws.head("saliency"), resolution="native")


@pytest.mark.slow
def test_online_evaluation_reproduces_the_cached_metrics(ws):
    cached = ws.evaluate(["saliency", "semseg"], device="cpu", progress=False).to_dict()
    online = ws.evaluate(["saliency", "semseg"], device="cpu", progress=False, online=True).to_dict()
    for name in ("saliency", "semseg"):
        for key, value in cached["tasks"][name]["metrics"].items():
            assert online["tasks"][name]["metrics"][key] == pytest.approx(value, abs=0.05)


@pytest.mark.slow
def test_refusals_of_add_task(ws, tmp_path):
    result = _invoke("add-task", "saliency", "--workspace", ws.root, "--epochs", "1")
    assert result.exit_code == 1 and "already registered" in result.stderr and "--replace" in result.stderr
    result = _invoke("add-task", "salience", "--workspace", ws.root)
    assert result.exit_code == 1 and "known tasks" in result.stderr and "saliency" in result.stderr
    result = _invoke("add-task", "depth", "--dataset", "pascal", "--replace", "--workspace", ws.root)
    assert result.exit_code == 1 and "dataset 'pascal' has no task 'depth'" in result.stderr
    result = _invoke("remove-task", "nothing", "--workspace", ws.root)
    assert result.exit_code == 1 and "not registered" in result.stderr


@pytest.mark.slow
def test_a_task_registered_again_on_another_dataset_under_its_own_name(ws, tmp_path):
    args = ("--dataset", "pascal", "--epochs", "1", "--batch-size", "4", "--workspace", ws.root, "--device", "cpu")
    for alias, message in (("Pascal-Seg", "lower-case letters"), ("depth", "built-in task 'depth'")):
        result = _invoke("add-task", "semseg", *args, "--as", alias)
        assert result.exit_code == 1 and message in result.stderr, result.output
    before = ws.evaluate(device="cpu", progress=False).to_dict()["tasks"]

    result = _invoke("add-task", "semseg", *args)  # semseg is registered for NYUD (pretraining)
    assert result.exit_code == 0, result.output
    assert "registered pascal_semseg on pascal" in result.stdout
    record = ws.tasks["pascal_semseg"]
    assert record["dataset"] == "pascal" and record["spec"]["name"] == "semseg"
    assert ws.head("pascal_semseg").out_channels == 21 and ws.head("semseg").out_channels == 40
    after = ws.evaluate(device="cpu", progress=False).to_dict()["tasks"]
    assert after["pascal_semseg"]["dataset"] == "pascal" and after["pascal_semseg"]["drift"] == 0.0
    assert after["pascal_semseg"]["metrics"] == record["registered"] and "mIoU" in record["registered"]
    for name, task in before.items():
        assert after[name]["metrics"] == task["metrics"], name
    listing = _invoke("list-tasks", "--workspace", ws.root)
    assert "pascal_semseg" in listing.stdout and "segmentation (semseg)" in listing.stdout
    result = _invoke("add-task", "semseg", *args)  # the same again: PASCAL's semseg head exists now
    assert result.exit_code == 1 and "'pascal_semseg' is already registered" in result.stderr
    result = _invoke("add-task", "semseg", *args, "--as", "semseg_b")
    assert result.exit_code == 0 and set(ws.tasks) >= {"semseg", "pascal_semseg", "semseg_b"}
    panels = ws.visualize(tmp_path / "vis", datasets=["pascal"], num=1, attention=False, device="cpu")
    assert [p.name for p in panels] == ["visualize-pascal.png"]  # ground truth read from the spec's target


@pytest.mark.slow
def test_replace_swaps_the_head_file(ws):
    old = ws.tasks["saliency"]["head"]
    ws.add_task("saliency", config=HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-3, seed=1), device="cpu",
                progress=False, replace=True)
    new = ws.tasks["saliency"]["head"]
    assert new != old and not (ws.root / old).exists() and (ws.root / new).exists()


@pytest.mark.slow
def test_a_crash_while_writing_the_manifest_keeps_the_old_one(ws, monkeypatch):
    before = (ws.root / "workspace.json").read_text()
    heads_before = sorted(p.name for p in (ws.root / "heads").iterdir())
    import ufl.io

    def crash(*args):
        raise OSError("power cut")

    monkeypatch.setattr(ufl.io.os, "replace", crash)
    from ufl.models import build_head

    with pytest.raises(WorkspaceError, match="power cut"):  # one line naming the rescued head, if any
        ws.register("extra", build_head([18, 36, 72, 144], 2), {"spec": {}, "dataset": "pascal", "registered": {}})
    monkeypatch.undo()
    assert (ws.root / "workspace.json").read_text() == before
    assert sorted(p.name for p in (ws.root / "heads").iterdir()) == heads_before
    assert not [p for p in ws.root.rglob("*.tmp")]


@pytest.mark.slow
def test_a_tampered_head_file_is_refused(ws):
    path = ws.root / ws.tasks["depth"]["head"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(WorkspaceError, match="does not match its recorded hash"):
        ws.head("depth")


@pytest.mark.slow
def test_user_task_on_a_folder_dataset(ws, tmp_path, write, rng):
    folder = tmp_path / "mydata"
    for i in range(6):
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        write.image(folder / "images" / f"im{i}.png", image)
        write.png(folder / "road" / f"im{i}.png", (image[..., 0] > 127).astype(np.uint8))
    (folder / "splits").mkdir()
    (folder / "splits" / "train.txt").write_text("\n".join(f"im{i}" for i in range(4)))
    (folder / "splits" / "val.txt").write_text("im4\nim5\n")
    spec = tmp_path / "road.yaml"
    spec.write_text("name: road\nkind: segmentation\nchannels: 2\n")
    result = _invoke("add-task", "--spec", spec, "--dataset", "folder", "--root", folder, "--size", "64x64",
                     "--epochs", "1", "--batch-size", "2", "--workspace", ws.root, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert ws.tasks["road"]["dataset"] == "mydata" and "mIoU" in ws.tasks["road"]["registered"]
    data = ws.evaluate(["road"], device="cpu", progress=False).to_dict()
    assert data["tasks"]["road"]["drift"] == 0.0


@pytest.mark.slow
def test_list_tasks_and_the_evaluate_table(ws, tmp_path):
    result = _invoke("list-tasks", "--workspace", ws.root)
    assert result.exit_code == 0 and "saliency" in result.output and "pascal" in result.output
    plot = tmp_path / "bars.png"
    result = _invoke("evaluate", "--workspace", ws.root, "--task", "depth", "--task", "saliency", "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "drift" in result.output and plot.is_file() and plot.stat().st_size > 1000


@pytest.mark.slow
def test_predict_and_visualize_write_pngs(ws, synthetic_root, tmp_path):
    image = next((synthetic_root / "PASCAL_MT" / "JPEGImages").iterdir())
    result = _invoke("predict", image, "--all-tasks", "--attention", "--raw", "--out", tmp_path / "pred",
                     "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    out = tmp_path / "pred" / image.stem
    from PIL import Image

    for task in ("semseg", "depth", "normals", "edges", "saliency"):
        picture = Image.open(out / f"{task}.png")
        assert picture.size == Image.open(image).size and picture.mode == "RGB"
        assert (out / f"{task}_msa_argmax.png").is_file() and (out / f"{task}_sfa_s3.png").is_file()
    assert np.load(out / "depth.npy").shape == Image.open(image).size[::-1]
    assert (out / "panel.png").is_file()
    result = _invoke("visualize", "--out", tmp_path / "vis", "--num", "2", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "vis" / "visualize-pascal.png").is_file() and (tmp_path / "vis" / "visualize-nyud.png").is_file()


@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_image_fails_with_one_line_naming_it(synthetic_root, tmp_path, workers):
    data = tmp_path / "PASCAL_MT"
    shutil.copytree(synthetic_root / "PASCAL_MT", data)
    victim = sorted((data / "JPEGImages").iterdir())[-1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    Workspace.from_backbone(tmp_path / "ws", "resnet18")
    result = _invoke("cache-features", "--workspace", tmp_path / "ws", "--dataset", "pascal", "--root", data,
                     "--size", "64x64", "--device", "cpu", "--workers", workers)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.startswith("ufl: error")]
    assert len(errors) == 1 and victim.name in errors[0] and "truncated" in errors[0]
    assert "Traceback" not in result.output
    split = "val" if victim.stem in (data / "ImageSets" / "Context" / "val.txt").read_text() else "train"
    assert Workspace(tmp_path / "ws").find_cache("pascal", split) is None  # nothing half-written is registered


# -- init from another folder (issue 17, item 3) ----------------------------------------------------
@pytest.mark.slow
def test_checkpoints_record_the_data_folder_absolute(checkpoint):
    from ufl.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    assert os.path.isabs(ckpt.meta["root"]) and ckpt.data_folder() == Path(ckpt.meta["root"])


def _old_style_run(checkpoint, synthetic_root, made_in):
    """A copy of the run as an older ufl wrote it from ``made_in``: `--out runs/medusa`, the data
    folder recorded relative (data/NYUD_MT)."""
    run = made_in / "runs" / "medusa"
    shutil.copytree(checkpoint, run)
    record = json.loads((run / "checkpoint.json").read_text())
    record["root"] = os.path.join("data", "NYUD_MT")
    record["config"]["out"] = os.path.join("runs", "medusa")
    (run / "checkpoint.json").write_text(json.dumps(record))
    (made_in / "data").mkdir()
    (made_in / "data" / "NYUD_MT").symlink_to(synthetic_root / "NYUD_MT")
    return run


@pytest.mark.slow
def test_init_from_another_folder_and_a_failed_init_does_not_block_the_retry(checkpoint, synthetic_root, tmp_path,
                                                                            monkeypatch):
    from ufl.checkpoint import load_checkpoint

    run = _old_style_run(checkpoint, synthetic_root, tmp_path / "made")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_checkpoint(run).data_folder() == (tmp_path / "made" / "data" / "NYUD_MT").resolve()

    # the data moved away: one line naming where it looked and --root; nothing left behind
    (tmp_path / "made" / "data" / "NYUD_MT").rename(tmp_path / "made" / "data" / "gone")
    result = _invoke("init", "--checkpoint", run.resolve(), "--workspace", "ws", "--device", "cpu")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "data folder" in result.stderr and "--root" in result.stderr and str(tmp_path / "made") in result.stderr
    assert list(elsewhere.iterdir()) == []  # no half-made workspace, no staging folder

    # a failure halfway (after the backbone and some caching) leaves nothing either
    result = _invoke("init", "--checkpoint", run.resolve(), "--workspace", "ws", "--device", "cpu", "--root",
                     tmp_path / "made" / "data")  # not a NYUD folder
    assert result.exit_code == 1 and list(elsewhere.iterdir()) == []

    (tmp_path / "made" / "data" / "gone").rename(tmp_path / "made" / "data" / "NYUD_MT")
    result = _invoke("init", "--checkpoint", run.resolve(), "--workspace", "ws", "--device", "cpu")
    assert result.exit_code == 0, result.output
    ws = Workspace(elsewhere / "ws")
    assert {"semseg", "depth", "normals", "edges"} == set(ws.tasks)
    assert ws.read()["data"]["nyud"]["root"] == str((tmp_path / "made" / "data" / "NYUD_MT").resolve())
    assert [p.name for p in elsewhere.iterdir()] == ["ws"]
    assert ws.evaluate(["depth"], device="cpu", progress=False).tasks["depth"]["drift"] == 0.0


# -- a researcher's first hour: history, all metrics, json, folders, provenance ----------------------
@pytest.mark.slow
def test_add_task_keeps_its_history_logs_tensorboard_and_prints_json(ws, tmp_path):
    logs = tmp_path / "tb"
    result = _invoke("add-task", "human_parts", "--epochs", "2", "--val-every", "1", "--batch-size", "4",
                     "--lr", "1e-3", "--device", "cpu", "--log-dir", logs, "--json", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["name"] == "human_parts" and "mIoU" in printed["metrics"]
    history = ws.task("human_parts")["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["loss"] > 0 and "human_parts" in h["final_loss"] and "mIoU" in h["metrics"]["human_parts"]
               for h in history)
    assert history[-1]["final_loss"]["human_parts"] < history[-1]["loss"]  # the total sums deep supervision
    assert list(logs.glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_evaluate_all_metrics_adds_per_class_iou_and_keeps_the_contract(ws):
    result = _invoke("evaluate", "--workspace", ws.root, "--task", "semseg,saliency", "--all-metrics", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"tasks", "delta_m"}
    semseg = data["tasks"]["semseg"]
    assert {"dataset", "metrics", "registered", "drift", "per_class"} <= set(semseg)
    iou = semseg["per_class"]["IoU"]
    assert len(iou) == 40 and list(iou)[:2] == ["wall", "floor"]
    assert sum(iou.values()) / 40 == pytest.approx(semseg["metrics"]["mIoU"])
    assert data["tasks"]["saliency"]["per_class"] == {}
    text = _invoke("evaluate", "--workspace", ws.root, "--task", "semseg", "--all-metrics")
    assert "per-class IoU: wall" in text.stdout


@pytest.mark.slow
def test_evaluate_plot_has_one_axis_per_unit_and_the_trivial_baseline(ws, tmp_path):
    from ufl.workspace.evaluate import evaluation_table

    data = ws.evaluate(["semseg", "depth", "normals", "saliency"], device="cpu", progress=False).to_dict()
    table, directions = evaluation_table(ws, data)
    assert list(table) == ["score (%)", "metres", "degrees"]
    assert set(table["score (%)"]) == {"semseg mIoU", "saliency maxF"}
    assert all(set(values) == {"ufl", "trivial"} for unit in table.values() for values in unit.values())
    assert directions["depth rmse"] is False
    result = _invoke("evaluate", "--workspace", ws.root, "--task", "depth", "--plot", tmp_path / "e.png")
    assert result.exit_code == 0 and (tmp_path / "e.png").stat().st_size > 1000


@pytest.mark.slow
def test_predict_takes_a_folder_prints_each_image_once_and_json(ws, synthetic_root, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in sorted((synthetic_root / "PASCAL_MT" / "JPEGImages").iterdir())[:2]:
        shutil.copy(image, folder / image.name)
    (folder / "notes.txt").write_text("not an image")
    result = _invoke("predict", folder, "--task", "saliency,depth", "--out", tmp_path / "pred", "--json",
                     "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    images = json.loads(result.stdout)["images"]
    assert len(images) == 2 and all({"saliency", "depth", "panel"} == set(files) for files in images.values())
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _invoke("predict", empty, "--all-tasks", "--out", tmp_path / "p2", "--workspace", ws.root)
    assert result.exit_code == 1 and "holds no images" in result.stderr


@pytest.mark.slow
def test_a_backbone_trained_only_on_generated_data_is_said(ws, checkpoint, synthetic_root, tmp_path):
    from ufl.synthetic import SYNTHETIC_MARKER, is_synthetic
    from ufl.provenance import UNREACHABLE

    assert is_synthetic(synthetic_root / "NYUD_MT") and (synthetic_root / "PASCAL_MT" / SYNTHETIC_MARKER).is_file()
    provenance = ws.read()["backbone"]["provenance"]
    assert provenance["init"] == "random" and provenance["data"][0]["generated"] is True
    for args in (["list-tasks"], ["evaluate", "--task", "depth"]):
        result = _invoke(*args, "--workspace", ws.root)
        assert result.exit_code == 0, result.output
        notes = [line for line in result.stderr.splitlines() if line.startswith("ufl: note:")]
        assert len(notes) == 1 and "only on generated data" in notes[0] and "random init" in notes[0]
    bare = Workspace.from_backbone(tmp_path / "bare", "resnet18", None, init_note=UNREACHABLE)
    assert "ImageNet weights were unreachable" in bare.backbone_note()
    assert Workspace.from_backbone(tmp_path / "bare2", "resnet18", None).backbone_note().startswith(
        "the backbone is randomly initialised")
    # the same data without the marker counts as real: nothing to say
    real = tmp_path / "real"
    shutil.copytree(synthetic_root / "NYUD_MT", real / "NYUD_MT")
    (real / "NYUD_MT" / SYNTHETIC_MARKER).unlink()
    run = tmp_path / "run"
    pretrain(PretrainConfig(out=str(run), data_root=str(real), size=NYUD_SIZE, epochs=1, batch_size=4,
                            workers=0, device="cpu", progress=False, edge_thresholds=5, tasks=["depth"], aux=[]))
    assert Workspace.from_checkpoint(tmp_path / "ws_real", run, register=False).backbone_note() is None


@pytest.mark.slow
def test_cache_features_and_predict_print_their_result_once(ws, synthetic_root, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    result = _invoke("cache-features", "--workspace", ws.root, "--dataset", "pascal", "--split", "val",
                     "--size", "64", "--device", "cpu")
    assert result.exit_code == 0 and result.stdout.count("already cached") == 1
    image = next((synthetic_root / "PASCAL_MT" / "JPEGImages").iterdir())
    result = _invoke("predict", image, "--task", "depth", "--out", tmp_path / "p", "--workspace", ws.root)
    assert result.exit_code == 0 and result.stdout.count(str(tmp_path / "p" / image.stem)) == 1
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [m for m in logged if "already cached" in m or str(tmp_path / "p") in m], logged
