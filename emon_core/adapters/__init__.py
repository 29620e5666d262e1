"""Thin transport adapters (MQTT, Kafka, Cassandra) built from emon_core settings."""
