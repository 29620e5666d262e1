"""Kafka topics and versioned Cassandra schema migrations applied by ``emon init``."""
