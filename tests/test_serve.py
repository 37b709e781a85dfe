"""``ufl serve``: loopback only, GET /tasks, POST /predict keyed by task, concurrent requests batched,
a task added while it runs is served."""

import base64
import io
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ufl.cli import main
from ufl.errors import UflError
from ufl.serve import ModelServer, check_loopback, decode_image
from ufl.workspace import HeadTrainingConfig, Workspace

QUICK = HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-3)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(rng, size=(48, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def serve_ws(synthetic_root, tmp_path_factory):
    torch.manual_seed(0)
    ws = Workspace.from_backbone(tmp_path_factory.mktemp("serve") / "ws", "convnext_atto", pretrained=None)
    ws.cache_features("pascal", data_root=synthetic_root, size=(64, 64), device="cpu", progress=False, batch_size=4,
                      workers=0)
    ws.add_task("saliency", config=QUICK, device="cpu", progress=False, workers=0)
    return ws


def test_only_loopback_hosts_are_served():
    assert check_loopback("127.0.0.1") == "127.0.0.1" and check_loopback("::1") and check_loopback("localhost")
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(UflError, match="only listens on loopback"):
            check_loopback(host)
    out = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--workspace", "nowhere"])
    assert out.exit_code == 1 and "only listens on loopback" in out.output


def test_bad_uploads_are_one_line_errors():
    with pytest.raises(UflError, match="empty"):
        decode_image(b"")
    with pytest.raises(UflError, match="not a readable image"):
        decode_image(b"not an image")


@pytest.mark.slow
def test_batched_predictions_equal_one_image_at_a_time(serve_ws, rng):
    server = ModelServer(serve_ws, device="cpu")
    images = [np.asarray(Image.open(io.BytesIO(_png(rng, s)))) for s in ((48, 80), (64, 64), (30, 40))]
    together = server.predict_batch(images, [None] * 3)
    for image, out in zip(images, together):
        alone = server.predict_batch([image], [None])[0]
        assert out["saliency"].shape == (1, *image.shape[:2])
        torch.testing.assert_close(out["saliency"], alone["saliency"], atol=1e-5, rtol=0)
    # the same as the workspace's own backbone + head on the resized image
    x = torch.from_numpy(images[1].copy()).permute(2, 0, 1).float().div(255)[None]
    with torch.no_grad():
        ref = torch.sigmoid(serve_ws.head("saliency")(serve_ws.backbone("cpu")(x), out_size=(64, 64))["out"])[0]
    torch.testing.assert_close(together[1]["saliency"], ref, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_served_predictions_equal_ufl_predicts_for_every_task_including_a_bf16_head(serve_ws, workspace_copy,
                                                                                   tmp_path, rng):
    ws = workspace_copy(serve_ws.root)
    ws.add_task("saliency", register_as="saliency_bf16", config=HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-3,
                precision="bf16"), device="cpu", progress=False, workers=0)
    assert ws.task("saliency_bf16")["precision"] == "bf16" and ws.task("saliency")["precision"] == "fp32"
    file = tmp_path / "photo.png"
    file.write_bytes(_png(rng, (40, 56)))
    written = ws.predict([file], tmp_path / "out", raw=True, device="cpu")[str(file)]
    server = ModelServer(ws, device="cpu")
    assert server.tasks_info()["info"]["saliency_bf16"]["precision"] == "bf16"
    served = server.predict_batch([np.asarray(Image.open(file))], [None])[0]
    assert set(served) == set(ws.tasks) == {"saliency", "saliency_bf16"}
    for name, pred in served.items():
        expected = np.load(tmp_path / "out" / "photo" / f"{name}.npy")
        assert pred.shape == (1, 40, 56)
        np.testing.assert_allclose(pred[0].numpy(), expected, rtol=0, atol=1e-6, err_msg=name)
        png = server.encode(name, pred, "png", server.state)["data"]  # the same picture as ufl predict's
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(png)))),
                              np.asarray(Image.open(written[name])))
    # the bf16 head really runs in bf16: in float32 it predicts other numbers
    bf16 = np.load(tmp_path / "out" / "photo" / "saliency_bf16.npy")
    x = torch.from_numpy(np.asarray(Image.open(file)).copy()).permute(2, 0, 1).float().div(255)[None]
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        plain = torch.sigmoid(ws.head("saliency_bf16")(ws.backbone("cpu")(x), out_size=(64, 64))["out"])
    plain = torch.nn.functional.interpolate(plain, size=(40, 56), mode="bilinear", align_corners=False)[0, 0]
    assert np.abs(plain.numpy() - bf16).max() > 1e-5


@pytest.mark.slow
def test_server_answers_concurrent_requests_and_serves_a_task_added_while_running(serve_ws, tmp_path, rng):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "ufl", "serve", "--workspace", str(serve_ws.root), "--host",
                             "127.0.0.1", "--port", str(port), "--device", "cpu", "--poll", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                tasks = httpx.get(f"{base}/tasks", timeout=2).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.2)
        else:
            pytest.fail("the server did not start")
        assert tasks["tasks"] == ["saliency"] and tasks["info"]["saliency"]["kind"] == "saliency"

        images = [_png(rng) for _ in range(8)]

        def post(data, fmt="png"):
            return httpx.post(f"{base}/predict", params={"format": fmt}, files={"image": ("x.png", data, "image/png")},
                              timeout=60)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, images))
        assert all(a.status_code == 200 for a in answers)
        first = answers[0].json()
        assert list(first) == ["saliency"] and first["saliency"]["format"] == "png"
        png = Image.open(io.BytesIO(base64.b64decode(first["saliency"]["data"])))
        assert png.size == (80, 48)
        health = httpx.get(f"{base}/health").json()
        assert health["requests"] == 8 and health["batches"] < 8  # concurrent requests were batched

        bad = httpx.post(f"{base}/predict", files={"image": ("x.png", b"junk", "image/png")})
        assert bad.status_code == 400 and "not a readable image" in bad.json()["detail"]

        # a task added while the server runs, keeping it busy meanwhile: no request fails
        with ThreadPoolExecutor(2) as pool:
            busy = pool.submit(lambda: [post(images[0]).status_code for _ in range(6)])
            serve_ws.add_task("semseg", config=QUICK, device="cpu", progress=False, workers=0)
            assert set(busy.result()) == {200}
        for _ in range(100):
            if "semseg" in httpx.get(f"{base}/tasks").json()["tasks"]:
                break
            time.sleep(0.2)
        answer = post(images[1], "array").json()
        assert set(answer) == {"saliency", "semseg"}
        labels = np.asarray(answer["semseg"]["data"])
        assert labels.shape == (48, 80) and labels.min() >= 0 and labels.max() < 21
        assert answer["semseg"]["shape"] == [48, 80]
        only = httpx.post(f"{base}/predict", params={"tasks": "semseg", "format": "array"},
                          files={"image": ("x.png", images[1], "image/png")}).json()
        assert list(only) == ["semseg"] and only["semseg"]["data"] == answer["semseg"]["data"]
        unknown = httpx.post(f"{base}/predict", params={"tasks": "depth"}, files={"image": ("x.png", images[1], "image/png")})
        assert unknown.status_code == 400 and "unknown task(s) ['depth']" in unknown.json()["detail"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
