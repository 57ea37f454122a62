"""Every endpoint in-process (TestClient, lifespan run, the real exported model): exact fields on
success, a status and stable code for every class of bad input, API keys, metrics."""

from __future__ import annotations

import datetime as dt
import gc
import json
import threading
import uuid

import numpy as np
import pytest
from PIL import Image
from service_helpers import assert_error, encode, metric, png, samples, wait_until

from app.api.schemas import BatchResponse, ClassifyResponse, ModelInfo, PolicyInfo
from app.config import DEFAULT_POLICY_FILE
from app.policy import load_policy
from app.reasons import before_policy
from bench.scanner import render

RESULT_FIELDS = {
    "decision_id",
    "class_id",
    "label",
    "confidence",
    "top_k",
    "season",
    "season_confidence",
    "bin",
    "zone",
    "needs_review",
    "review_reasons",
    "box",
    "model",
    "item_id",
    "timings_ms",
}
KEY_A, KEY_B = "a" * 16 + "-scanner-one", "b" * 16 + "-scanner-two"


@pytest.fixture(scope="module")
def policy(tf_model):
    return load_policy(DEFAULT_POLICY_FILE, tf_model.class_names, metadata_review_threshold=tf_model.review_threshold)


def dataset_box(image: np.ndarray) -> dict:
    """A dataset image's garment: the box of its non-black pixels."""
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return {"left": int(cols[0]), "top": int(rows[0]), "right": int(cols[-1]) + 1, "bottom": int(rows[-1]) + 1}


def expected_result(tf_model, policy, image: np.ndarray, on: dt.date, top_k: int = 3) -> dict:
    inference = tf_model.infer(image[None])
    probabilities = inference.probabilities[0].astype(np.float64)
    class_id = int(np.argmax(probabilities))
    decision = policy.decide(probabilities, on, before_policy((), bool(inference.unfamiliar[0])))
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return {
        "class_id": class_id,
        "label": tf_model.class_names[class_id],
        "confidence": pytest.approx(float(probabilities[class_id]), abs=1e-6),
        "top_k": [
            {
                "class_id": int(c),
                "label": tf_model.class_names[c],
                "probability": pytest.approx(float(probabilities[c]), abs=1e-6),
            }
            for c in order
        ],
        "season": decision.season,
        "season_confidence": pytest.approx(decision.season_mass, abs=1e-6),
        "bin": decision.bin,
        "zone": decision.zone,
        "needs_review": decision.needs_review,
        "review_reasons": [str(reason) for reason in decision.reasons],
        "box": dataset_box(image),
        "model": {"name": tf_model.name, "version": tf_model.version},
    }


def check_result(body: dict, expected: dict, item_id: str | None) -> None:
    ClassifyResponse.model_validate(body)
    assert set(body) == RESULT_FIELDS
    assert uuid.UUID(body["decision_id"]).version == 7
    assert {k: v for k, v in body.items() if k not in ("decision_id", "item_id", "timings_ms")} == expected
    assert body["item_id"] == item_id
    assert set(body["timings_ms"]) == {"preprocess", "queue", "inference"}
    assert all(v >= 0 for v in body["timings_ms"].values())
    assert body["timings_ms"]["inference"] > 0


# --- success paths ------------------------------------------------------------------------------
def test_healthz_and_readyz(client, tf_model):
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model": {"name": tf_model.name, "version": tf_model.version}}


def test_classify_multipart_with_item_id(client, tf_model, policy, test_set):
    image = test_set[0][0]
    on = dt.date(2025, 7, 1)
    response = client.post(
        "/classify",
        params={"as_of": on.isoformat()},
        files={"file": ("boot.png", png(image), "image/png")},
        data={"item_id": "SKU-1"},
    )
    assert response.status_code == 200, response.text
    check_result(response.json(), expected_result(tf_model, policy, image, on), "SKU-1")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_classify_raw_body_in_every_format(client, tf_model, policy, test_set, fmt):
    image = test_set[0][1]
    on = dt.date(2025, 1, 10)
    data = encode(Image.fromarray(image), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    # The Content-Type only has to say "an image": the format is read from the bytes.
    response = client.post(
        "/classify",
        params={"as_of": on.isoformat()},
        content=data,
        headers={"Content-Type": "image/jpeg", "X-Item-Id": f"raw-{fmt}"},
    )
    assert response.status_code == 200, response.text
    decoded = np.asarray(Image.open(__import__("io").BytesIO(data)).convert("L"))
    check_result(response.json(), expected_result(tf_model, policy, decoded, on), f"raw-{fmt}")


def test_form_item_id_wins_over_header_and_top_k(client, test_set):
    response = client.post(
        "/classify",
        params={"top_k": 10},
        files={"file": ("x.png", png(test_set[0][2]), "image/png")},
        data={"item_id": "from-form"},
        headers={"X-Item-Id": "from-header"},
    )
    body = response.json()
    assert body["item_id"] == "from-form"
    assert len(body["top_k"]) == 10 and sorted(e["class_id"] for e in body["top_k"]) == list(range(10))
    assert sum(e["probability"] for e in body["top_k"]) == pytest.approx(1.0, abs=1e-5)
    probabilities = [e["probability"] for e in body["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True)
    one = client.post(
        "/classify", params={"top_k": 1}, content=png(test_set[0][2]), headers={"Content-Type": "image/png"}
    )
    assert one.json()["top_k"] == body["top_k"][:1] and one.json()["item_id"] is None


def test_zone_follows_as_of_date(client, tf_model, test_set):
    images, _ = test_set
    probabilities = tf_model.predict(images[:64])
    # A confidently predicted coat or pullover (winter): forward in January, reserve in July.
    index = next(i for i, p in enumerate(probabilities) if p.argmax() in (2, 4) and p[[2, 4, 9]].sum() > 0.9)
    zones = {}
    for date in ("2025-01-15", "2025-07-15"):
        body = client.post(
            "/classify", params={"as_of": date}, content=png(images[index]), headers={"Content-Type": "image/png"}
        ).json()
        assert body["season"] == "winter" and body["bin"] == "BIN-W"
        zones[date] = body["zone"]
    assert zones == {"2025-01-15": "forward", "2025-07-15": "reserve"}


def test_batch_results_in_input_order_with_per_item_errors(client, tf_model, policy, test_set):
    images = test_set[0][:3]
    on = dt.date(2025, 7, 1)
    files = [
        ("files", ("0.png", png(images[0]), "image/png")),
        ("files", ("note.txt", b"not an image at all", "text/plain")),
        ("files", ("1.png", png(images[1]), "image/png")),
        ("files", ("empty.png", b"", "image/png")),
        ("files", ("cut.png", png(images[2])[:40], "image/png")),
        ("files", ("2.jpg", encode(Image.fromarray(images[2]), "JPEG", quality=100), "image/jpeg")),
    ]
    item_ids = [("item_id", f"id-{i}") for i in range(len(files))]
    response = client.post(
        "/classify/batch", params={"as_of": on.isoformat()}, files=files, data={"item_id": [v for _, v in item_ids]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    BatchResponse.model_validate(body)
    assert (body["count"], body["failed"]) == (6, 3)
    assert body["model"] == {"name": tf_model.name, "version": tf_model.version}
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["filename"] for r in results] == ["0.png", "note.txt", "1.png", "empty.png", "cut.png", "2.jpg"]
    assert [r["error"]["code"] if r["error"] else None for r in results] == [
        None,
        "not_an_image",
        None,
        "empty_image",
        "corrupt_image",
        None,
    ]
    assert [r["error"]["status"] for r in results if r["error"]] == [415, 400, 415]
    assert all((r["result"] is None) == (r["error"] is not None) for r in results)
    check_result(results[0]["result"], expected_result(tf_model, policy, images[0], on), "id-0")
    check_result(results[2]["result"], expected_result(tf_model, policy, images[1], on), "id-2")
    jpeg_image = np.asarray(Image.open(__import__("io").BytesIO(files[5][1][1])))
    check_result(results[5]["result"], expected_result(tf_model, policy, jpeg_image, on), "id-5")


def test_batch_of_256_matches_the_model(client, tf_model, test_set):
    images = test_set[0][:256]
    files = [("files", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(images)]
    body = client.post("/classify/batch", files=files).json()
    assert body["count"] == 256 and body["failed"] == 0
    expected = np.concatenate([tf_model.predict(images[i : i + 64]).argmax(axis=1) for i in range(0, 256, 64)])
    assert [r["result"]["class_id"] for r in body["results"]] == expected.tolist()


def test_model_and_policy_endpoints(client, tf_model):
    info = client.get("/v1/model").json()
    ModelInfo.model_validate(info)
    metadata = json.loads((tf_model.path / "metadata.json").read_text())  # the document, not our parse of it
    assert info["name"] == metadata["name"] and info["version"] == tf_model.version
    assert info["classes"] == metadata["class_names"]
    # The accuracy of the signature being served, as the export measured it.
    served = metadata.get("accuracy_by_precision", {}).get(tf_model.precision)
    if served is None:  # versions exported before accuracy_by_precision
        served = {"validation": metadata.get("validation_accuracy"), "test": metadata.get("test_accuracy")}
    # Both keys always; a model trained on the validation split has no validation figure (null).
    assert info["accuracy"] == {"validation": served.get("validation"), "test": served["test"]}
    assert info["precision"] == tf_model.precision in ("float32", "bfloat16")
    assert info["temperature"] == metadata.get("temperature")
    expected_threshold = tf_model.review_threshold if tf_model.review_threshold is not None else 0.7
    assert info["review_threshold"] == expected_threshold
    assert info["review_threshold_source"] == ("model metadata" if "review_threshold" in metadata else "policy file")
    assert info["input"] == metadata["input"]
    assert info["params"] == metadata["params"]
    assert info["ensemble_size"] == metadata.get("ensemble_size", 1)
    assert info["unsure_members"] == metadata.get("unsure_members", 0)
    assert info["tta_flip"] == metadata.get("tta_flip", False)
    assert info["flip_below"] == metadata.get("flip_below")
    assert info["calibrated_by"] == metadata.get("calibrated_by", {}).get("runs")
    assert info["device"].startswith(("CPU", "GPU"))
    assert info["batch_sizes"] == [1, 2, 4, 8, 16, 32, 64] and info["max_batch_size"] == 64
    policy = client.get("/v1/policy", params={"as_of": "2025-08-01"}).json()
    PolicyInfo.model_validate(policy)
    assert policy["current_season"] == "summer" and policy["as_of"] == "2025-08-01"
    assert policy["hemisphere"] == "northern" and policy["review_bin"] == "REVIEW"
    assert [s["name"] for s in policy["seasons"]] == ["summer", "winter", "all-season"]
    assert policy["review_threshold"] == expected_threshold


def test_docs_page_and_its_assets_are_served_without_internet(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")):
        assert f'"/static/swagger-ui/{asset}"' in page.text
        served = client.get(f"/static/swagger-ui/{asset}")
        assert served.status_code == 200 and kind in served.headers["content-type"]
        assert len(served.content) > 100_000
    assert client.get("/redoc").status_code == 404


def test_docs_and_openapi_describe_both_body_kinds(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/classify"]["post"]["requestBody"]["content"]
    assert {
        "multipart/form-data",
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/tiff",
    } <= set(body)
    assert body["multipart/form-data"]["schema"]["required"] == ["file"]
    responses = spec["paths"]["/classify"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "500", "503", "504"} <= set(responses)
    assert responses["200"]["content"]["application/json"]["example"]["label"] == "Ankle boot"
    assert (
        "files"
        in spec["paths"]["/classify/batch"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"][
            "properties"
        ]
    )


# --- bad input ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def strict(make_client):
    """Small limits so that limit tests need no large payloads."""
    return make_client(max_body_bytes=4096, max_batch_body_bytes=8192, max_image_pixels=10_000, max_batch_files=4)


def test_bad_input_statuses_and_codes(client, test_set):
    image = png(test_set[0][0])
    post = client.post
    assert_error(
        post("/classify", content=b"", headers={"Content-Type": "image/png"}),
        400,
        "empty_image",
        "The image is empty (0 bytes).",
    )
    assert_error(post("/classify", files={"file": ("e.png", b"", "image/png")}), 400, "empty_image")
    assert_error(post("/classify", content=b"plain words", headers={"Content-Type": "image/png"}), 415, "not_an_image")
    assert_error(post("/classify", content=image[:50], headers={"Content-Type": "image/png"}), 415, "corrupt_image")
    ico = encode(Image.new("RGB", (32, 32)), "ICO")
    assert_error(
        post("/classify", content=ico, headers={"Content-Type": "image/x-icon"}), 415, "unsupported_image_format"
    )
    assert_error(
        post("/classify", content=image, headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type"
    )
    assert_error(post("/classify", content=image), 415, "unsupported_media_type")
    assert_error(
        post("/classify", files={"photo": ("x.png", image, "image/png")}),
        422,
        "missing_field",
        "The multipart field 'file' is required.",
    )
    assert_error(post("/classify", data={"file": "just text"}, files={"other": ("x", b"x")}), 422, "missing_field")
    two = [("file", ("a.png", image, "image/png")), ("file", ("b.png", image, "image/png"))]
    assert_error(post("/classify", files=two), 413, "too_many_files")
    assert_error(
        post("/classify", content=b"--x\r\ngarbage", headers={"Content-Type": "multipart/form-data"}),
        400,
        "malformed_multipart",
        "The multipart body cannot be parsed: Missing boundary in multipart.",
    )
    assert_error(
        post("/classify", content=b"no parts here", headers={"Content-Type": "multipart/form-data; boundary=zz"}),
        400,
        "malformed_multipart",
        "The multipart body cannot be parsed: Invalid multipart data.",
    )
    assert_error(
        post("/classify", params={"top_k": 0}, content=image, headers={"Content-Type": "image/png"}),
        422,
        "validation_error",
        "query.top_k: Input should be greater than or equal to 1",
    )
    assert_error(
        post("/classify", params={"as_of": "July"}, content=image, headers={"Content-Type": "image/png"}),
        422,
        "validation_error",
    )
    assert_error(
        post("/classify", content=image, headers={"Content-Type": "image/png", "X-Item-Id": "x" * 129}),
        422,
        "validation_error",
        "item_id: at most 128 characters",
    )
    assert_error(
        post("/classify/batch", content=image, headers={"Content-Type": "image/png"}), 415, "unsupported_media_type"
    )
    assert_error(
        post("/classify/batch", files={"note": (None, "no files")}),
        422,
        "missing_field",
        "The multipart field 'files' is required.",
    )
    assert_error(
        post("/classify/batch", files=[("files", ("a.png", image))], data={"item_id": ["1", "2"]}),
        422,
        "validation_error",
        "item_id: 2 item_id fields for 1 files",
    )
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.get("/classify"), 405, "method_not_allowed")


def test_limits(strict, test_set):
    post = strict.post
    big = np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)  # ~4.2 kB as PNG, incompressible
    big_png = png(big)
    assert len(big_png) > 4096
    assert_error(
        post("/classify", content=big_png, headers={"Content-Type": "image/png"}),
        413,
        "body_too_large",
        "The request body exceeds the limit of 4096 bytes.",
    )

    def chunks():  # no Content-Length: the limit is enforced on the streamed bytes
        for start in range(0, len(big_png), 1000):
            yield big_png[start : start + 1000]

    assert_error(post("/classify", content=chunks(), headers={"Content-Type": "image/png"}), 413, "body_too_large")
    assert_error(post("/classify", files={"file": ("b.png", big_png, "image/png")}), 413, "body_too_large")
    wide = encode(Image.new("L", (200, 60), 255), "PNG")  # 12,000 pixels > 10,000
    assert_error(
        post("/classify", content=wide, headers={"Content-Type": "image/png"}),
        413,
        "image_too_large",
        "The image is 200x60 = 12000 pixels; the limit is 10000 pixels.",
    )
    small = png(test_set[0][0])
    five = [("files", (f"{i}.png", small, "image/png")) for i in range(5)]
    assert_error(post("/classify/batch", files=five), 413, "too_many_files", "Too many files; at most 4 per request.")
    mixed = [("files", ("ok.png", small, "image/png")), ("files", ("wide.png", wide, "image/png"))]
    body = post("/classify/batch", files=mixed).json()
    assert body["results"][0]["error"] is None
    assert body["results"][1]["error"]["code"] == "image_too_large" and body["results"][1]["error"]["status"] == 413


def test_no_input_causes_a_server_error(client):
    rng = np.random.default_rng(1)
    for size in (1, 7, 100, 3000):
        for content_type in ("image/png", "multipart/form-data; boundary=abc", "image/gif"):
            response = client.post("/classify", content=rng.bytes(size), headers={"Content-Type": content_type})
            assert 400 <= response.status_code < 500, (size, content_type, response.text)
            assert set(response.json()) == {"detail", "code", "request_id"}


# --- service states -----------------------------------------------------------------------------
def test_not_ready_until_warmed_up_then_ready(make_client, controlled, test_set):
    controlled.warmup_gate.clear()
    client = make_client(model=controlled, wait=False)
    assert_error(client.get("/readyz"), 503, "not_ready")
    assert client.get("/healthz").status_code == 200
    response = client.post("/classify", content=png(test_set[0][0]), headers={"Content-Type": "image/png"})
    assert_error(response, 503, "not_ready")
    assert response.headers["Retry-After"] == "1"
    assert metric(client, "garment_sorter_ready") == 0
    controlled.warmup_gate.set()
    assert client.app.state.service.wait_ready(30)
    assert client.get("/readyz").status_code == 200
    assert metric(client, "garment_sorter_ready") == 1


def test_failed_warm_up_keeps_the_service_unready(make_client, controlled):
    controlled.warmup_error = RuntimeError("kernel missing")
    client = make_client(model=controlled, wait=False)
    wait_until(lambda: client.app.state.service.lifecycle.warmup_error is not None)
    assert_error(client.get("/readyz"), 503, "warmup_failed", "Warm-up failed: RuntimeError: kernel missing")


def test_inference_failure_answers_500_and_the_service_recovers(make_client, controlled, test_set):
    client = make_client(model=controlled)
    controlled.fail_next = RuntimeError("out of memory")
    response = client.post("/classify", content=png(test_set[0][0]), headers={"Content-Type": "image/png"})
    assert_error(response, 500, "inference_failed", "Inference failed: RuntimeError: out of memory")
    ok = client.post("/classify", content=png(test_set[0][0]), headers={"Content-Type": "image/png"})
    assert ok.status_code == 200


def _post_in_thread(client, data: bytes) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(
        target=lambda: out.append(client.post("/classify", content=data, headers={"Content-Type": "image/png"}))
    )
    thread.start()
    return thread, out


def test_queue_full_answers_503_at_once(make_client, controlled, test_set):
    client = make_client(model=controlled, max_queue=1, max_batch_files=1)
    service = client.app.state.service
    data = png(test_set[0][0])
    controlled.gate.clear()
    running, running_out = _post_in_thread(client, data)
    assert controlled.started.wait(10)  # the first request is in the (held) model call
    queued, queued_out = _post_in_thread(client, data)
    wait_until(lambda: service.batcher.queue_depth == 1)
    response = client.post("/classify", content=data, headers={"Content-Type": "image/png"})
    assert_error(response, 503, "queue_full", "The inference queue is full; retry shortly.")
    assert response.headers["Retry-After"] == "1"
    controlled.gate.set()
    running.join(10)
    queued.join(10)
    assert running_out[0].status_code == 200 and queued_out[0].status_code == 200
    assert metric(client, "garment_sorter_rejections_total", reason="queue_full") == 1


def test_a_batch_that_does_not_fit_is_refused_whole_before_decoding(make_client, controlled, test_set, monkeypatch):
    client = make_client(model=controlled, max_queue=4, max_batch_files=4)
    service = client.app.state.service
    data = png(test_set[0][0])
    controlled.gate.clear()
    running, running_out = _post_in_thread(client, data)
    assert controlled.started.wait(10)
    queued, queued_out = _post_in_thread(client, data)
    wait_until(lambda: service.batcher.queue_depth == 1)
    decoded: list[int] = []
    monkeypatch.setattr(type(service.flow), "_prepare_chunk", lambda self, blobs: decoded.append(len(blobs)) or [])
    files = [("files", (f"{i}.png", data, "image/png")) for i in range(4)]
    response = client.post("/classify/batch", files=files)
    assert_error(response, 503, "queue_full", "The inference queue is full; retry shortly.")
    assert response.headers["Retry-After"] == "1" and decoded == []
    assert metric(client, "garment_sorter_rejections_total", reason="queue_full") == 4
    controlled.gate.set()
    running.join(10)
    queued.join(10)
    assert running_out[0].status_code == 200 and queued_out[0].status_code == 200


def test_deadline_answers_504(make_client, controlled, test_set):
    client = make_client(model=controlled, request_timeout_s=0.2)
    controlled.gate.clear()
    response = client.post("/classify", content=png(test_set[0][0]), headers={"Content-Type": "image/png"})
    assert_error(response, 504, "deadline_exceeded", "The request was not processed within 0.2 s.")
    controlled.gate.set()
    assert metric(client, "garment_sorter_rejections_total", reason="deadline") == 1


def test_objects_loaded_before_ready_are_frozen_out_of_the_cyclic_collector(make_client):
    # Full collections over TensorFlow's objects stalled the loop ~185 ms each (the p99 tail).
    gc.unfreeze()
    client = make_client(model_backend="null")
    assert client.get("/readyz").status_code == 200
    assert gc.get_freeze_count() > 10_000


def test_null_model_build_serves_the_same_api(make_client, test_set):
    client = make_client(model_backend="null")
    body = client.post("/classify", content=png(test_set[0][0]), headers={"Content-Type": "image/png"}).json()
    ClassifyResponse.model_validate(body)
    assert body["label"] == "Trouser" and body["model"] == {"name": "null", "version": 0}
    assert client.get("/v1/model").json()["device"] == "none"


# --- API keys -----------------------------------------------------------------------------------
def test_api_keys(make_client, test_set):
    client = make_client(api_keys=f"{KEY_A}, {KEY_B}")
    data = png(test_set[0][0])
    headers = {"Content-Type": "image/png"}
    response = client.post("/classify", content=data, headers=headers)
    assert_error(response, 401, "unauthorized", "A valid X-API-Key header is required.")
    assert response.headers["WWW-Authenticate"] == "ApiKey"
    assert_error(
        client.post("/classify", content=data, headers={**headers, "X-API-Key": KEY_A + "x"}), 401, "unauthorized"
    )
    for key in (KEY_A, KEY_B):
        assert client.post("/classify", content=data, headers={**headers, "X-API-Key": key}).status_code == 200
    assert_error(client.get("/v1/model"), 401, "unauthorized")
    assert client.get("/v1/policy", headers={"X-API-Key": KEY_B}).status_code == 200
    assert_error(client.post("/classify/batch", files=[("files", ("a.png", data))]), 401, "unauthorized")
    for open_path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert client.get(open_path).status_code == 200, open_path
    assert metric(client, "garment_sorter_rejections_total", reason="unauthorized") == 4


def test_keyed_metrics(make_client):
    client = make_client(api_keys=KEY_A, metrics_require_key=True)
    assert_error(client.get("/metrics"), 401, "unauthorized")
    assert client.get("/metrics", headers={"X-API-Key": KEY_A}).status_code == 200
    assert client.get("/readyz").status_code == 200
    assert keyed_operations(client) == {*KEYED_ROUTES, "/metrics"}


KEYED_ROUTES = {
    "/classify",
    "/classify/batch",
    "/v1/model",
    "/v1/policy",
    "/v1/reviews",
    "/v1/decisions",
    "/v1/decisions/{decision_id}",
    "/v1/decisions/{decision_id}/photo",
    "/v1/decisions/{decision_id}/review",
    "/v1/shadow/disagreements",
    "/v1/admin/models",
    "/v1/admin/models/{version}/load",
    "/v1/admin/models/{version}/promote",
    "/v1/admin/models/{version}/unload",
    "/v1/admin/rollback",
    "/v1/admin/shadow",
    "/v1/admin/canary",
}


def keyed_operations(client) -> set[str]:
    """Paths whose documented operation needs X-API-Key (security listed, 401 documented)."""
    spec = client.get("/openapi.json").json()
    keyed = set()
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            needs_key = "security" in operation
            assert needs_key == ("401" in operation["responses"]), path
            if needs_key:
                keyed.add(path)
    assert ("securitySchemes" in spec.get("components", {})) == bool(keyed)
    return keyed


def test_docs_show_the_key_only_where_it_is_enforced(client, make_client):
    assert keyed_operations(client) == set()  # no SORTER_API_KEYS: nothing to authorize
    assert keyed_operations(make_client(api_keys=KEY_A)) == KEYED_ROUTES


# --- metrics ------------------------------------------------------------------------------------
def test_metrics_count_requests_rejections_predictions_and_batches(make_client, tf_model, test_set):
    client = make_client()
    images = test_set[0][:5]
    labels = []
    for image in images:
        body = client.post("/classify", content=png(image), headers={"Content-Type": "image/png"}).json()
        labels.append((body["label"], body["bin"]))
    client.post("/classify", content=b"nope", headers={"Content-Type": "image/png"})
    client.post("/classify", content=b"", headers={"Content-Type": "image/png"})
    client.get("/healthz")
    text = client.get("/metrics").text
    got = samples(text)

    def value(metric_name, /, **labels):
        return got.get((metric_name, tuple(sorted(labels.items()))), 0.0)

    assert value("garment_sorter_requests_total", route="/classify", status="200") == 5
    assert value("garment_sorter_requests_total", route="/classify", status="415") == 1
    assert value("garment_sorter_requests_total", route="/classify", status="400") == 1
    assert value("garment_sorter_requests_total", route="/healthz", status="200") == 1
    assert value("garment_sorter_request_duration_seconds_count", route="/classify") == 7
    assert value("garment_sorter_rejections_total", reason="not_an_image") == 1
    assert value("garment_sorter_rejections_total", reason="empty_image") == 1
    for label, bin_code in set(labels):
        assert value("garment_sorter_predictions_total", label=label, bin=bin_code) == labels.count((label, bin_code))
    assert value("garment_sorter_model_info", name=tf_model.name, version=str(tf_model.version)) == 1
    assert value("garment_sorter_batch_size_count") == 5 and value("garment_sorter_batch_size_sum") == 5
    assert value("garment_sorter_queue_wait_seconds_count") == 5
    assert value("garment_sorter_inference_duration_seconds_count") == 5
    assert value("garment_sorter_queue_depth") == 0 and value("garment_sorter_inflight_requests") == 0
    assert value("garment_sorter_queue_capacity") == client.app.state.service.settings.max_queue
    assert value("process_cpu_seconds_total") > 0
    # No label takes per-item values: every label value comes from a small fixed set.
    label_values = {v for (_, labels_), _ in got.items() for _, v in labels_}
    assert not any(v.endswith(".png") or v.startswith("SKU") for v in label_values)


# --- scanner photos: review with reasons, never an error for what a photo shows ---------------------
def test_an_empty_belt_goes_to_review_as_no_garment(client):
    photo = encode(Image.new("RGB", (1600, 1200), (40, 42, 45)), "JPEG", quality=85)
    key = ("garment_sorter_review_reasons_total", (("reason", "no_garment"),))
    before = samples(client.get("/metrics").text)[key]
    response = client.post("/classify", content=photo, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    body = response.json()
    ClassifyResponse.model_validate(body)
    assert body["needs_review"] is True and body["bin"] == "REVIEW"
    assert body["review_reasons"][0] == "no_garment" and body["box"] is None
    assert samples(client.get("/metrics").text)[key] == before + 1


def test_a_garment_on_a_dark_belt_is_found_and_boxed(client, test_set):
    images, labels = test_set
    index = int(np.flatnonzero(labels == 1)[0])  # trousers: all-season, a clear silhouette
    photo = render("dark belt", images[index], seed=3)
    body = client.post("/classify", content=photo, headers={"Content-Type": "image/jpeg"}).json()
    assert body["label"] == "Trouser" and body["review_reasons"] == [] and body["bin"] != "REVIEW"
    box = body["box"]
    # Centred in the 1280x960 frame at 55-75 % of its height.
    assert 0 < box["left"] < 640 < box["right"] < 1280 and 0 < box["top"] < 480 < box["bottom"] < 960
    assert 0.5 * 960 <= box["bottom"] - box["top"] <= 0.8 * 960


def test_review_reasons_are_stable_codes_in_the_schema(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    reasons = schema["Reason"]["enum"]
    assert reasons == ["no_garment", "multiple_items", "cut_off", "low_contrast", "low_confidence", "unfamiliar"]
