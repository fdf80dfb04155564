"""The S3 fixtures (``s3_endpoint``, ``s3``: moto's server on loopback, a bucket per test) live in
tests/conftest.py, shared with the workcell's datapoint tests."""
