"""Prometheus metrics of the manager: instruments observed as things happen, collectors read at scrape time."""
