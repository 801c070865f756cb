"""Shared contract of the video pipeline: message formats, topics, Kafka client settings, storage.

All three services import this package; nothing here is copied per service.
"""
