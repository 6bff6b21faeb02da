"""The toolkit for services around a Kafka-compatible cluster (Strom or Apache Kafka): a publisher, a consumer
framework with retries and dead-letter topics, the transactional outbox and inbox, and exactly-once pipelines.

It is a client of the cluster only: everything goes through confluent-kafka and the Kafka protocol.
"""
