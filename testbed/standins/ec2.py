"""A stand-in EC2: moto's EC2 API in server mode, on loopback, and a hypervisor that
boots each new instance from its user data.

moto answers in the namespace of botocore's service model,
``http://ec2.amazonaws.com/doc/2016-11-15``; AWS answers in
``http://ec2.amazonaws.com/doc/2016-11-15/`` (with the slash), and clients that
parse the XML by namespace (Libcloud) find nothing in moto's replies. AWS's error
replies (``<Response><Errors><Error>...``) have no namespace; moto's have one. The
stand-in answers as AWS does. moto's checks of image ids and instance types, off by
default, are on.

Each stand-in makes a VPC and a subnet of its own, ``127.0.N.0/24`` of the test
process's subnet, so an instance's private address is one a local node can take.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import boto3
import requests

# Read when moto is imported: refuse unknown images and instance types, as EC2 does.
os.environ.setdefault("MOTO_ENABLE_AMI_VALIDATION", "true")
os.environ.setdefault("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")

from moto import settings as moto_settings
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

# And if moto was imported first (another stand-in, the S3 tests'), set them there.
moto_settings.ENABLE_AMI_VALIDATION = True
moto_settings.EC2_ENABLE_INSTANCE_TYPE_VALIDATION = True

MOTO_NAMESPACE = b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15"'
AWS_NAMESPACE = b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'
MOTO_ERROR = re.compile(rb'<Response xmlns="[^"]*">')
KEY, SECRET = "AKIDSTANDIN0000000001", "standin-secret-Pa55w0rd"
REGION = "us-east-1"


class QuietHandler(MotoRequestHandler):
    """No request lines on stderr: a RunInstances query carries the user data."""

    def log_request(self, *args: Any) -> None:
        pass


class AwsNamespace:
    """WSGI middleware: EC2 replies in AWS's namespace; actions reported to ``seen``."""

    def __init__(self, app: Any, seen: Callable[[str, dict[str, list[str]]], None]) -> None:
        self.app = app
        self.seen = seen

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if environ.get("REQUEST_METHOD") == "POST" and \
                environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = _Replay(body)
            query.update(parse_qs(body.decode("utf-8", errors="replace")))
        action = (query.get("Action") or [""])[0]
        body_parts = [MOTO_ERROR.sub(b"<Response>",
                                     part.replace(MOTO_NAMESPACE, AWS_NAMESPACE))
                      for part in self.app(environ, _fixed_length(start_response))]
        if action:
            self.seen(action, query)
        return body_parts


class _Replay:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk, self._at = self._data[self._at:end], min(end, len(self._data))
        return chunk


def _fixed_length(start_response: Any) -> Any:
    """The namespace grows the body by a byte: drop moto's Content-Length."""
    def start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
        return start_response(status, [(k, v) for k, v in headers
                                        if k.lower() != "content-length"], *rest)
    return start


@dataclass
class Instance:
    id: str
    private_ip: str
    user_data: str
    tags: dict[str, str]


class Ec2StandIn:
    """moto's EC2 on ``url``, with ``boot``/``destroy``/``reboot`` run for instances
    as they start, end and are rebooted."""

    def __init__(self, subnet: int, boot: Callable[[Instance], None] | None = None,
                 destroy: Callable[[Instance], None] | None = None,
                 reboot: Callable[[Instance], None] | None = None) -> None:
        self.boot, self.destroy, self.reboot = boot, destroy, reboot
        self.actions: list[str] = []
        self.booted: dict[str, Instance] = {}
        self.errors: list[str] = []  # what went wrong booting or destroying instances
        app = AwsNamespace(DomainDispatcherApplication(create_backend_app), self._seen)
        self._server = make_server("127.0.0.1", 0, app, threaded=True,
                                   request_handler=QuietHandler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        self.ec2 = boto3.client("ec2", endpoint_url=self.url, region_name=REGION,
                                aws_access_key_id=KEY, aws_secret_access_key=SECRET)
        self.vpc = self.ec2.create_vpc(CidrBlock=f"127.0.{subnet}.0/24")["Vpc"]["VpcId"]
        self.subnet = self.ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"127.0.{subnet}.0/24",
                                             )["Subnet"]["SubnetId"]
        self.security_group = self.ec2.create_security_group(
            GroupName="conpaassql-nodes", Description="nodes", VpcId=self.vpc)["GroupId"]
        self.ec2.create_key_pair(KeyName="operators")
        self.image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self._stop = threading.Event()
        self._hypervisor = threading.Thread(target=self._run, daemon=True)
        if boot is not None:
            self._hypervisor.start()

    def close(self) -> None:
        self._stop.set()
        if self._hypervisor.is_alive():
            self._hypervisor.join(timeout=30)
        self._server.shutdown()
        self._server.server_close()

    def _seen(self, action: str, query: dict[str, list[str]]) -> None:
        self.actions.append(action)
        if action == "RebootInstances" and self.reboot is not None:
            for key, values in query.items():
                if key.startswith("InstanceId.") and values[0] in self.booted:
                    self.reboot(self.booted[values[0]])

    def instances(self) -> list[dict[str, Any]]:
        """Every instance of the stand-in's VPC, as DescribeInstances gives it."""
        found = []
        for reservation in self.ec2.describe_instances()["Reservations"]:
            found += [item for item in reservation["Instances"]
                      if item.get("VpcId") == self.vpc]
        return found

    def instance(self, instance_id: str) -> Instance:
        item = next(i for i in self.instances() if i["InstanceId"] == instance_id)
        data = self.ec2.describe_instance_attribute(InstanceId=instance_id,
                                                    Attribute="userData")
        encoded = data.get("UserData", {}).get("Value", "")
        return Instance(instance_id, item["PrivateIpAddress"],
                        base64.b64decode(encoded).decode("utf-8"),
                        {tag["Key"]: tag["Value"] for tag in item.get("Tags", [])})

    def terminate_behind_the_managers_back(self, instance_id: str) -> None:
        self.ec2.terminate_instances(InstanceIds=[instance_id])

    def _run(self) -> None:
        """The hypervisor: boot what started, stop what was terminated."""
        while not self._stop.is_set():
            try:
                listed = self.instances()
            except Exception:  # the API is going away at close
                listed = []
            for item in listed:
                try:
                    self._tick(item)
                except Exception as exc:
                    self.errors.append(f"{item['InstanceId']}: {exc!r}")
            time.sleep(0.1)

    def _tick(self, item: dict[str, Any]) -> None:
        instance_id, state = item["InstanceId"], item["State"]["Name"]
        if state in ("pending", "running") and instance_id not in self.booted:
            instance = self.instance(instance_id)
            self.booted[instance_id] = instance
            assert self.boot is not None
            self.boot(instance)
        elif state in ("shutting-down", "terminated") and instance_id in self.booted:
            instance = self.booted.pop(instance_id)
            if self.destroy is not None:
                self.destroy(instance)
