"""Access control of the service: the API key (missing, wrong, in the URL), what stays open, hostile
uploads under a key, the bind rule, TLS, and that neither the key nor a traceback leaks. All traffic
stays on 127.0.0.1."""

import datetime
import ipaddress
import json
import logging
import ssl

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_app import FakePredictor, png, upload, wait_ready

from deploy_helpers import free_port, uvicorn_thread
from fcos.cli import main
from fcos.serve import InsecureBindError, ServeConfig, ServeConfigError, create_app, read_api_key
from fcos.serve.auth import RedactKey
from fcos.serve.config import check_bind
from fcos.serve.server import describe, uvicorn_config

KEY = "k3y-Of-The-Test-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def assert_no_leak(response):
    text = response.text + json.dumps(dict(response.headers))
    assert KEY not in text and "Traceback" not in text and 'File "' not in text


def assert_401(response, message):
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert set(body) == {"detail"} and message in body["detail"] and "\n" not in response.text
    assert_no_leak(response)


@pytest.fixture(scope="module")
def keyed(checkpoint):
    with TestClient(create_app(checkpoint, max_upload_mb=1, api_key=KEY), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def photo(shared_data):
    from deploy_helpers import real_images

    return real_images(shared_data, 2)[1].read_bytes()


def test_missing_wrong_or_other_scheme_key_gets_401(keyed, photo):
    assert_401(upload(keyed, photo), "missing API key")
    assert_401(keyed.post("/predict", files={"file": ("a.jpg", photo)}, headers={"Authorization": "Bearer nope"}),
               "invalid API key")
    assert_401(keyed.post("/predict", files={"file": ("a.jpg", photo)}, headers={"Authorization": f"Basic {KEY}"}),
               "missing API key")
    assert_401(keyed.post("/predict", files={"file": ("a.jpg", photo)}, headers={"Authorization": f"Bearer {KEY}x"}),
               "invalid API key")
    good = keyed.post("/predict", files={"file": ("a.jpg", photo)}, headers=AUTH)
    assert good.status_code == 200 and good.json()["detections"]
    assert_no_leak(good)


def test_key_compared_in_constant_time(keyed, monkeypatch):
    import secrets

    import fcos.serve.auth as auth

    calls = []

    def compare(a, b):
        calls.append((a, b))
        return secrets.compare_digest(a, b)

    monkeypatch.setattr(auth, "secrets", type("Secrets", (), {"compare_digest": staticmethod(compare)}))
    assert keyed.get("/metrics", headers=AUTH).status_code == 200
    assert calls == [(KEY.encode(), KEY.encode())]


def test_key_in_the_url_is_refused_even_when_right(keyed, photo):
    for url in (f"/predict?api_key={KEY}", f"/predict?token={KEY}", f"/predict?conf=0.5&access_token={KEY}"):
        response = keyed.post(url, files={"file": ("a.jpg", photo)}, headers=AUTH)
        assert_401(response, "in the URL is refused")
    assert_401(keyed.get(f"/metrics?key={KEY}"), "in the URL is refused")
    assert keyed.post("/predict?conf=0.5", files={"file": ("a.jpg", photo)}, headers=AUTH).status_code == 200


def test_what_stays_open_without_the_key(keyed):
    health = keyed.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "auth": "api_key"}  # nothing more
    full = keyed.get("/health", headers=AUTH).json()
    assert full["classes"] and full["backend"] == "torch" and full["auth"] == "api_key"
    wait_ready(keyed)
    assert keyed.get("/ready").json() == {"ready": True}
    page = keyed.get("/")
    assert page.status_code == 200 and 'id="key"' in page.text and "localStorage" not in page.text and "sessionStorage" not in page.text
    for path in ("/metrics", "/docs", "/openapi.json", "/no-such-path"):
        assert_401(keyed.get(path), "missing API key")
    assert keyed.get("/metrics", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("not_an_image", 415, "not an image"),
        ("truncated", 400, "truncated"),
        ("one_pixel", 422, "at least 16 px"),
        ("decompression_bomb", 413, "too many pixels"),
        ("too_large", 413, "the limit is 1 MB"),
    ],
)
def test_hostile_uploads_under_a_key_get_their_own_answer(keyed, photo, case, status, message):
    data = {"not_an_image": b"%PDF-1.4 not a picture", "truncated": photo[: len(photo) // 2], "one_pixel": png(1, 1),
            "decompression_bomb": png(20000, 20000, "1"), "too_large": bytes(2 * 1024 * 1024)}[case]
    response = keyed.post("/predict", files={"file": ("x.jpg", data)}, headers=AUTH)
    assert response.status_code == status and message in response.json()["detail"]
    assert_no_leak(response)
    assert_401(upload(keyed, data), "missing API key")  # without the key: refused before the body counts
    assert keyed.post("/predict", files={"file": ("a.jpg", photo)}, headers=AUTH).status_code == 200


def test_unauthenticated_oversized_body_is_refused_unread(keyed):
    response = keyed.post("/predict", content=b"x" * (3 * 1024 * 1024),
                          headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert_401(response, "missing API key")


def test_errors_show_neither_key_nor_traceback():
    class Broken(FakePredictor):
        def __call__(self, image, conf=None):
            if self.calls:
                raise RuntimeError(f"model exploded near {KEY}")
            return super().__call__(image, conf)

    with TestClient(create_app(Broken(0.0), api_key=KEY), raise_server_exceptions=False) as c:
        wait_ready(c)
        response = c.post("/predict", files={"file": ("a.png", png(64, 64))}, headers=AUTH)
        assert response.status_code == 500 and response.json() == {"detail": "internal error"}
        assert_no_leak(response)
        assert response.headers.get("server") is None or KEY not in response.headers["server"]


def test_non_loopback_bind_without_a_key_is_refused():
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(InsecureBindError) as refusal:
            check_bind(ServeConfig(host=host))
        assert "--api-key-file" in str(refusal.value) and "--insecure" in str(refusal.value)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        check_bind(ServeConfig(host=host))
    check_bind(ServeConfig(host="0.0.0.0", api_key=KEY))
    check_bind(ServeConfig(host="0.0.0.0", insecure=True))


def test_cli_refuses_before_loading_or_binding(checkpoint, monkeypatch, capsys, tmp_path):
    import fcos.serve.server as server

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded or the server started")

    monkeypatch.setattr(server, "create_app", never)
    monkeypatch.delenv("FCOS_API_KEY", raising=False)
    assert main(["serve", "--weights", str(checkpoint), "--host", "0.0.0.0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without an API key" in err and "--insecure" in err
    short = tmp_path / "short.key"
    short.write_text("abc\n")
    assert main(["serve", "--weights", str(checkpoint), "--api-key-file", str(short), "--device", "cpu"]) == 2
    assert "at least 16" in capsys.readouterr().err


def test_key_sources(tmp_path):
    path = tmp_path / "key"
    path.write_text(f"  {KEY}\n")
    assert read_api_key(key_file=path, environ={}) == (KEY, f"--api-key-file {path}")
    assert read_api_key(environ={"FCOS_API_KEY": KEY}) == (KEY, "$FCOS_API_KEY")
    assert read_api_key(KEY, environ={"FCOS_API_KEY": "other-key-0123456789"})[0] == KEY
    assert read_api_key(environ={}) == (None, None)
    for bad in ("short", "has space in the middle 0123456789", "é" * 20):
        with pytest.raises(ServeConfigError) as refusal:
            read_api_key(bad, environ={})
        assert bad not in str(refusal.value)
    with pytest.raises(ServeConfigError):
        read_api_key(KEY, path, environ={})


def test_key_stays_out_of_repr_and_logs():
    config = ServeConfig(host="0.0.0.0", api_key=KEY)
    assert KEY not in repr(config) and KEY not in describe(config) and "API key required" in describe(config)
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4:5", "GET", f"/metrics?api_key={KEY}&conf=0.5", "1.1", 401), None)
    RedactKey(KEY).filter(record)
    line = record.getMessage()
    assert KEY not in line and "conf=0.5" in line and "api_key=" in line
    other = logging.LogRecord("x", logging.INFO, "", 0, f"Bearer {KEY}", None, None)
    RedactKey(KEY).filter(other)
    assert KEY not in other.getMessage()


def self_signed(folder):
    x509 = pytest.importorskip("cryptography.x509", reason="the cryptography package makes the test certificate")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_with_a_key(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    config = ServeConfig(port=port, api_key=KEY, tls_cert=cert, tls_key=key)
    with uvicorn_thread(uvicorn_config(create_app(FakePredictor(0.0), config), config, log_level="warning")):
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=cert),
                          timeout=10) as client:
            assert client.get("/health").json() == {"status": "ok", "auth": "api_key"}
            assert client.get("/metrics").status_code == 401
            response = client.post("/predict", files={"file": ("a.png", png(64, 64))}, headers=AUTH)
            assert response.status_code == 200 and np.allclose(response.json()["detections"][0]["box"], [1, 2, 30, 40])
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()


def test_tls_needs_both_files(tmp_path):
    with pytest.raises(ServeConfigError, match="both"):
        ServeConfig(tls_cert=str(tmp_path / "c.pem"))
    with pytest.raises(ServeConfigError, match="not found"):
        ServeConfig(tls_cert=str(tmp_path / "c.pem"), tls_key=str(tmp_path / "k.pem"))
    # files that exist but are not a PEM pair: named before the model loads, not ssl's traceback at start-up
    cert, key = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other_cert, _ = self_signed(tmp_path / "other")
    (tmp_path / "notes.txt").write_text("not a certificate")
    for pair, reason in (((str(tmp_path / "notes.txt"), key), "PEM"), ((other_cert, key), "KEY_VALUES_MISMATCH")):
        with pytest.raises(ServeConfigError, match=rf"--tls-cert {pair[0]} and --tls-key {pair[1]} are not a PEM "
                                                   rf"certificate and its private key \(.*{reason}"):
            ServeConfig(tls_cert=pair[0], tls_key=pair[1])
    assert ServeConfig(tls_cert=cert, tls_key=key).scheme == "https"
