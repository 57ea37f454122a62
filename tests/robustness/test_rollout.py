"""Model roll-out with real servers: a version dropped into the model directory goes live after
its warm-up under load; broken versions are refused while the live one answers; promote and roll
back under load; the canary share is the item-id hash's; shadow figures equal a direct comparison
of both versions on the same images."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from pg_cluster import wait_until
from robustness_helpers import MODEL_DIR, Load, metric, png_l, scrape

from app.config import load_settings
from app.inference.tensorflow_model import load_version_dir
from app.policy import load_policy_for
from app.reasons import before_policy
from app.rollout.rollout import canary_share
from bench.photos import load_test_set
from bench.server import Server, start_server, stop_server
from contract.versions import latest

pytestmark = pytest.mark.slow
ADMIN_SECRET = "rollout-admin-secret-0123456789"
ADMIN = {"X-API-Key": ADMIN_SECRET}
SERVED = int(latest(MODEL_DIR).name)  # 9
TWIN = 7  # the held-out twin: other networks, so its answers differ now and then


def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(MODEL_DIR / str(SERVED), root / str(SERVED))
    return root


def serve(root: Path, tmp_path: Path, **env: str) -> Server:
    return start_server(
        {
            "SORTER_MODEL_DIR": str(root),
            "SORTER_DATA_DIR": str(tmp_path / "data"),
            "SORTER_MODEL_POLL_S": "0.5",
            "SORTER_API_KEYS": f"ops:admin:{ADMIN_SECRET}",
            **env,
        }
    )


def versions_since(load: Load, start: int, end: int | None = None) -> Counter[int | None]:
    return Counter(None if a.body is None else a.body["model"]["version"] for a in load.answers[start:end])


def versions_sent_between(load: Load, since: float, until: float = float("inf")) -> set[int | None]:
    """Versions that answered requests sent at or after ``since`` and answered before ``until``
    (time.monotonic()): a request still on its way when a change is made may be routed either side."""
    return {
        None if a.body is None else a.body["model"]["version"]
        for a in load.answers
        if since <= a.sent_at and a.answered_at < until
    }


def live_version(server: Server) -> int:
    return httpx.get(server.url + "/v1/model", headers=ADMIN, timeout=10).json()["version"]


def test_a_new_version_goes_live_under_load_and_broken_ones_are_refused(tmp_path):
    root = model_root(tmp_path)
    server = serve(root, tmp_path)
    try:
        with Load(server, headers=ADMIN) as load:
            assert wait_until(lambda: len(load.answers) >= 100, 60)
            shutil.copytree(MODEL_DIR / str(TWIN), root / "10")  # copied in place, file by file
            assert wait_until(lambda: live_version(server) == 10, 120), server.log()[-2000:]
            switched = len(load.answers)
            assert wait_until(lambda: len(load.answers) >= switched + 200, 60)
        assert set(load.statuses) == {200}  # no answer lost to the swap
        assert set(versions_since(load, 0)) == {SERVED, 10}
        assert versions_since(load, switched + 50) == Counter({10: len(load.answers) - switched - 50})
        model = httpx.get(server.url + "/v1/model", headers=ADMIN, timeout=10).json()
        assert {v["version"]: v["roles"] for v in model["loaded"]} == {SERVED: ["previous"], 10: ["live"]}

        # Broken versions: each refused, the live version answers on.
        truncated = root / "11"
        shutil.copytree(MODEL_DIR / str(SERVED), truncated)
        data_file = next((truncated / "variables").glob("variables.data-*"))
        data_file.write_bytes(data_file.read_bytes()[:1000])
        wrong_classes = root / "12"
        shutil.copytree(MODEL_DIR / str(SERVED), wrong_classes)
        metadata = json.loads((wrong_classes / "metadata.json").read_text())
        metadata["class_names"] = metadata["class_names"][:9]
        (wrong_classes / "metadata.json").write_text(json.dumps(metadata))
        bad_metadata = root / "13"
        shutil.copytree(MODEL_DIR / str(SERVED), bad_metadata)
        (bad_metadata / "metadata.json").write_text('{"name": "fashion-cnn", "version": ')
        assert wait_until(
            lambda: metric(scrape(server), "garment_sorter_model_loads_total", outcome="refused") == 3, 120
        ), server.log()[-3000:]
        assert live_version(server) == 10
        response = httpx.post(
            server.url + "/classify",
            content=png_l(load_test_set()[0][0]),
            headers={**ADMIN, "Content-Type": "image/png"},
        )
        assert response.status_code == 200 and response.json()["model"]["version"] == 10
        assert metric(scrape(server), "garment_sorter_model_loads_total", outcome="loaded") == 1
        log = server.log()
        assert (
            "model version 11 refused" in log
            and "model version 12 refused" in log
            and "model version 13 refused" in log
        )
    finally:
        assert stop_server(server) == 0, server.log()[-3000:]
        server.log_path.unlink(missing_ok=True)


def test_promote_and_roll_back_under_load_canary_and_shadow(tmp_path):
    root = model_root(tmp_path)
    shutil.copytree(MODEL_DIR / str(TWIN), root / "10")  # present at start: not promoted by itself
    server = serve(root, tmp_path, SORTER_MODEL_POLL_S="0")
    admin = httpx.Client(base_url=server.url, headers=ADMIN, timeout=120)
    try:
        assert live_version(server) == 10 or live_version(server) == SERVED
        start_version = live_version(server)
        other = SERVED if start_version == 10 else 10
        # Promote, then roll back, under load.
        with Load(server, headers=ADMIN) as load:
            assert wait_until(lambda: len(load.answers) >= 100, 60)
            assert admin.post(f"/v1/admin/models/{other}/promote").status_code == 200
            promoted, promoted_at = len(load.answers), time.monotonic()
            assert wait_until(lambda: len(load.answers) >= promoted + 150, 60)
            rollback_sent_at = time.monotonic()
            rollback = admin.post("/v1/admin/rollback")
            assert rollback.status_code == 200, rollback.text
            rolled, rolled_at = len(load.answers), time.monotonic()
            assert wait_until(lambda: len(load.answers) >= rolled + 150, 60)
        assert set(load.statuses) == {200}
        # Each change takes effect at once: every request sent after it returned is answered by the new live.
        assert versions_sent_between(load, promoted_at, rollback_sent_at) == {other}
        assert versions_sent_between(load, rolled_at) == {start_version}
        assert admin.post("/v1/admin/rollback").json()["loaded"]  # and forward again: previous is kept
        assert live_version(server) == other
        admin.post("/v1/admin/rollback")
        assert live_version(server) == start_version

        # Canary: exactly the item ids whose hash falls under the fraction go to the candidate.
        assert admin.put("/v1/admin/canary", json={"version": other, "fraction": 0.3}).status_code == 200
        image = png_l(load_test_set()[0][0])
        answered_by = {}
        for n in range(300):
            item_id = f"SKU-{n}"
            response = admin.post("/classify", files={"file": ("a.png", image)}, data={"item_id": item_id})
            answered_by[item_id] = response.json()["model"]["version"]
        expected = {item: other if canary_share(item) < 0.3 else start_version for item in answered_by}
        assert answered_by == expected
        assert 60 <= sum(v == other for v in answered_by.values()) <= 120
        assert admin.delete("/v1/admin/canary").status_code == 200

        # Shadow: the candidate's agreement, measured by the service, equals a direct comparison.
        assert admin.put("/v1/admin/shadow", json={"version": other}).status_code == 200
        chosen = load_test_set()[0][:300]
        image_of = {}
        for index, pixels in enumerate(chosen):  # one at a time with gaps, as a scanner line sends them
            response = admin.post("/classify", content=png_l(pixels), headers={"Content-Type": "image/png"})
            image_of[response.json()["decision_id"]] = index
            time.sleep(0.02)

        def seen() -> float:
            names = ("garment_sorter_shadow_answers_total", "garment_sorter_shadow_dropped_total")
            return sum(v for (name, _), v in scrape(server).items() if name in names)

        assert wait_until(lambda: seen() == len(chosen), 60)
        samples = scrape(server)
        disagreements = admin.get("/v1/shadow/disagreements", params={"limit": 100}).json()["items"]
    finally:
        admin.close()
        assert stop_server(server) == 0, server.log()[-3000:]
        server.log_path.unlink(missing_ok=True)
    with sqlite3.connect(tmp_path / "data" / "decisions.db") as connection:
        rows = connection.execute(
            "SELECT decision_id, class_id, agrees_on_class, agrees_on_bin FROM shadow_decisions"
        ).fetchall()
        masses = dict(connection.execute("SELECT decision_id, season_confidence FROM shadow_decisions").fetchall())
    compared = sorted(image_of[decision_id] for decision_id, *_ in rows)
    dropped = sum(v for (name, _), v in samples.items() if name == "garment_sorter_shadow_dropped_total")
    # Copies run in the gaps between live requests; one that finds no gap within 2 s is dropped.
    assert len(compared) + dropped == len(chosen) and len(compared) >= 200
    measured: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        if name == "garment_sorter_shadow_answers_total":
            measured[f"{dict(labels)['same_class']}/{dict(labels)['same_bin']}"] += int(value)
    direct = direct_comparison(start_version, other, chosen[compared], root)
    assert measured == direct["counts"]
    assert metric(samples, "garment_sorter_shadow_silent_bin_changes_total", candidate=str(other)) == direct["silent"]
    candidate_classes = {image_of[decision_id]: class_id for decision_id, class_id, *_ in rows}
    assert [candidate_classes[i] for i in compared] == direct["candidate_classes"]
    candidate_masses = {image_of[decision_id]: mass for decision_id, mass in masses.items()}
    assert [candidate_masses[i] for i in compared] == pytest.approx(direct["candidate_masses"], abs=1e-6)
    disagreeing = {decision_id for decision_id, _, same_class, same_bin in rows if not (same_class and same_bin)}
    assert {item["decision"]["decision_id"] for item in disagreements} == disagreeing
    assert all(item["shadow"]["candidate_version"] == other for item in disagreements)


def direct_comparison(live: int, candidate: int, images: np.ndarray, root: Path) -> dict:
    """Both versions on the same 28x28 images, outside the service: class and bin agreement."""
    settings = load_settings()
    on = dt.date.today()
    decided = {}
    for version in (live, candidate):
        model = load_version_dir(root / str(version), 64)
        policy = load_policy_for(settings, model.class_names, model.review_threshold)
        decided[version] = []
        for start in range(0, len(images), 64):
            inference = model.infer(images[start : start + 64])
            decided[version] += [
                (int(np.argmax(p)), policy.decide(p, on, before_policy((), bool(u))))
                for p, u in zip(inference.probabilities, inference.unfamiliar, strict=True)
            ]
    counts: Counter[str] = Counter()
    silent = 0
    for (live_class, live_decision), (class_id, decision) in zip(decided[live], decided[candidate], strict=True):
        same_class, same_bin = live_class == class_id, live_decision.bin == decision.bin
        counts[f"{str(same_class).lower()}/{str(same_bin).lower()}"] += 1
        silent += not decision.needs_review and not same_bin
    return {
        "counts": counts,
        "silent": silent,
        "candidate_classes": [c for c, _ in decided[candidate]],
        "candidate_masses": [d.season_mass for _, d in decided[candidate]],
    }
