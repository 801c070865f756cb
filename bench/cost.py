"""What a run's figures cost: the inference cost per camera-hour at 5 frames/s on the node type the CPU class of
the measured machine is priced as (vidpipe_deploy's committed prices and node layout), from this run's service
frames/s per vCPU: the same arithmetic as the fleet planner's (vidpipe_deploy.plan), with the run's figure in
place of the committed one."""

from __future__ import annotations

from typing import Any

CAMERA_FPS = 5.0


def inference_cost(report: dict[str, Any], fps: float = CAMERA_FPS) -> dict[str, Any]:
    from vidpipe_deploy import figures as committed
    from vidpipe_deploy import sizing

    cpu_class = committed.classify(report.get("machine", {}))
    per_vcpu = float(report.get("fps_per_vcpu", {}).get("service") or 0.0)
    if cpu_class is None or per_vcpu <= 0:
        return {"cpu_class": cpu_class, "reason": "no CPU class for this machine, or no service figure"}
    try:
        node_type = committed.load().cpu_class(cpu_class).priced_as
        pod = sizing.for_node(node_type, cpu_class=cpu_class)
        price = committed.prices().ec2(node_type)
    except committed.FiguresError as exc:
        return {"cpu_class": cpu_class, "reason": str(exc)}
    pod_fps = pod.cpu_request_m / 1000 * per_vcpu
    return {
        "cpu_class": cpu_class,
        "node_type": node_type,
        "node_usd_per_hour": price,
        "pod_fps": round(pod_fps, 2),
        "cameras_per_node": round(pod_fps / fps, 1),
        "usd_per_camera_hour": round(price * fps / pod_fps, 5),
        "camera_fps": fps,
    }
