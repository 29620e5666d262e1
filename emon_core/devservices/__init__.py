"""Local development services (Mosquitto, Kafka, Cassandra) run from the project's state dir."""
