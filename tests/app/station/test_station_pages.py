"""The review station's pages and forms without a browser: open mode, sign-in, CSRF, the photo
route's guard, escaping in the HTML."""

from __future__ import annotations

import io
import re

from PIL import Image
from service_helpers import assert_error

REVIEWER = "kim:reviewer:" + "r" * 20
SCANNER = "belt:scanner:" + "s" * 20


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def blank() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 150), (80, 80, 80)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_without_keys_the_page_is_open_and_says_so(make_client):
    client = make_client(audit_rate=0.0)
    client.post("/classify", files={"file": ("a.jpg", blank())}, data={"item_id": "<b>SKU</b>"})
    page = client.get("/review")
    assert page.status_code == 200 and 'id="open-mode"' in page.text
    assert "no API keys are configured" in page.text
    assert "&lt;b&gt;SKU&lt;/b&gt;" in page.text and "<b>SKU</b>" not in page.text  # escaped
    assert "sorter_review" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
    decision_id = re.search(r'data-decision="([^"]+)"', page.text).group(1)
    assert client.get(f"/review/photo/{decision_id}").content == blank()
    forged = client.post(f"/review/{decision_id}/verdict", data={"class_id": "1", "csrf": "x" * 64})
    assert_error(forged, 403, "csrf_failed")
    done = client.post(
        f"/review/{decision_id}/verdict", data={"class_id": "1", "csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == f"/review?last={decision_id}"
    after = client.get(done.headers["location"]).text
    assert 'id="verdict">Trouser → <b>BIN-A</b></p>' in after and 'id="empty"' in after


def test_with_keys_only_a_signed_in_reviewer_gets_past_the_sign_in(make_client):
    client = make_client(api_keys=f"{REVIEWER},{SCANNER}", audit_rate=0.0)
    page = client.get("/review")
    assert 'id="sign-in"' in page.text and 'id="open-mode"' not in page.text
    assert_error(client.get("/review/photo/019ad6f2-0000-7000-8000-000000000000"), 401, "unauthorized")
    refused = client.post("/review/sign-in", data={"key": "s" * 20, "csrf": csrf_of(page.text)})
    assert refused.status_code == 401 and "That key may not review." in refused.text
    signed_in = client.post(
        "/review/sign-in", data={"key": "r" * 20, "csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert signed_in.status_code == 303
    station = client.get("/review")
    assert '<b id="reviewer">kim</b>' in station.text
    assert "r" * 20 not in signed_in.headers["set-cookie"]  # the key never rides in the cookie
    out = client.post("/review/sign-out", data={"csrf": csrf_of(station.text)}, follow_redirects=False)
    assert out.status_code == 303 and 'id="sign-in"' in client.get("/review").text
