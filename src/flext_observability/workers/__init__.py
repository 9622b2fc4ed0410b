"""Ingest workers: HTTP receivers in processes of their own (`server.workers`)."""
