"""tools/images/pod.py's configMap and secret volumes, without podman: the files written and the mounts asked for
are the kubelet's (keys or items, modes, fsGroup, subPath, optional, read-only), and a definition the
kubelet would refuse is refused here."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from tools.images.pod import PodContainer, RunningContainer


def manifests(volume: dict, mount: dict, config_map: dict | None, fs_group: int | None = 10001) -> list[dict]:
    pod = {
        "securityContext": {"runAsUser": 10001, **({"fsGroup": fs_group} if fs_group is not None else {})},
        "containers": [{"name": "app", "volumeMounts": [mount]}],
        "volumes": [volume],
    }
    docs = [{"kind": "Deployment", "metadata": {"name": "app"}, "spec": {"template": {"spec": pod}}}]
    if config_map is not None:
        docs.append({"kind": "ConfigMap", "metadata": {"name": "settings"}, **config_map})
    return docs


def mounted(docs: list[dict], tmp_path) -> tuple[str, str, str]:
    """(host path, container path, options) of the volume's --volume argument."""
    run = RunningContainer(None, PodContainer.from_manifests(docs, "app"), "image", "app", tmp_path / "app.log")
    args = run.run_args()
    return tuple(args[args.index("--volume") + 1].split(":"))


DATA = {"data": {"a.yaml": "a: 1\n", "b.txt": "b"}, "binaryData": {"c.bin": base64.b64encode(b"\x00\xff").decode()}}


def test_every_key_as_a_file_read_only_with_its_mode_and_fsgroup(tmp_path):
    docs = manifests(
        {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 0o400}},
        {"name": "cfg", "mountPath": "/etc/app", "readOnly": False},  # configMap volumes are read-only anyway
        DATA,
    )
    source, target, options = mounted(docs, tmp_path)
    assert (target, options) == ("/etc/app", "ro")
    files = {p.name: p for p in (tmp_path / "app.volumes" / "cfg").iterdir()}
    assert {name: p.read_bytes() for name, p in files.items()} == {
        "a.yaml": b"a: 1\n",
        "b.txt": b"b",
        "c.bin": b"\x00\xff",
    }
    assert str(tmp_path / "app.volumes" / "cfg") == source
    # fsGroup: the group reads what defaultMode gives the owner only.
    assert stat.S_IMODE(files["a.yaml"].stat().st_mode) in (0o440, 0o444)
    if os.geteuid() == 0:
        assert files["a.yaml"].stat().st_gid == 10001


def test_items_pick_keys_to_paths_with_their_modes_and_subpath_mounts_one_file(tmp_path):
    docs = manifests(
        {
            "name": "cfg",
            "configMap": {
                "name": "settings",
                "items": [{"key": "a.yaml", "path": "conf/app.yaml", "mode": 0o444}, {"key": "b.txt", "path": "b"}],
            },
        },
        {"name": "cfg", "mountPath": "/etc/app/app.yaml", "subPath": "conf/app.yaml"},
        DATA,
        fs_group=None,
    )
    source, target, _ = mounted(docs, tmp_path)
    folder = tmp_path / "app.volumes" / "cfg"
    assert (source, target) == (str(folder / "conf" / "app.yaml"), "/etc/app/app.yaml")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == ["b", "conf/app.yaml"]
    assert stat.S_IMODE((folder / "b").stat().st_mode) == 0o644  # the API's default mode
    assert stat.S_IMODE((folder / "conf").stat().st_mode) == 0o755


@pytest.mark.parametrize(
    ("volume", "mount", "config_map", "error"),
    [
        ({"name": "settings"}, {}, None, KeyError),  # no such ConfigMap
        ({"name": "settings", "items": [{"key": "nope", "path": "x"}]}, {}, DATA, KeyError),
        ({"name": "settings", "items": [{"key": "b.txt", "path": "../escape"}]}, {}, DATA, ValueError),
        ({"name": "settings"}, {"subPath": "missing"}, DATA, ValueError),
        ({"name": "settings"}, {"subPath": "../../etc"}, DATA, ValueError),
    ],
)
def test_what_the_kubelet_refuses_is_refused(tmp_path, volume, mount, config_map, error):
    with pytest.raises(error):
        mounted(
            manifests({"name": "cfg", "configMap": volume}, {"name": "cfg", "mountPath": "/x", **mount}, config_map),
            tmp_path,
        )


def test_an_optional_missing_config_map_is_an_empty_folder(tmp_path):
    docs = manifests(
        {"name": "cfg", "configMap": {"name": "settings", "optional": True}}, {"name": "cfg", "mountPath": "/x"}, None
    )
    source, _, _ = mounted(docs, tmp_path)
    assert list((tmp_path / "app.volumes" / "cfg").iterdir()) == [] and source.endswith("cfg")


def test_other_volume_kinds_are_refused(tmp_path):
    docs = manifests({"name": "cfg", "hostPath": {"path": "/"}}, {"name": "cfg", "mountPath": "/x"}, None)
    with pytest.raises(ValueError, match="neither an emptyDir, a configMap nor a secret"):
        mounted(docs, tmp_path)


def test_a_secret_volume_projects_the_given_values_at_its_items_paths(tmp_path):
    """As the publisher's camera URL arrives (PUBLISHER_SOURCE_FILE): a Secret the user creates, one key as a
    file the pod's group may read."""
    docs = manifests(
        {
            "name": "source",
            "secret": {"secretName": "camera", "items": [{"key": "source", "path": "url"}], "defaultMode": 0o440},
        },
        {"name": "source", "mountPath": "/etc/vidpipe/source", "readOnly": True},
        None,
    )
    spec = PodContainer.from_manifests(docs, "app", {("camera", "source"): "rtsp://cam/1", ("other", "x"): "no"})
    args = RunningContainer(None, spec, "image", "app", tmp_path / "app.log").run_args()
    source, target, options = args[args.index("--volume") + 1].split(":")
    assert (target, options) == ("/etc/vidpipe/source", "ro")
    folder = tmp_path / "app.volumes" / "source"
    assert [p.name for p in folder.iterdir()] == ["url"] and (folder / "url").read_bytes() == b"rtsp://cam/1"
    assert stat.S_IMODE((folder / "url").stat().st_mode) in (0o440, 0o444)
    with pytest.raises(KeyError, match="needs Secret camera"):
        PodContainer.from_manifests(docs, "app", {})
