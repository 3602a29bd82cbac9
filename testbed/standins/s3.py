"""moto's S3 server on a loopback port, with a bucket: the S3 API the backup store
speaks, run in the tests' own process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def s3_server(bucket: str, key_id: str, secret: str) -> Iterator[tuple[str, Any]]:
    """The server's URL and a boto3 client of it, ``bucket`` made; stopped afterwards."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id=key_id, aws_secret_access_key=secret)
        client.create_bucket(Bucket=bucket)
        yield url, client
    finally:
        server.stop()
