"""The online endpoint's Ray Serve deployments: the batch pipeline's stages behind HTTP.

Three deployments, built and bound by ``pipelines.serve.build_app``:

* ``DetectorReplica`` — ``actors.detect.Detector`` (the batch pipeline's detection stage, unchanged) behind Serve's
  dynamic request batching: concurrent requests' images go through one detector call.
* ``SPPEReplica`` — ``actors.sppe.SPPE`` the same way: the persons of every image in a batch share forwards.
* ``PoseAPI`` — the HTTP ingress (FastAPI): authentication, body and image limits, decoding
  (``models.images.decode_image``, as the batch pipeline's decode stage), the two stages above, then pose NMS
  (``actors.pose_nms.apply_pose_nms``, the batch stage's function) and the answer as JSON, COCO results or a PNG.

So an image gets exactly the persons and keypoints ``jobs.label`` writes for it with the same config
(``tests/actors/test_serve.py`` checks it). A frame travels between deployments as a batch *row*: a dict of the
columns the Ray Data stages exchange (``stack_rows``/``split_rows`` convert).

Routes: ``POST /v1/poses`` (image bytes or multipart; ``?format=coco``, ``?render=1``, ``?image_id=``),
``GET /v1/models``, ``GET /v1/stats``, ``GET /healthz``, ``GET /`` (a page to try it). With a token configured,
every route but ``/healthz`` and the page needs it. Errors: 400 (not an image, with the reason),
401 (a token is configured and the request lacks it), 413 (body or image too large), 503 (too many requests in
flight: Serve's ``max_queued_requests`` backpressure, before any work is done).
"""

import asyncio
import hmac
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve

from actors.common import ragged
from actors.detect import Detector, DetectorConfig
from actors.pose_nms import apply_pose_nms
from actors.sppe import SPPE, SPPEConfig
from models.images import ImageDecodeError, decode_image
from models.keypoints import get_keypoint_set

logger = logging.getLogger(__name__)

__all__ = [
    "DetectorReplica",
    "SPPEReplica",
    "PoseAPI",
    "replica_threads",
    "stack_rows",
    "split_rows",
    "persons_json",
    "coco_results",
]

PAGE = Path(__file__).with_name("serve_page.html")


def stack_rows(rows: list[dict]) -> dict[str, np.ndarray]:
    """Frame rows (dicts of per-frame values) → one batch as the Ray Data stages take it (object columns for
    per-frame arrays, whose first dimension is the person count)."""
    out = {}
    for c in rows[0]:
        values = [r[c] for r in rows]
        if isinstance(values[0], np.ndarray) and values[0].ndim > 0:
            out[c] = ragged(values)
        else:
            out[c] = np.array(values)
    return out


def split_rows(batch: dict[str, np.ndarray]) -> list[dict]:
    """A batch → its frame rows (the inverse of ``stack_rows``)."""
    n = len(next(iter(batch.values())))
    return [{c: v[i] for c, v in batch.items()} for i in range(n)]


def replica_threads(num_cpus: float, threads: int | None) -> int:
    """torch threads of a CPU replica: the configured number, else its CPU reservation rounded up (Ray sets
    ``OMP_NUM_THREADS`` to the reservation, 1 for any fraction)."""
    return threads or max(1, math.ceil(num_cpus))


async def _in_thread(fn, *args):
    """Run blocking work (a network, decoding) off the replica's event loop, so it keeps accepting and batching."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


class DetectorReplica:
    """``actors.detect.Detector`` behind ``@serve.batch``: ``detect(frame)`` → the frame's row (boxes, crops)."""

    def __init__(self, cfg: DetectorConfig, crop, keypoints: bool, threads: int, max_batch: int, wait_s: float):
        self.stage = Detector(cfg, crop=crop, keypoints=keypoints, threads=threads)
        self.detect.set_max_batch_size(max_batch)
        self.detect.set_batch_wait_timeout_s(wait_s)
        self.batch_sizes: list[int] = []  # what batching did (tests and the benchmark read it)

    @serve.batch
    async def detect(self, frames: list[np.ndarray]) -> list[dict]:
        self.batch_sizes.append(len(frames))
        batch = {self.stage.cfg.frame_column: ragged(frames), "frame_key": np.array([""] * len(frames))}
        return split_rows(await _in_thread(self.stage, batch))

    def info(self) -> dict:
        d = self.stage.detector
        return {"arch": self.stage.cfg.arch, "sha256": d.weights_id, "random_weights": bool(d.random_weights)}

    def stats(self) -> dict:
        return {"batch_sizes": list(self.batch_sizes)}


class SPPEReplica:
    """``actors.sppe.SPPE`` behind ``@serve.batch``: ``estimate(row)`` → the row with keypoints (and, for the
    crowd association, joint candidates)."""

    def __init__(self, cfg: SPPEConfig, threads: int, candidates, max_batch: int, wait_s: float):
        self.stage = SPPE(cfg, threads=threads, candidates=candidates)
        self.estimate.set_max_batch_size(max_batch)
        self.estimate.set_batch_wait_timeout_s(wait_s)
        self.batch_sizes: list[int] = []

    @serve.batch
    async def estimate(self, rows: list[dict]) -> list[dict]:
        self.batch_sizes.append(len(rows))
        return split_rows(await _in_thread(self.stage, stack_rows(rows)))

    def info(self) -> dict:
        return {
            "arch": self.stage.cfg.arch,
            "sha256": self.stage.sha256,
            "random_weights": self.stage.sha256 == "random",
        }

    def stats(self) -> dict:
        return {"batch_sizes": list(self.batch_sizes)}


def persons_json(row: dict) -> list[dict]:
    """One frame row after pose NMS → JSON persons in pose-NMS pick order (``person_index`` as in the poses table)."""
    out = []
    for p in range(int(row["n_persons"])):
        out.append(
            {
                "person_index": p,
                "box_xyxy": [float(v) for v in row["boxes_xyxy"][p]],
                "box_score": float(row["box_scores"][p]),
                "keypoints": [[float(x), float(y)] for x, y in row["keypoints"][p]],
                "keypoint_scores": [float(s) for s in row["keypoint_scores"][p]],
                "pose_score": float(row["pose_scores"][p]),
            }
        )
    return out


def coco_results(persons: list[dict], image_id: int) -> list[dict]:
    """COCO keypoint results (``loadRes`` format; AlphaPose's ``--format coco`` writes the same fields): ``keypoints``
    as x, y, score triplets, ``score`` the pose score, ``bbox`` x, y, w, h."""
    res = []
    for p in persons:
        x1, y1, x2, y2 = p["box_xyxy"]
        flat = [v for (x, y), s in zip(p["keypoints"], p["keypoint_scores"]) for v in (x, y, s)]
        res.append(
            {
                "image_id": image_id,
                "category_id": 1,
                "keypoints": flat,
                "score": p["pose_score"],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
        )
    return res


def _multipart_image(body: bytes, content_type: str) -> bytes:
    """The first file part (or the part named ``image``/``file``) of a multipart/form-data body."""
    import email
    import email.policy

    msg = email.message_from_bytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body, policy=email.policy.HTTP
    )
    if not msg.is_multipart():
        raise ImageDecodeError("multipart/form-data body without parts (is the boundary right?)")
    parts = list(msg.iter_parts())
    for part in parts:
        if part.get_filename() or part.get_param("name", header="content-disposition") in ("image", "file"):
            return part.get_payload(decode=True) or b""
    raise ImageDecodeError("multipart/form-data body has no file part (send the image as field 'image')")


api = FastAPI(title="raypose", description="Multi-person pose estimation (detector → SPPE → pose NMS)")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@serve.ingress(api)
class PoseAPI:
    """The HTTP ingress; ``sppe`` is None when the detector's own keypoints are the poses (``sppe.arch=detector``)."""

    def __init__(self, detector, sppe, settings: dict) -> None:
        self.detector, self.sppe = detector, sppe
        self.s = settings  # pipelines.serve.ingress_settings: limits, pose NMS, keypoint set, identities
        self.kset = get_keypoint_set(settings["keypoint_set"])
        self.page_html = PAGE.read_text()  # read once, not per request
        self._token = os.environ.get(settings["token_env"]) or None
        if self._token:
            logger.info("requests need the bearer token from $%s", settings["token_env"])

    def _denied(self, request: Request) -> JSONResponse | None:
        if self._token is None:
            return None
        got = request.headers.get("authorization", "")
        if got.startswith("Bearer ") and hmac.compare_digest(got[7:].encode(), self._token.encode()):
            return None
        return _error(401, f"missing or wrong bearer token (Authorization: Bearer ${self.s['token_env']})")

    async def _body(self, request: Request) -> bytes | JSONResponse:
        limit = self.s["max_request_bytes"]
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _error(413, f"request body of {declared} bytes is larger than the limit of {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _error(413, f"request body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @api.get("/healthz")
    def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/", response_class=HTMLResponse)
    def page(self) -> HTMLResponse:
        return HTMLResponse(self.page_html)

    @api.get("/v1/models")
    async def models(self, request: Request):
        denied = self._denied(request)
        if denied is not None:
            return denied
        det = await self.detector.info.remote()
        sppe = await self.sppe.info.remote() if self.sppe is not None else {**det, "arch": "detector"}
        return {
            "detector": det,
            "sppe": sppe,
            "keypoint_set": self.s["keypoint_set"],
            "keypoint_names": list(self.kset.names),
            "skeleton": [list(e) for e in self.kset.skeleton],
            "pose_nms": self.s["pose_nms"].method,
            "random_weights": bool(det["random_weights"] or sppe["random_weights"]),
            "config": self.s["config"],
        }

    @api.get("/v1/stats")
    async def stats(self, request: Request):
        """Batch sizes each stage replica has run (the one answering), to see what batching does."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        out = {"detector": await self.detector.stats.remote()}
        if self.sppe is not None:
            out["sppe"] = await self.sppe.stats.remote()
        return out

    @api.post("/v1/poses")
    async def poses(self, request: Request, format: str = "raypose", render: bool = False, image_id: int = 0):
        t0 = time.perf_counter()
        denied = self._denied(request)
        if denied is not None:
            return denied
        if format not in ("raypose", "coco"):
            return _error(400, f"format must be 'raypose' or 'coco', got {format!r}")
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        ctype = request.headers.get("content-type", "")
        try:
            if ctype.startswith("multipart/form-data"):
                body = _multipart_image(body, ctype)
            frame = await _in_thread(decode_image, body, self.s["max_image_pixels"])
        except ImageDecodeError as e:
            status = 413 if "larger than the limit" in str(e) else 400
            return _error(status, f"not a usable image: {e}")
        row = await self.detector.detect.remote(frame)
        if self.sppe is not None:
            row = await self.sppe.estimate.remote(row)
        (row,) = split_rows(await _in_thread(self._pose_nms, row))
        persons = persons_json(row)
        random = bool(row["random_weights"]) or self.s["sppe_sha256"] == "random"
        if render:
            png = await _in_thread(self._render, frame, row, random)
            return Response(png, media_type="image/png", headers={"X-Raypose-Persons": str(len(persons))})
        if format == "coco":
            return coco_results(persons, image_id)
        return {
            "image": {"width": int(frame.shape[1]), "height": int(frame.shape[0])},
            "persons": persons,
            "keypoint_set": self.s["keypoint_set"],
            "keypoint_names": list(self.kset.names),
            "skeleton": [list(e) for e in self.kset.skeleton],
            "models": {
                "detector": {"arch": self.s["detector_arch"], "sha256": str(row["detector_weights"])},
                "sppe": {"arch": self.s["sppe_arch"], "sha256": self.s["sppe_sha256"]},
            },
            "random_weights": random,
            "ms": round(1000 * (time.perf_counter() - t0), 1),
        }

    def _pose_nms(self, row: dict) -> dict:
        return apply_pose_nms(stack_rows([row]), self.s["pose_nms"], self.s["crowd"])

    def _render(self, frame: np.ndarray, row: dict, random: bool) -> bytes:
        import cv2

        from models.render import draw_poses

        kps = np.asarray(row["keypoints"], np.float32).reshape(-1, self.kset.num_keypoints, 2)
        scores = np.asarray(row["keypoint_scores"], np.float32).reshape(len(kps), self.kset.num_keypoints)
        boxes = np.asarray(row["boxes_xyxy"], np.float32).reshape(-1, 4)
        img = draw_poses(frame, kps, scores, self.kset, boxes_xyxy=boxes, label="RANDOM WEIGHTS" if random else None)
        ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError("PNG encoding failed")
        return png.tobytes()
