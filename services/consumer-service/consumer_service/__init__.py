"""Consumer service: frames from Kafka -> batched inference -> results topic + archive, at least once."""
