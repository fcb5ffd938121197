"""Operations: local Kafka runner and monitoring configuration."""
