"""The task catalogue and user task specs."""

import pytest

from ufl.errors import SpecError
from ufl.taskspec import KINDS, TaskSpec, builtin_specs, get_spec, load_spec, resolve_spec

# DESIGN.md section 6: loss weights per dataset; section 4: output channels.
REFERENCE = {
    "semseg": ("segmentation", {"nyud": 40, "pascal": 21}, {"nyud": 1.0, "pascal": 1.0}, "mIoU", True),
    "depth": ("depth", {"nyud": 1}, {"nyud": 1.0}, "rmse", False),
    "normals": ("normals", {"nyud": 3, "pascal": 3}, {"nyud": 10.0, "pascal": 10.0}, "mean", False),
    "edges": ("edges", {"nyud": 1, "pascal": 1}, {"nyud": 50.0, "pascal": 50.0}, "odsF", True),
    "human_parts": ("segmentation", {"pascal": 7}, {"pascal": 2.0}, "mIoU", True),
    "saliency": ("saliency", {"pascal": 1}, {"pascal": 5.0}, "maxF", True),
}


def test_catalogue_holds_the_six_builtin_tasks():
    assert sorted(builtin_specs()) == sorted(REFERENCE)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_builtin_spec_matches_the_reference_protocol(name):
    kind, channels, weights, metric, higher = REFERENCE[name]
    spec = get_spec(name)
    assert spec.kind == kind
    for dataset, c in channels.items():
        assert spec.out_channels(dataset) == c
        assert spec.weight(dataset) == weights[dataset]
    assert spec.metric == metric and spec.higher_is_better is higher


def test_balanced_bce_weights_follow_mtinet():
    assert get_spec("edges").pos_weight == 0.95
    assert get_spec("saliency").pos_weight == "batch"


def test_fixed_output_kinds_fit_any_dataset_but_segmentation_does_not():
    edges = get_spec("edges")
    assert edges.supports("folder") and edges.out_channels("folder") == 1 and edges.weight("folder") == 50.0
    semseg = get_spec("semseg")
    assert not semseg.supports("folder")
    with pytest.raises(SpecError, match="no channels for dataset 'folder'"):
        semseg.out_channels("folder")


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(SpecError) as e:
        get_spec("segmentaton")
    assert "semseg" in str(e.value) and "saliency" in str(e.value)


def _write(tmp_path, text, name="task.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_spec_minimal_form_takes_the_kind_defaults(tmp_path):
    spec = load_spec(_write(tmp_path, "name: road\nkind: segmentation\nchannels: 3\n"))
    assert spec.out_channels("folder") == 3 and spec.out_channels("pascal") == 3
    assert spec.loss == "cross_entropy" and spec.weight("folder") == 1.0
    assert spec.metric == "mIoU" and spec.higher_is_better
    assert spec.target_folder is None and spec.target_format == "png"


def test_user_spec_full_form(tmp_path):
    spec = load_spec(_write(tmp_path, """
name: lane_edges
kind: edges
description: Lane boundaries
channels: {folder: 1}
loss: {name: balanced_bce, pos_weight: 0.9, weight: {folder: 20}}
metric: {name: odsF}
target: {folder: lanes, format: npy}
"""))
    assert spec.pos_weight == 0.9 and spec.weight("folder") == 20.0
    assert spec.target_folder == "lanes" and spec.target_format == "npy"


def test_spec_round_trips_through_dict():
    for spec in builtin_specs().values():
        again = TaskSpec.from_dict(spec.to_dict())
        assert again == spec


@pytest.mark.parametrize("text, message", [
    ("kind: depth\nchannels: 1\n", "missing required key 'name'"),
    ("name: Road\nkind: segmentation\nchannels: 3\n", "lower-case"),
    ("name: road\nkind: segmentaton\nchannels: 3\n", "kind 'segmentaton' is not one of"),
    ("name: road\nkind: segmentation\nchannels: 0\n", "positive integer"),
    ("name: road\nkind: segmentation\nchannels: 1\n", "at least 2 classes"),
    ("name: d\nkind: depth\nchannels: 2\n", "1 output channel"),
    ("name: n\nkind: normals\nchannels: 1\n", "3 output channel"),
    ("name: road\nkind: segmentation\nchannels: 3\nloss: {name: l1}\n", "does not fit a segmentation task"),
    ("name: road\nkind: segmentation\nchannels: 3\nloss: {weight: -1}\n", "positive number"),
    ("name: road\nkind: segmentation\nchannels: 3\nmetric: {name: rmse}\n", "not reported for a segmentation"),
    ("name: road\nkind: segmentation\nchannels: 3\ncolour: red\n", "unknown key"),
    ("name: s\nkind: saliency\nchannels: 1\nloss: {pos_weight: 2}\n", "pos_weight must be in (0, 1)"),
    ("name: road\nkind: segmentation\nchannels: 3\ntarget: {format: jpg}\n", "target.format"),
    ("name: road\nkind: segmentation\nchannels: 3\ntarget: {folder: ../x}\n", "plain folder name"),
    ("name: road\nkind: segmentation\nchannels: {nyud: 3, pascal: 4}\nloss: {weight: {nyud: 1}}\n",
     "loss weight missing"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_invalid_user_specs_give_one_clear_line_naming_the_file(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_broken_yaml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(_write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


def test_resolve_spec_prefers_the_file_and_checks_the_name(tmp_path):
    path = _write(tmp_path, "name: road\nkind: segmentation\nchannels: 3\n")
    assert resolve_spec("road", path).name == "road"
    assert resolve_spec(None, path).name == "road"
    assert resolve_spec("depth").kind == "depth"
    with pytest.raises(SpecError, match="names task 'road', not 'lane'"):
        resolve_spec("lane", path)


def test_every_kind_declares_its_headline_among_its_metrics():
    for info in KINDS.values():
        assert info.headline in info.metric_keys
        assert info.losses
