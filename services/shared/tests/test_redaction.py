"""Camera credentials never leave the publisher: the one redaction rule, default stream ids that never
come from userinfo, query strings or path parameters, the contract's stream-id rule at start-up, and the
source read from a mounted file or Secrets Manager."""

import json
import os
import subprocess
import sys

import pytest

from frame_publisher.__main__ import resolve_source, resolve_stream_id
from frame_publisher.settings import PublisherSettings
from frame_publisher.source_secret import SourceSecretError, read_source_file, read_source_secret
from frame_publisher.sources import default_stream_id
from vidpipe.redact import Redactor, redact_url, url_secrets


@pytest.mark.parametrize(
    "url, expected",
    [
        # userinfo
        ("rtsp://admin:secret@cam.internal", "rtsp://***@cam.internal"),
        ("rtsp://admin:secret@cam.internal:554/stream1", "rtsp://***@cam.internal:554/stream1"),
        ("rtsp://admin@cam/live", "rtsp://***@cam/live"),
        ("RTSPS://admin:secret@10.0.0.7:322/a/b", "RTSPS://***@10.0.0.7:322/a/b"),
        # a password with '@' or ':' (unencoded), or percent-encoded
        ("rtsp://admin:p@ss@cam:554/s", "rtsp://***@cam:554/s"),
        ("rtsp://admin:pa:ss:w@cam/s", "rtsp://***@cam/s"),
        ("rtsp://ad%40min:p%40ss%3Aw@cam/s", "rtsp://***@cam/s"),
        # a password with '/', '?' or '#' (unencoded): hidden, even at the cost of the host
        ("rtsp://admin:pa/ss@cam/s", "rtsp://***@cam/s"),
        ("rtsp://admin:pa?ss@cam/s", "rtsp://***/***"),
        ("rtsp://admin:pa#ss@cam/s", "rtsp://***/***"),
        ("rtsp://admin:secret", "rtsp://***"),
        # query tokens
        ("rtsp://cam/live?token=abc123", "rtsp://cam/live?token=***"),
        ("http://cam/video.mjpg?user=admin&pass=secret", "http://cam/video.mjpg?user=***&pass=***"),
        ("rtsp://cam/live?channel=1&password=secret", "rtsp://cam/live?channel=***&password=***"),
        ("rtsp://cam/live?abc123", "rtsp://cam/live?***"),
        ("rtsp://u:p@cam:8554/live?token=t#frag", "rtsp://***@cam:8554/live?token=***#***"),
        ("rtsp://[::1]:8554/live?token=t", "rtsp://[::1]:8554/live?token=***"),
        # credentials in the path: DVR parameters separated by '_', '&', ';' or '/' (a password may hold '_')
        (
            "rtsp://192.168.1.10:554/user=admin_password=tlJwpbo6_channel=1_stream=0.sdp?real_stream",
            "rtsp://192.168.1.10:554/user=***_password=***_channel=***_stream=***?***",
        ),
        (
            "rtsp://10.0.0.5:554/user=admin&password=my_pass_1&channel=1&stream=0.sdp?",
            "rtsp://10.0.0.5:554/user=***&password=***&channel=***&stream=***?",
        ),
        ("rtsp://cam/;user=admin;pwd=s3cret/live", "rtsp://cam/;user=***;pwd=***/live"),
        ("rtsp://cam:554/live/token=abc123/stream", "rtsp://cam:554/live/token=***/stream"),
        ("rtsp://cam/user=admin/passwd=se_cr_et/ch1", "rtsp://cam/user=***/passwd=***/ch1"),
        ("rtsp://cam/Auth=YWRtaW46cGFzcw==/live", "rtsp://cam/Auth=***/live"),
        ("http://cam/api_key=k3y-123/mjpeg", "http://cam/api_key=***/mjpeg"),
        # real cameras' documented forms: Hikvision, Dahua, Axis, Reolink, Foscam, generic HTTP snapshots
        (
            "rtsp://admin:Hik12345@192.168.1.64:554/Streaming/Channels/101",
            "rtsp://***@192.168.1.64:554/Streaming/Channels/101",
        ),
        (
            "rtsp://192.168.1.64:554/ISAPI/Streaming/channels/101?auth=YWRtaW46SGlrMTIzNDU",
            "rtsp://192.168.1.64:554/ISAPI/Streaming/channels/101?auth=***",
        ),
        (
            "rtsp://admin:Dahua123@10.7.6.67:554/cam/realmonitor?channel=1&subtype=0",
            "rtsp://***@10.7.6.67:554/cam/realmonitor?channel=***&subtype=***",
        ),
        (
            "rtsp://root:axisPass@192.168.0.90/axis-media/media.amp?videocodec=h264",
            "rtsp://***@192.168.0.90/axis-media/media.amp?videocodec=***",
        ),
        (
            "http://192.168.0.90/axis-cgi/mjpg/video.cgi?user=root&password=axisPass",
            "http://192.168.0.90/axis-cgi/mjpg/video.cgi?user=***&password=***",
        ),
        ("rtsp://admin:Reo-link1@10.1.1.9:554//h264Preview_01_main", "rtsp://***@10.1.1.9:554//h264Preview_01_main"),
        (
            "http://10.1.1.9/cgi-bin/api.cgi?cmd=Snap&channel=0&user=admin&password=Reo-link1",
            "http://10.1.1.9/cgi-bin/api.cgi?cmd=***&channel=***&user=***&password=***",
        ),
        (
            "http://10.1.1.8:88/cgi-bin/CGIStream.cgi?cmd=GetMJStream&usr=admin&pwd=fos-cam",
            "http://10.1.1.8:88/cgi-bin/CGIStream.cgi?cmd=***&usr=***&pwd=***",
        ),
        # nothing to hide, or not a URL at all
        ("rtsp://cam.internal:554/stream1", "rtsp://cam.internal:554/stream1"),
        ("udp://239.0.0.1:5000", "udp://239.0.0.1:5000"),
        (".cache/media/bikes.mp4", ".cache/media/bikes.mp4"),
        ("/data/admin:secret@x/clip.mp4", "/data/admin:secret@x/clip.mp4"),
        ("0", "0"),
        ("webcam:1", "webcam:1"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redactor_scrubs_urls_and_the_sources_secrets_in_free_text():
    source = "rtsp://admin:p%40ss-w0rd@cam:554/live?token=tok-123&user=viewer"
    redact = Redactor(source)
    text = (
        f"[ WARN] trying capture filename='{source}' ...; pass p@ss-w0rd / p%40ss-w0rd, token tok-123, "
        "other rtsp://x:y@h/p?k=v"
    )
    out = redact(text)
    for secret in ("p@ss-w0rd", "p%40ss-w0rd", "tok-123", "viewer", "x:y"):
        assert secret not in out, out
    assert "filename='rtsp://***@cam:554/live?token=***&user=***'" in out
    assert Redactor("rtsp://cam/live").needed is False and Redactor(".cache/x.mp4").needed is False
    assert url_secrets("rtsp://a:b@c/d?k=xy") == set(), "fragments under 4 characters are only hidden inside URLs"


def test_native_output_on_the_descriptors_is_scrubbed(tmp_path):
    """OpenCV prints the capture URL itself with OPENCV_VIDEOIO_DEBUG=1: the descriptors are scrubbed."""
    script = (
        "import cv2, sys\n"
        "from vidpipe.redact import Redactor, StderrScrubber\n"
        "url = 'rtsp://admin:s3cret-pw@127.0.0.1:9/live?token=tok-abc'\n"
        "scrubber = StderrScrubber(Redactor(url)).start()\n"
        "cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 1000])\n"
        "print('python', url); print('err', url, file=sys.stderr)\n"
        "scrubber.stop()\n"
        "print('after stop')\n"
    )
    env = {**os.environ, "OPENCV_VIDEOIO_DEBUG": "1", "OPENCV_LOG_LEVEL": "DEBUG"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "filename='rtsp://***@127.0.0.1:9/live?token=***'" in output, "OpenCV's own line is there, redacted"
    assert "s3cret" not in output and "tok-abc" not in output
    assert "python rtsp://***@127.0.0.1:9/live?token=***" in done.stdout and "after stop" in done.stdout


@pytest.mark.parametrize(
    "source, expected",
    [
        ("rtsp://admin:secret@cam.internal", "cam.internal"),
        ("rtsp://admin:secret@cam.internal/", "cam.internal"),
        ("rtsp://cam.internal?token=secret", "cam.internal"),
        ("rtsp://admin:secret@cam.internal:554/stream1?token=x", "cam.internal:554/stream1"),  # invalid: asks for one
        ("rtsp://admin:pa?ss@cam/x", "***/***"),
        (".cache/media/bikes.mp4", "bikes"),
        ("webcam:2", "webcam2"),
        ("0", "webcam0"),
    ],
)
def test_default_stream_id_never_uses_userinfo_or_query(source, expected):
    assert default_stream_id(source) == expected


def test_default_stream_id_of_a_folder(tmp_path):
    folder = tmp_path / "frames-a"
    folder.mkdir()
    assert default_stream_id(str(folder)) == "frames-a"


def _settings(**values) -> PublisherSettings:
    return PublisherSettings(_env_file=None, **values)


def test_stream_id_rule_is_the_contracts():
    for bad in ("cam/1", "..", ".hidden", "cam 1", "c" * 129, ""):
        with pytest.raises(ValueError, match="not a valid stream id"):
            _settings(source="x.mp4", stream_id=bad)
    assert _settings(source="x.mp4", stream_id="cam_1").stream_id == "cam_1"


def test_a_derived_stream_id_that_breaks_the_rule_is_refused_with_the_source_redacted():
    settings = _settings(source="rtsp://admin:secret@cam:554/live?token=t0k3n")
    with pytest.raises(ValueError) as caught:
        resolve_stream_id(settings, settings.source)
    message = str(caught.value)
    assert (
        "--stream-id" in message and "PUBLISHER_STREAM_ID" in message and "rtsp://***@cam:554/live?token=***" in message
    )
    assert "secret" not in message and "t0k3n" not in message
    assert (
        resolve_stream_id(_settings(source="rtsp://admin:secret@cam.internal"), "rtsp://admin:secret@cam.internal")
        == "cam.internal"
    )
    assert resolve_stream_id(_settings(source="x", stream_id="given"), "rtsp://a:b@c:1/d") == "given"


def test_cam_slash_1_and_cam_underscore_1_never_share_a_stream_id():
    # The old default mapped both to "cam_1"-like ids; now one is refused and the other kept verbatim.
    with pytest.raises(ValueError):
        resolve_stream_id(_settings(source="rtsp://cam/1"), "rtsp://cam/1")
    assert resolve_stream_id(_settings(source="x"), "/videos/cam_1.mp4") == "cam_1"


def test_cli_exits_2_naming_the_variable_and_value(monkeypatch):
    env = {**os.environ, "KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    bad = subprocess.run(
        [sys.executable, "-m", "frame_publisher", "--source", "x.mp4", "--stream-id", "cam/1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "PUBLISHER_STREAM_ID" in bad.stderr and "'cam/1'" in bad.stderr, bad.stderr
    derived = subprocess.run(
        [sys.executable, "-m", "frame_publisher", "--source", "rtsp://admin:s3cret@cam:554/live?token=t0k"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert derived.returncode == 2 and "--stream-id" in derived.stderr, derived.stderr
    assert "s3cret" not in derived.stderr + derived.stdout and "t0k" not in derived.stderr + derived.stdout


# --- the source from AWS Secrets Manager -------------------------------------------------------


class FakeSecrets:
    def __init__(self, value=None, error=None):
        self.value, self.error, self.asked = value, error, []

    def get_secret_value(self, SecretId):  # noqa: N803 (boto3's argument name)
        self.asked.append(SecretId)
        if self.error:
            raise self.error
        return {"SecretString": self.value}


ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vidpipe/stream/lobby-AbC123"


@pytest.mark.parametrize(
    "stored",
    [
        "rtsp://admin:secret@cam/live",
        "  rtsp://admin:secret@cam/live\n",
        json.dumps({"source": "rtsp://admin:secret@cam/live", "note": "x"}),
    ],
)
def test_source_secret_as_a_string_or_json(stored):
    client = FakeSecrets(stored)
    assert read_source_secret(ARN, client) == "rtsp://admin:secret@cam/live" and client.asked == [ARN]


def test_source_secret_errors_name_the_secret_never_its_value():
    from botocore.exceptions import ClientError

    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "GetSecretValue")
    with pytest.raises(SourceSecretError, match="AccessDeniedException"):
        read_source_secret(ARN, FakeSecrets(error=denied))
    for stored in ("", '{"url": "rtsp://admin:secret@cam"}', "{not json secret"):
        with pytest.raises(SourceSecretError) as caught:
            read_source_secret(ARN, FakeSecrets(stored))
        assert "secret@" not in str(caught.value) and "not json secret" not in str(caught.value)
    with pytest.raises(SourceSecretError, match="not a Secrets Manager secret ARN"):
        read_source_secret("lobby", FakeSecrets("x"))


def test_source_secret_through_moto():
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = client.create_secret(Name="vidpipe-stream-lobby", SecretString="rtsp://u:p4ss@cam/live")["ARN"]
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        assert read_source_secret(arn) == "rtsp://u:p4ss@cam/live"


def test_exactly_one_of_source_source_file_and_secret(tmp_path):
    mounted = tmp_path / "source"
    mounted.write_text("rtsp://admin:secret@cam/live\n")
    for extra in ({"source_secret_arn": ARN}, {"source_file": str(mounted)}):
        with pytest.raises(ValueError, match="set exactly one of PUBLISHER_SOURCE") as caught:
            resolve_source(_settings(source="x.mp4", **extra))
        assert "secret@" not in str(caught.value)
    with pytest.raises(ValueError, match="PUBLISHER_SOURCE_FILE and PUBLISHER_SOURCE_SECRET_ARN are all set"):
        resolve_source(_settings(source_file=str(mounted), source_secret_arn=ARN))
    with pytest.raises(ValueError, match="PUBLISHER_SOURCE: is required"):
        resolve_source(_settings())
    with pytest.raises(ValueError, match="Secrets Manager secret ARN"):
        _settings(source_secret_arn="arn:aws:s3:::bucket")


def test_path_credentials_are_scrubbed_from_free_text_and_never_make_a_stream_id():
    source = "rtsp://10.0.0.5:554/user=admin_password=tl_Jw-pbo6_channel=1_stream=0.sdp?real_stream"
    redact = Redactor(source)
    # FFmpeg may print the path alone, without the scheme that marks a URL
    out = redact(f"[rtsp @ 0x55] method DESCRIBE failed: 401 /user=admin_password=tl_Jw-pbo6_channel=1 ({source})")
    assert "tl_Jw-pbo6" not in out and "admin" not in out, out
    assert "rtsp://10.0.0.5:554/user=***_password=***_channel=***_stream=***?***" in out
    # Other path values are hidden inside URLs, but not scrubbed from all text: "main" stays a word in logs.
    assert url_secrets("rtsp://cam/profile=main_user=viewer") == {"viewer"}
    assert "tl_Jw" not in default_stream_id(source) and "admin" not in default_stream_id(source)


# --- the source from a mounted file (PUBLISHER_SOURCE_FILE) ---------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "rtsp://admin:secret@cam/live",
        "rtsp://admin:secret@cam/live\n",
        json.dumps({"source": "rtsp://admin:secret@cam/live"}),  # the Secrets Manager value, mounted by a CSI driver
    ],
)
def test_source_file_holds_the_url_or_json(tmp_path, content):
    mounted = tmp_path / "source"
    mounted.write_text(content)
    assert read_source_file(str(mounted)) == "rtsp://admin:secret@cam/live"
    assert resolve_source(_settings(source_file=str(mounted))) == "rtsp://admin:secret@cam/live"


def test_source_file_errors_name_the_variable_and_path_never_the_content(tmp_path):
    cases = {
        "missing": None,
        "empty": "  \n",
        "bad-json": "{rtsp://admin:pw-7f3k@cam",
        "json-without-source": json.dumps({"url": "rtsp://admin:pw-7f3k@cam"}),
        "too-large": "rtsp://admin:pw-7f3k@cam/" + "x" * 70_000,
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(ValueError) as caught:
            resolve_source(_settings(source_file=str(path)))
        message = str(caught.value)
        assert message.startswith("PUBLISHER_SOURCE_FILE: ") and str(path) in message, message
        assert "pw-7f3k" not in message, message


def test_cli_reads_the_source_file_and_keeps_its_credentials(tmp_path):
    mounted = tmp_path / "source"
    mounted.write_text("rtsp://10.0.0.5:554/user=admin_password=s3cret-pw_channel=1_stream=0.sdp?real_stream\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP": "127.0.0.1:1", "PUBLISHER_SOURCE_FILE": str(mounted)}
    env.pop("PUBLISHER_SOURCE", None)
    done = subprocess.run(
        [sys.executable, "-m", "frame_publisher"], env=env, capture_output=True, text=True, timeout=60
    )
    # The URL was read: the stream id derived from it is refused (a port and a path), shown redacted.
    assert done.returncode == 2 and "--stream-id" in done.stderr, done.stderr
    assert "rtsp://10.0.0.5:554/user=***_password=***_channel=***_stream=***?***" in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout and "admin" not in done.stderr + done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "frame_publisher", "--source-file", str(tmp_path / "nope")],
        env={**env, "PUBLISHER_SOURCE_FILE": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "PUBLISHER_SOURCE_FILE" in missing.stderr, missing.stderr
