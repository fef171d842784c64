"""The worker image: the queue-polling supervisor and the scoring runtime."""
