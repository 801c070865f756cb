"""Camera credentials never leave the publisher, end to end with real parts: a real RTSP server on loopback
(tools/rtsp/serve.py), publisher processes -> Kafka -> consumer process -> inference server -> results topic
+ S3 archive (moto over HTTP). One publisher gets the credentialed URL directly, the other reads it from
Secrets Manager (moto). The credentials (userinfo and query values; the server ignores them) appear in
no log line, no Kafka record, no S3 key, no /metrics or /readyz answer, and the summary and exit log
carry the redacted source."""

import http.client
import json
import os
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from tests.fixtures.pipeline import ROOT, topic_env
from tests.helpers import read_all
from tools.harness.processes import consumer_health_url, consumer_process, free_port, publisher_process

pytestmark = [pytest.mark.broker, pytest.mark.model]

SYSTEM_PYTHON = "/usr/bin/python3"
USER, PASSWORD, TOKEN, QUERY_PASSWORD = "camuser-7f3a", "Pa55:w0rd@Secr3t", "T0ken-XyZ-987", "Qu3ryPa55-41c"
SECRETS = [USER, PASSWORD, TOKEN, QUERY_PASSWORD, "Pa55%3Aw0rd%40Secr3t", "w0rd@Secr3t"]
FRAMES = 12


def rtsp_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return (
        Path(SYSTEM_PYTHON).exists()
        and subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0
    )


@pytest.fixture
def camera():
    if not rtsp_available():
        message = "GStreamer RTSP server not installed: run `make rtsp-deps` (make test does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    server = subprocess.Popen(
        [SYSTEM_PYTHON, str(ROOT / "tools" / "rtsp" / "serve.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "serving" in server.stdout.readline()
        yield port
    finally:
        server.terminate()
        server.wait(10)


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def scrape(url: str) -> str | None:
    """The body (an empty registry answers an empty /metrics), or None when nothing answered in full (a
    publisher that finishes its source exits, and may close a scrape's connection mid-body)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except (OSError, http.client.HTTPException):
        return None


def test_camera_credentials_appear_nowhere_downstream(
    kafka_bootstrap, kafka_settings, topics, inference_url, s3_bucket, s3_endpoint, camera, tmp_path
):
    # The password is percent-encoded in the URL (':' and '@'), as RFC 3986 wants; the query carries a token
    # and a password. The GStreamer test server ignores both.
    url = f"rtsp://{USER}:Pa55%3Aw0rd%40Secr3t@127.0.0.1:{camera}/live?token={TOKEN}&password={QUERY_PASSWORD}"
    redacted = f"rtsp://***@127.0.0.1:{camera}/live?token=***&password=***"
    secret_arn = boto3.client("secretsmanager", endpoint_url=s3_endpoint).create_secret(
        Name=f"vidpipe-stream-{uuid.uuid4().hex[:6]}", SecretString=json.dumps({"source": url})
    )["ARN"]

    env = topic_env(topics)
    consumer = consumer_process(
        kafka_bootstrap,
        inference_url,
        f"s3://{s3_bucket}/archive",
        tmp_path,
        CONSUMER_GROUP_ID=f"creds-{uuid.uuid4().hex[:6]}",
        **env,
    ).start()
    publishers = []
    try:
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        direct_dir, secret_dir = tmp_path / "direct", tmp_path / "secret"
        health = {"direct": free_port(), "secret": free_port()}
        direct = publisher_process(
            kafka_bootstrap,
            url,
            direct_dir,
            [
                "--stream-id",
                "cam-direct",
                "--max-frames",
                str(FRAMES),
                "--summary-file",
                str(direct_dir / "summary.json"),
            ],
            PUBLISHER_HEALTH_PORT=str(health["direct"]),
            **env,
        )
        # The Secrets Manager path: no --source at all, the ARN instead (moto answers on the S3 endpoint's port).
        secret = publisher_process(
            kafka_bootstrap,
            "unused",
            secret_dir,
            [
                "--stream-id",
                "cam-secret",
                "--max-frames",
                str(FRAMES),
                "--summary-file",
                str(secret_dir / "summary.json"),
            ],
            PUBLISHER_HEALTH_PORT=str(health["secret"]),
            PUBLISHER_SOURCE_SECRET_ARN=secret_arn,
            AWS_ENDPOINT_URL_SECRETSMANAGER=s3_endpoint,
            AWS_ENDPOINT_URL_SECRETS_MANAGER=s3_endpoint,
            **env,
        )
        secret.args = [a for a in secret.args if a not in ("--source", "unused")]
        publishers = [direct.start(), secret.start()]

        scraped = []
        deadline = time.monotonic() + 120
        while any(p.running for p in publishers) and time.monotonic() < deadline:
            for name, port in health.items():
                for path in ("/metrics", "/readyz"):
                    if (body := scrape(f"http://127.0.0.1:{port}{path}")) is not None:
                        scraped.append((name, path, body))
            time.sleep(0.2)
        for publisher in publishers:
            assert publisher.process.wait(30) == 0, publisher.log_tail()
        assert {(name, path) for name, path, _ in scraped} >= {
            ("direct", "/metrics"),
            ("secret", "/metrics"),
            ("direct", "/readyz"),
            ("secret", "/readyz"),
        }

        results = read_all(kafka_settings, topics.results, expect=2 * FRAMES, timeout_s=120)
        assert consumer.running, consumer.log_tail()
    finally:
        for publisher in publishers:
            publisher.stop()
        consumer.stop()

    # The summaries and the exit log carry the redacted source.
    for name, publisher in (("direct", publishers[0]), ("secret", publishers[1])):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["source"] == redacted and summary["stream_id"] == f"cam-{name}"
        assert summary["frames_delivered"] == FRAMES
        assert f"of {redacted} as stream cam-{name}" in publisher.log_path.read_text()

    # Every record on every topic: keys, headers, values.
    frames = read_all(kafka_settings, topics.frames, expect=2 * FRAMES, timeout_s=30)
    dead = read_all(kafka_settings, topics.dead_letter, expect=1, timeout_s=3)
    assert len(frames) == 2 * FRAMES and not dead
    assert {json.loads(r.value())["stream_id"] for r in results} == {"cam-direct", "cam-secret"}
    for record in [*frames, *results]:
        searchable = [record.key() or b"", *(v or b"" for _, v in record.headers() or [])]
        if record.topic() == topics.results:
            searchable.append(record.value())
        for blob in searchable:
            assert not leaks(blob.decode("latin-1")), (record.topic(), blob[:200])
        assert not leaks(str(record.headers()))

    # S3: every key (and the archived result documents).
    s3 = boto3.client("s3")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for o in page.get("Contents", [])
    ]
    assert any(k.startswith("archive/frames/cam-direct/") for k in keys)
    assert any(k.startswith("archive/frames/cam-secret/") for k in keys)
    assert not leaks("\n".join(keys))
    for key in (k for k in keys if k.startswith("archive/results/")):
        assert not leaks(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode())

    # Logs and health endpoints.
    for process in [*publishers, consumer]:
        text = process.log_path.read_text(errors="replace")
        assert not leaks(text), (process.name, leaks(text))
    assert "connected to " + redacted in publishers[0].log_path.read_text()
    for name, path, body in scraped:
        assert not leaks(body), (name, path)
