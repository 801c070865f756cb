"""Frame publisher: video file, RTSP camera, webcam or image folder -> JPEG frames on Kafka."""
