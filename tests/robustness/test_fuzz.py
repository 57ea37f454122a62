"""Hostile bodies against a real server and the real model: >= 2,000 generated bodies to
POST /classify and POST /classify/batch. Each answer is exactly what the contract says for that
body (200 for a valid odd image, else the 4xx and code), never a 5xx; the server stays ready,
logs no unhandled error, and its memory stays bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

import hostile as H
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from robustness_helpers import API_KEY, CLASS_NAMES, metric, scrape

from app.api.schemas import BatchResponse, ClassifyResponse
from bench.photos import load_test_set
from bench.server import Server, rss_bytes

CLASSIFY_EXAMPLES = 1600
BATCH_EXAMPLES = 150
MIN_BODIES = {"classify": 1500, "batch": 500}
MAX_BATCH_FILES = 256  # SORTER_MAX_BATCH_FILES default
RSS_GROWTH_LIMIT_BYTES = 150 * 2**20  # after - before, across the whole fuzz run
FUZZ_SETTINGS = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck), print_blob=True
)
RESPONSE_KEYS = set(ClassifyResponse.model_fields)
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the oracle opens bombs


# --- what the fuzzer sends ----------------------------------------------------------------------
@dataclass
class Payload:
    """One image-ish body and what the service owes for it."""

    kind: str
    data: bytes
    expect: tuple[int, str | None]


def payload(kind: str, data: bytes) -> Payload:
    return Payload(kind, data, H.verdict(data))


sizes = st.integers(1, 64)
seeds = st.integers(0, 2**16)
formats = st.sampled_from(H.FORMATS)


@st.composite
def random_bytes(draw) -> Payload:
    return payload("random bytes", draw(st.binary(min_size=1, max_size=3000)))


@st.composite
def truncated(draw) -> Payload:
    fmt = draw(formats)
    data = H.encode(H.photo(draw(sizes), draw(sizes), draw(seeds)), fmt)
    return payload(f"truncated {fmt}", data[: draw(st.integers(1, len(data) - 1))])


@st.composite
def foreign_format(draw) -> Payload:
    fmt = draw(st.sampled_from(H.FOREIGN_FORMATS))
    result = payload(f"{fmt} image", H.foreign(fmt, draw(st.integers(1, 64)), draw(st.integers(1, 64)), draw(seeds)))
    assert result.expect == (415, "unsupported_image_format"), result.expect
    return result


@st.composite
def tiny(draw) -> Payload:
    fmt = draw(formats)
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "1", "P"]))
    width, height = draw(st.sampled_from([(1, 1), (1, 2), (2, 1)]))
    return payload(f"{width}x{height} {mode} {fmt}", H.encode(H.photo(width, height, draw(seeds), mode), fmt))


@st.composite
def extreme_aspect(draw) -> Payload:
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]))
    short, long = draw(st.integers(1, 3)), draw(st.integers(1000, 16000))
    width, height = (short, long) if draw(st.booleans()) else (long, short)
    return payload(f"{width}x{height} {fmt}", H.encode(H.photo(width, height, draw(seeds)), fmt))


@st.composite
def decompression_bomb(draw) -> Payload:
    fmt = draw(st.sampled_from(["PNG", "GIF", "BMP", "JPEG", "TIFF"]))
    width = draw(st.integers(6200, 65535))
    height = draw(st.integers(H.MAX_PIXELS // width + 1, 65535))
    data = H.bomb(fmt, width, height)
    result = payload(f"bomb {width}x{height} {fmt}", data)
    assert result.expect == (413, "image_too_large") and len(data) < 1000
    return result


@st.composite
def twenty_k_bomb(draw) -> Payload:
    fmt = draw(st.sampled_from(["PNG", "GIF", "BMP", "JPEG", "TIFF", "WEBP"]))
    result = payload(f"bomb 20000x20000 {fmt}", H.bomb(fmt, 20000, 20000))
    assert result.expect == (413, "image_too_large")
    return result


@st.composite
def animated(draw) -> Payload:
    fmt, frames = draw(st.sampled_from(["GIF", "PNG", "WEBP"])), draw(st.sampled_from([120, 300, 600]))
    result = payload(f"animated {fmt}, {frames} frames", H.animation(fmt, frames))
    assert result.expect == (200, None)
    return result


@st.composite
def odd_mode(draw) -> Payload:
    kind = draw(st.sampled_from(H.ODD_MODES))
    result = payload(kind, H.odd_mode(kind, draw(st.integers(2, 90)), draw(st.integers(2, 90)), draw(seeds)))
    # Every odd mode is a valid image, except the float TIFF, which holds NaN and infinities.
    assert result.expect == ((415, "corrupt_image") if kind == "float_tiff" else (200, None))
    return result


@st.composite
def exif_rotated(draw) -> Payload:
    fmt = draw(st.sampled_from(["JPEG", "PNG", "TIFF", "WEBP"]))
    orientation = draw(st.one_of(st.integers(1, 8), st.sampled_from([0, 9, 255, 65535])))
    data = H.exif_rotated(fmt, orientation, draw(st.integers(2, 80)), draw(st.integers(2, 80)), draw(seeds))
    return payload(f"EXIF orientation {orientation} {fmt}", data)


@st.composite
def polyglot(draw) -> Payload:
    image = H.encode(H.photo(draw(sizes), draw(sizes), draw(seeds)), draw(formats))
    shape = draw(st.sampled_from(["trailer", "prefix", "gifar"]))
    if shape == "trailer":
        name = draw(st.sampled_from(sorted(H.TRAILERS)))
        return payload(f"image + {name}", image + H.TRAILERS[name])
    if shape == "prefix":
        name = draw(st.sampled_from(sorted(H.PREFIXES)))
        result = payload(f"{name} + image", H.PREFIXES[name] + image)
        assert result.expect[0] == 415
        return result
    return payload("GIF/JavaScript", H.gifar(draw(st.binary(max_size=64))))


images = st.one_of(
    random_bytes(),
    truncated(),
    foreign_format(),
    tiny(),
    extreme_aspect(),
    decompression_bomb(),
    twenty_k_bomb(),
    animated(),
    odd_mode(),
    exif_rotated(),
    polyglot(),
    st.just(Payload("zero bytes", b"", (400, "empty_image"))),
)

ODD_FILENAMES = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters='"\r\n\\'), max_size=60),
    st.sampled_from(
        [
            "",
            "../../etc/passwd",
            "..\\..\\boot.ini",
            "con.png",
            "a b;c=d.png",
            "\u202egnp.exe",
            "😀" * 30,
            "x" * 200,
            "nul\x00byte.png",
            ".png",
            "-",
            "%00.png",
            "$(reboot).png",
        ]
    ),
)


# --- the wire -----------------------------------------------------------------------------------
BOUNDARY = "fuzzboundary7MA4YWxkTrZu0gW"


def part(name: str, value: bytes, filename: str | None = None, content_type: str | None = None) -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = disposition + (f"\r\nContent-Type: {content_type}" if content_type else "")
    return f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode() + value + b"\r\n"


def multipart(parts: list[bytes]) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass
class Request:
    path: str
    body: bytes
    headers: dict[str, str]
    expect: tuple[int, str | None]
    kind: str
    item_id: str | None = None
    items: list[tuple[Payload, str]] = field(default_factory=list)  # batch: (payload, filename)


def header_line_fits(filename: str, name: str = "file") -> bool:
    line = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"'
    return len(line.encode()) <= H.MULTIPART_HEADER_LINE_LIMIT - 64  # clear of the exact edge


@st.composite
def classify_requests(draw) -> Request:
    body = draw(images)
    way = draw(st.sampled_from(["raw", "raw", "multipart", "multipart", "bad type", "framing", "headers"]))
    headers = {"X-API-Key": API_KEY}
    if way == "raw":
        content_type = draw(
            st.sampled_from(
                [
                    "image/jpeg",
                    "image/png",
                    "IMAGE/WEBP",
                    "image/gif; charset=x",
                    "image/bmp",
                    "image/tiff",
                    "image/svg+xml",
                    "image/x-anything",
                ]
            )
        )
        return Request(
            "/classify", body.data, {**headers, "Content-Type": content_type}, body.expect, f"raw {body.kind}"
        )
    if way == "multipart":
        filename = draw(ODD_FILENAMES)
        item_id = draw(st.one_of(st.none(), st.text(max_size=140)))
        parts = [part("file", body.data, filename, draw(st.sampled_from([None, "image/png", "text/html"])))]
        if item_id is not None:
            parts.append(part("item_id", item_id.encode()))
        expect = body.expect
        if not header_line_fits(filename):
            expect = (400, "malformed_multipart")
        elif expect[0] == 400:  # empty image: refused before the item_id is looked at
            pass
        elif (
            item_id is not None
            and item_id != ""
            and (len(item_id) > 128 or any(0 <= ord(c) < 32 or 127 <= ord(c) < 160 for c in item_id))
        ):
            expect = (422, "validation_error")
        return Request(
            "/classify",
            multipart(parts),
            {**headers, "Content-Type": MULTIPART},
            expect,
            f"multipart {body.kind}",
            item_id=item_id or None,
        )
    if way == "bad type":
        content_type = draw(
            st.sampled_from(
                [
                    None,
                    "",
                    "text/plain",
                    "application/octet-stream",
                    "application/json",
                    "image",
                    "imagepng",
                    "application/x-www-form-urlencoded",
                ]
            )
        )
        if content_type is not None:
            headers["Content-Type"] = content_type
        return Request(
            "/classify", body.data, headers, (415, "unsupported_media_type"), f"content type {content_type!r}"
        )
    if way == "framing":
        tiny_png = H.encode(H.photo(1, 1, 0), "PNG")  # the framing is refused whatever the image
        shape = draw(st.sampled_from(["many files", "many fields", "wrong field", "no boundary", "cut short"]))
        if shape == "many files":
            count = draw(st.integers(2, 400))
            data = multipart([part("file", tiny_png, f"{i}.png") for i in range(count)])
            return Request(
                "/classify", data, {**headers, "Content-Type": MULTIPART}, (413, "too_many_files"), f"{count} files"
            )
        if shape == "many fields":
            count = draw(st.integers(10, 400))
            data = multipart([part(f"field{i}", b"x") for i in range(count)] + [part("file", tiny_png, "a.png")])
            return Request(
                "/classify",
                data,
                {**headers, "Content-Type": MULTIPART},
                (400, "malformed_multipart"),
                f"{count} fields",
            )
        if shape == "wrong field":
            data = multipart([part("image", body.data, "a.png")])
            return Request(
                "/classify", data, {**headers, "Content-Type": MULTIPART}, (422, "missing_field"), "no 'file' field"
            )
        if shape == "no boundary":
            return Request(
                "/classify",
                body.data,
                {**headers, "Content-Type": "multipart/form-data"},
                (400, "malformed_multipart"),
                "multipart without boundary",
            )
        # An upload cut short: the closing delimiter (and maybe more) never came.
        whole = multipart([part("file", body.data, "a.png")])
        cut = draw(st.integers(len(BOUNDARY) + 4, len(whole) - 3))
        return Request(
            "/classify",
            whole[:cut],
            {**headers, "Content-Type": MULTIPART},
            (400, "malformed_multipart"),
            "multipart cut short",
        )
    # headers: X-Item-Id of every length, hundreds of extra headers, or a head past the limit
    shape = draw(st.sampled_from(["item id", "many headers", "oversized"]))
    if shape == "oversized":
        size = draw(st.integers(40_000, 2_000_000))  # the limit is 32 KiB
        where = draw(st.sampled_from(["one header", "many headers", "url"]))
        path = "/classify"
        if where == "one header":
            headers["X-Junk"] = "j" * size
        elif where == "many headers":
            headers.update({f"X-Junk-{i}": "j" * 1000 for i in range(size // 1000)})
        else:
            path += "?pad=" + "p" * size
        headers["Content-Type"] = "image/png"
        return Request(path, body.data, headers, (431, "headers_too_large"), f"{size // 1000} kB head in {where}")
    headers["Content-Type"] = "image/png"
    if shape == "item id":
        alphabet = st.characters(min_codepoint=0, max_codepoint=255, exclude_characters="\r\n\t")
        item_id = draw(st.text(alphabet=alphabet, min_size=1, max_size=300)).strip(" ") or "x"  # HTTP trims spaces
        headers["X-Item-Id"] = item_id
        expect = body.expect
        if any(ord(c) < 32 or ord(c) == 127 for c in item_id):  # not a valid HTTP field value at all
            expect = (400, "malformed_request")
        elif expect[0] != 400 and (len(item_id) > 128 or any(127 <= ord(c) < 160 for c in item_id)):
            expect = (422, "validation_error")
        return Request("/classify", body.data, headers, expect, f"X-Item-Id {len(item_id)} chars", item_id=item_id)
    count = draw(st.integers(100, 400))
    headers.update({f"X-Fuzz-{i}": "v" * draw(st.integers(1, 40)) for i in range(count)})
    return Request("/classify", body.data, headers, body.expect, f"{count} extra headers")


@st.composite
def batch_requests(draw) -> Request:
    if draw(st.integers(0, 9)) == 0:  # hundreds of parts: up to the limit all answered, past it 413
        count = draw(st.integers(200, 400))
        tiny_png = H.encode(H.photo(2, 2, 0), "PNG")
        items = [(Payload("tiny PNG", tiny_png, (200, None)), f"{i}.png") for i in range(count)]
        if count > MAX_BATCH_FILES:
            data = multipart([part("files", p.data, name) for p, name in items])
            return Request(
                "/classify/batch",
                data,
                {"X-API-Key": API_KEY, "Content-Type": MULTIPART},
                (413, "too_many_files"),
                f"batch of {count} files",
            )
    else:
        items = draw(
            st.lists(
                st.tuples(images, ODD_FILENAMES.filter(lambda f: header_line_fits(f, "files"))), min_size=1, max_size=12
            )
        )
    parts = [part("files", payload.data, filename) for payload, filename in items]
    return Request(
        "/classify/batch",
        multipart(parts),
        {"X-API-Key": API_KEY, "Content-Type": MULTIPART},
        (200, None),
        f"batch of {len(items)}",
        items=items,
    )


# --- sending and checking -----------------------------------------------------------------------
class Wire:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def send(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        if request.expect[0] == 431:
            return self.send_refused(request)
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.connection.putrequest("POST", request.path, skip_accept_encoding=True)
                for name, value in request.headers.items():
                    self.connection.putheader(name, value.encode("latin-1"))
                self.connection.putheader("Content-Length", str(len(request.body)))
                self.connection.endheaders(request.body)
                response = self.connection.getresponse()
                body = response.read()
                headers = {k.lower(): v for k, v in response.getheaders()}
                if headers.get("connection", "").lower() == "close":
                    self.close()
                return response.status, headers, body
            except (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def send_refused(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        """A request whose head the server refuses mid-stream: sent on its own connection, and
        the answer read even if the server stopped reading before the end."""
        lines = [f"POST {request.path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(request.body)}"]
        lines += [f"{name}: {value}" for name, value in request.headers.items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(raw)
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def check_result(result: dict, item_id: str | None) -> None:
    ClassifyResponse.model_validate(result)
    assert set(result) == RESPONSE_KEYS
    assert result["label"] == CLASS_NAMES[result["class_id"]]
    assert next(entry["class_id"] for entry in result["top_k"]) == result["class_id"]
    assert len(result["top_k"]) == 3 and result["confidence"] == result["top_k"][0]["probability"]
    assert result["item_id"] == item_id


def check_error(body: dict, expect: tuple[int, str | None]) -> None:
    assert set(body) == {"detail", "code", "request_id"} and isinstance(body["detail"], str) and body["detail"]
    assert body["code"] == expect[1]


@dataclass
class Tally:
    bodies: Counter = field(default_factory=Counter)  # per test
    statuses: Counter = field(default_factory=Counter)  # (status, code) over every body
    kinds: Counter = field(default_factory=Counter)
    slowest: tuple[float, str] = (0.0, "")


@pytest.fixture(scope="module")
def tally() -> Tally:
    return Tally()


@pytest.fixture(scope="module")
def fuzzed(server: Server, tally: Tally):
    """RSS, 5xx count and log before; after the module: the server is ready, answers a real image,
    counted no 5xx and logged no unhandled error; RSS growth is bounded. Figures are printed."""
    before = scrape(server)
    rss_before = rss_bytes(server.process.pid)
    log_offset = len(server.log())
    yield Wire(server.port)
    rss_after = rss_bytes(server.process.pid)
    after = scrape(server)
    print(
        f"\nfuzz: {sum(tally.bodies.values())} bodies ({dict(tally.bodies)}); RSS {rss_before / 2**20:.0f} MiB before, "
        f"{rss_after / 2**20:.0f} MiB after; slowest answer {tally.slowest[0] * 1000:.0f} ms ({tally.slowest[1]})"
    )
    print("fuzz answers:", dict(sorted(tally.statuses.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))))
    print("fuzz kinds:", len(tally.kinds), "distinct")
    server_errors = {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0] == "garment_sorter_requests_total" and dict(key[1])["status"].startswith("5")
    }
    assert not any(server_errors.values()), server_errors
    # Every refusal is counted once under its code, on the server as on the client.
    for (status, code), count in tally.statuses.items():
        if status != 200:
            counted = metric(after, "garment_sorter_rejections_total", reason=code)
            counted -= metric(before, "garment_sorter_rejections_total", reason=code)
            assert counted == count, (code, counted, count)
    assert metric(after, "garment_sorter_ready") == 1
    log = server.log()[log_offset:]
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_BYTES


def record(tally: Tally, test: str, kind: str, answer: tuple[int, str | None], elapsed_s: float) -> None:
    tally.bodies[test] += 1
    tally.statuses[answer] += 1
    tally.kinds[kind.split(" ")[0]] += 1
    if elapsed_s > tally.slowest[0]:
        tally.slowest = (elapsed_s, kind)


@given(request=classify_requests())
@settings(FUZZ_SETTINGS, max_examples=CLASSIFY_EXAMPLES)
def test_classify_answers_every_hostile_body_exactly(fuzzed: Wire, tally: Tally, request: Request) -> None:
    started = time.perf_counter()
    status, headers, raw = fuzzed.send(request)
    elapsed = time.perf_counter() - started
    assert headers.get("content-type") == "application/json", (request.kind, request.headers, status, raw[:300])
    body = json.loads(raw)
    assert (status, body.get("code")) == request.expect, (request.kind, status, body)
    if status == 200:
        check_result(body, request.item_id)
    else:
        check_error(body, request.expect)
    record(tally, "classify", request.kind, request.expect, elapsed)


@given(request=batch_requests())
@settings(FUZZ_SETTINGS, max_examples=BATCH_EXAMPLES)
def test_batch_answers_every_item_exactly(fuzzed: Wire, tally: Tally, request: Request) -> None:
    started = time.perf_counter()
    status, _, raw = fuzzed.send(request)
    elapsed = time.perf_counter() - started
    body = json.loads(raw)
    if request.expect[0] != 200:  # refused as a whole: none of its files was looked at
        assert (status, body) == (
            413,
            {
                "detail": f"Too many files; at most {MAX_BATCH_FILES} per request.",
                "code": "too_many_files",
                "request_id": body.get("request_id"),
            },
        )
        assert len(body["request_id"]) == 32
        record(tally, "batch", request.kind, request.expect, elapsed)
        return
    assert status == 200, raw[:500]
    BatchResponse.model_validate(body)
    assert body["count"] == len(request.items) == len(body["results"])
    assert body["failed"] == sum(1 for payload, _ in request.items if payload.expect[0] != 200)
    for index, (entry, (payload, filename)) in enumerate(zip(body["results"], request.items, strict=True)):
        assert entry["index"] == index and entry["filename"] == filename
        if payload.expect[0] == 200:
            assert entry["error"] is None, (payload.kind, entry)
            check_result(entry["result"], None)
        else:
            assert entry["result"] is None and entry["error"]["status"] == payload.expect[0], (payload.kind, entry)
            assert {k: v for k, v in entry["error"].items() if k != "status"}.keys() == {"detail", "code"}
            assert entry["error"]["code"] == payload.expect[1], (payload.kind, entry)
        record(tally, "batch", f"batch item {payload.kind}", payload.expect, elapsed)


def test_enough_bodies(tally: Tally) -> None:
    """Runs after the two fuzz tests (module order): they posted what the issue asks."""
    assert tally.bodies["classify"] >= MIN_BODIES["classify"], tally.bodies
    assert tally.bodies["batch"] >= MIN_BODIES["batch"], tally.bodies
    assert sum(tally.bodies.values()) >= 2000


# Pillow's exif_transpose applies these per Orientation value; storing an upright image through
# the inverse makes a file whose correct reading is the upright image again.
_INVERSE_OF_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def test_exif_orientation_is_applied_before_classifying(server: Server) -> None:
    """Each of the eight orientations, stored sideways or mirrored with its EXIF tag (lossless PNG),
    is answered exactly like the upright image: same class and same probabilities."""
    images, _ = load_test_set()
    upright = Image.fromarray(images[1], "L")  # a dataset image: passes through preprocessing bit-exact
    with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY, "Content-Type": "image/png"}) as client:
        expected = client.post("/classify", content=H.encode(upright, "PNG")).json()["top_k"]
        for orientation, inverse in _INVERSE_OF_ORIENTATION.items():
            exif = Image.Exif()
            exif[0x0112] = orientation
            stored = H.encode(upright.transpose(inverse), "PNG", exif=exif.tobytes())
            answer = client.post("/classify", content=stored).json()
            assert answer["top_k"] == expected, orientation
