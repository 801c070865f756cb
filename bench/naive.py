"""The naive design the pipeline is measured against, in the same run:

- a server that takes one frame per HTTP request as JSON with a base64 JPEG, and runs the model
  on it alone (no batching);
- a consumer that polls one record, waits for its answer, publishes the result and commits,
  before polling again.

`python -m bench.naive serve --model M --port P` / `python -m bench.naive consume ...`
"""

import argparse
import base64
import json
import time

import cv2
import numpy as np
from fastapi import FastAPI, Request


def serve(model_path: str, port: int) -> None:
    import onnxruntime as ort
    import uvicorn

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    app = FastAPI()

    @app.post("/infer")
    async def infer(request: Request):
        body = await request.json()
        image = cv2.imdecode(np.frombuffer(base64.b64decode(body["image"]), np.uint8), cv2.IMREAD_COLOR)
        tensor = cv2.resize(image, (416, 416))[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        boxes, scores = session.run(None, {name: tensor})
        keep = scores[0].max(axis=1) > 0.3
        return {"boxes": boxes[0][keep].tolist(), "scores": scores[0][keep].max(axis=1).tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def consume(bootstrap: str, frames_topic: str, results_topic: str, url: str, group: str) -> None:
    import httpx
    from confluent_kafka import Consumer, Producer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": 8 * 1024 * 1024,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    consumer.subscribe([frames_topic])
    client = httpx.Client(timeout=30)
    while True:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        headers = dict(message.headers() or [])
        response = client.post(url, json={"image": base64.b64encode(message.value()).decode()})
        response.raise_for_status()
        answer = response.json()
        result = {
            "stream_id": headers["stream-id"].decode(),
            "seq": int(headers["seq"]),
            "capture_ts_us": int(headers["capture-ts-us"]),
            "detections": len(answer["scores"]),
            "processed_ts_us": time.time_ns() // 1000,
        }
        producer.produce(results_topic, key=message.key(), value=json.dumps(result).encode())
        producer.flush()
        consumer.commit(message=message, asynchronous=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--model", required=True)
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("consume")
    for flag in ("--bootstrap", "--frames-topic", "--results-topic", "--url", "--group"):
        c.add_argument(flag, required=True)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.model, args.port)
    else:
        consume(args.bootstrap, args.frames_topic, args.results_topic, args.url, args.group)


if __name__ == "__main__":
    main()
