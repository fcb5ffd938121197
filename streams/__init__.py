"""The Faust worker: moves bytes between Kafka and the pure policy core."""
