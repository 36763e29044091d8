"""The Ray Serve endpoint on local Ray with CPU replicas and the real weights of ``make weights`` (YOLO11n boxes,
BlazePose): the same answers as ``jobs.label``, the error codes, backpressure, batching, and the page in Chromium."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests
from conftest import free_port

from jobs.label import main as label_main

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "demo.yaml")
TOKEN_ENV, TOKEN = "RAYPOSE_TEST_SERVE_TOKEN", "test-token-5f1c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 3_000_000
IN_FLIGHT, QUEUED = 4, 4  # ingress: requests worked on at once, and waiting beyond that (then 503)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """The shipped COCO photo plus the COCO sample images of ../shared/data (several persons each) when present."""
    folder = tmp_path_factory.mktemp("serve_images") / "images"
    folder.mkdir()
    shutil.copy(REPO / "samples" / "images" / "000000000785.jpg", folder)
    coco = REPO.parent / "shared" / "data" / "coco"
    for name in ("000000040083.jpg", "000000196141.jpg", "000000197388.jpg"):
        if (coco / name).exists():
            shutil.copy(coco / name, folder)
    return folder


@pytest.fixture(scope="module")
def served(images, tmp_path_factory):
    """jobs.label over ``images`` with configs/demo.yaml, then the endpoint with the same config, in one local Ray."""
    for name in ("yolo11n-pose.pt", "pose_landmark_full.pt"):
        if not (REPO / "weights" / name).exists():
            pytest.skip(f"weights/{name} missing: run `make weights` (make test does)")
    import ray
    from ray import serve

    from jobs.serve import prepare
    from pipelines.serve import APP_NAME

    os.environ[TOKEN_ENV] = TOKEN  # before Ray starts: its worker processes inherit it
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=1 << 30, logging_level="ERROR")
    out = tmp_path_factory.mktemp("serve_labels") / "labels"
    try:
        # One thread, one image per detector forward and one person per SPPE forward in both (the endpoint gets one
        # image at a time here): CPU kernels sum in an order that depends on threads and batch size, and with the
        # defaults (job: 4-image batches, 2–3 threads; endpoint: 1 thread) keypoints differed by up to 0.08 px.
        same = ["--set", "sppe.batch_size=1", "--set", "resources.detect.batch_size=1"]
        same += ["--set", "resources.detect.threads=1", "--set", "resources.sppe.threads=1"]
        assert label_main(["--input", str(images), "--output", str(out), "--config", CONFIG, *same]) == 0
        overrides = [
            "sppe.batch_size=1",
            "serve.threads=1",
            f"serve.token_env={TOKEN_ENV}",
            f"serve.max_ongoing_requests={IN_FLIGHT}",
            f"serve.max_queued_requests={QUEUED}",
            f"serve.max_request_bytes={MAX_BODY}",
            "serve.batch_wait_timeout_s=0.05",
        ]
        cfg, app = prepare(CONFIG, overrides)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app, name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}", out
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop(TOKEN_ENV, None)


def _post(url: str, data: bytes, headers: dict | None = None, **params) -> requests.Response:
    return requests.post(f"{url}/v1/poses", data=data, headers={**AUTH, **(headers or {})}, params=params, timeout=120)


def test_answers_equal_jobs_label_on_the_same_images_and_config(served, images):
    url, out = served
    table = pq.read_table(out / "poses").to_pandas()
    assert len(table) >= 3  # real persons, not an empty comparison
    models = requests.get(f"{url}/v1/models", headers=AUTH, timeout=60).json()
    assert models["random_weights"] is False
    assert models["detector"]["sha256"] == table["detector_sha256"].iloc[0]
    assert models["sppe"]["sha256"] == table["sppe_sha256"].iloc[0]
    for path in sorted(images.iterdir()):
        got = _post(url, path.read_bytes(), {"Content-Type": "image/jpeg"})
        assert got.status_code == 200, got.text
        answer = got.json()
        want = table[table["source_uri"].str.endswith(path.name)].sort_values("person_index")
        assert answer["random_weights"] is False and answer["keypoint_set"] == "coco17"
        assert len(answer["persons"]) == len(want), path.name
        for p, (_, w) in zip(answer["persons"], want.iterrows()):
            assert p["person_index"] == w["person_index"]
            np.testing.assert_allclose(p["box_xyxy"], w["box_xyxy"], atol=1e-3)
            np.testing.assert_allclose(p["keypoints"], np.stack(w["keypoints"]), atol=1e-3)
            np.testing.assert_allclose(p["keypoint_scores"], w["keypoint_scores"], atol=1e-5)
            assert p["pose_score"] == pytest.approx(w["pose_score"], abs=1e-4)


def _png_bomb(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_error_codes(served, images):
    url, _ = served
    jpg = (images / "000000000785.jpg").read_bytes()
    assert requests.post(f"{url}/v1/poses", data=jpg, timeout=60).status_code == 401
    assert _post(url, jpg, {"Authorization": "Bearer wrong"}).status_code == 401
    assert requests.get(f"{url}/healthz", timeout=60).json() == {"status": "ok"}  # health needs no token
    assert requests.get(f"{url}/v1/models", timeout=60).status_code == 401  # what is loaded does
    bad = _post(url, b"GIF? no, plain text")
    assert bad.status_code == 400 and "not a decodable image" in bad.json()["error"]
    assert _post(url, b"").status_code == 400
    assert _post(url, jpg, format="xml").status_code == 400
    big = _post(url, b"\0" * (MAX_BODY + 1))
    assert big.status_code == 413 and "limit" in big.json()["error"]
    bomb = _post(url, _png_bomb(100_000, 100_000))
    assert bomb.status_code == 413 and "pixels" in bomb.json()["error"]
    multipart = requests.post(
        f"{url}/v1/poses", files={"image": ("785.jpg", jpg, "image/jpeg")}, headers=AUTH, timeout=120
    )
    assert multipart.status_code == 200 and len(multipart.json()["persons"]) >= 1


def test_formats_coco_and_png(served, images):
    url, _ = served
    jpg = (images / "000000000785.jpg").read_bytes()
    plain = _post(url, jpg).json()
    coco = _post(url, jpg, format="coco", image_id=785).json()
    assert [c["image_id"] for c in coco] == [785] * len(plain["persons"])
    assert coco[0]["keypoints"][:3] == [*plain["persons"][0]["keypoints"][0], plain["persons"][0]["keypoint_scores"][0]]
    png = _post(url, jpg, render=1)
    assert png.headers["content-type"] == "image/png" and png.headers["x-raypose-persons"] == str(len(plain["persons"]))
    import cv2

    drawn = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == original.shape and (np.abs(drawn.astype(int) - original).sum(axis=2) > 60).sum() > 500


def test_concurrent_requests_are_batched_backpressured_and_isolated(served, images):
    url, _ = served
    jpgs = [p.read_bytes() for p in sorted(images.iterdir())]
    alone = [_post(url, j).json()["persons"] for j in jpgs]
    # A burst far beyond what the ingress takes (IN_FLIGHT + QUEUED): the rest must be refused with 503 at once,
    # never queued without bound; a bad request in the burst must not disturb the good ones.
    burst = [(i % len(jpgs), jpgs[i % len(jpgs)]) for i in range(24)]
    burst.insert(5, (-1, b"not an image"))
    with ThreadPoolExecutor(len(burst)) as pool:
        answers = list(pool.map(lambda item: (item[0], _post(url, item[1])), burst))
    codes = [r.status_code for _, r in answers]
    assert set(codes) <= {200, 400, 503}, codes
    assert codes.count(200) >= IN_FLIGHT and codes.count(503) >= 1, codes
    for i, r in answers:
        if r.status_code == 200:
            got = r.json()["persons"]
            assert len(got) == len(alone[i])
            for a, b in zip(got, alone[i]):
                # batched with other requests: the same persons, keypoints to float noise (batch-size-dependent sums)
                np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=0.5)
        elif i == -1:
            assert r.status_code in (400, 503)
    assert _post(url, jpgs[0]).status_code == 200  # and it still answers
    # Concurrent requests share forwards: the stage replicas have run batches of more than one image.
    stats = requests.get(f"{url}/v1/stats", headers=AUTH, timeout=60).json()
    assert max(stats["detector"]["batch_sizes"]) > 1 and max(stats["sppe"]["batch_sizes"]) > 1, stats


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium + chromium-driver are not installed (make browser)")
def test_the_page_in_headless_chromium_shows_skeletons_and_a_table(served, images, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = served
    browser, driver_path = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,1400",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"{url}/")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "file").send_keys(str(images / "000000000785.jpg"))
        WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.done === '1'"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#persons tbody tr")
        assert len(rows) >= 1 and driver.find_element(By.ID, "persons").is_displayed()
        assert "person(s)" in driver.find_element(By.ID, "status").text
        canvas = driver.find_element(By.ID, "view")
        shot = tmp_path / "page.png"
        assert canvas.screenshot(str(shot))
    finally:
        driver.quit()
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB).astype(int)
    # The skeleton colour #00ff66 (nowhere in the snowy photo) is drawn along the person's limbs.
    skeleton = (np.abs(rgb - np.array([0, 255, 102])).sum(axis=2) < 60).sum()
    assert skeleton > 300, skeleton
