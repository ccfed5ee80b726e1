"""A local W&B server that holds one model artifact, for ``evaluate --ckpt wandb:...``.

It answers the GraphQL operations that wandb's public API sends to find and download an
artifact version (``Viewer``, ``GetDefaultEntity``, ``ServerFeaturesQuery``,
``ArtifactMembershipByName``, ``FetchArtifactManifest``, ``GetArtifactMembershipFileUrls``)
and serves the manifest and the file over HTTP; an alias it does not hold is a missing
membership, as on the real server. Every GraphQL request is kept, in order, in ``requests``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ARTIFACT_ID = "QXJ0aWZhY3Q6MQ=="
CREATED = "2026-01-01T00:00:00"


@dataclass
class Artifact:
    """One version of ``ENTITY/PROJECT/NAME`` with its aliases and one file."""

    entity: str
    project: str
    name: str
    aliases: tuple[str, ...]
    file_name: str
    payload: bytes
    requests: list[dict[str, Any]] = field(default_factory=list)

    def manifest(self) -> bytes:
        digest = base64.b64encode(hashlib.md5(self.payload).digest()).decode()
        entry = {"digest": digest, "size": len(self.payload), "birthArtifactID": ARTIFACT_ID}
        return json.dumps(
            {
                "version": 1,
                "storagePolicy": "wandb-storage-policy-v1",
                "storagePolicyConfig": {"storageLayout": "V2"},
                "contents": {self.file_name: entry},
            }
        ).encode()

    def answer(self, operation: str, variables: dict[str, Any], base: str) -> dict[str, Any]:
        """The ``data`` of the reply to one GraphQL operation."""
        project = {
            "id": "UHJvamVjdDox",
            "internalId": "1",
            "name": self.project,
            "entity": {"name": self.entity},
        }
        collection = {"__typename": "ArtifactSequence", "name": self.name, "project": project}
        aliases = [
            {"__typename": "ArtifactAlias", "id": f"QWxpYXM6{i}", "alias": alias}
            for i, alias in enumerate(self.aliases)
        ]
        if operation == "Viewer":
            viewer = {"id": "VXNlcjox", "entity": self.entity, "username": self.entity}
            return {"viewer": viewer | {"email": "", "flags": "{}", "teams": {"edges": []}}}
        if operation == "GetDefaultEntity":
            return {"viewer": {"id": "VXNlcjox", "entity": self.entity}}
        if operation == "ServerFeaturesQuery":
            return {"serverInfo": {"features": []}}
        if operation == "ArtifactMembershipByName":
            name, _, alias = variables["name"].partition(":")
            held = (variables["entity"], variables["project"], name) == (
                self.entity,
                self.project,
                self.name,
            ) and alias in self.aliases
            artifact = {
                "__typename": "Artifact",
                "id": ARTIFACT_ID,
                "artifactSequence": collection,
                "versionIndex": 0,
                "artifactType": {"name": "model"},
                "description": None,
                "metadata": json.dumps({"file": self.file_name}),
                "ttlDurationSeconds": -1,
                "ttlIsInherited": True,
                "tags": [],
                "historyStep": None,
                "state": "COMMITTED",
                "size": len(self.payload),
                "digest": hashlib.md5(self.payload).hexdigest(),
                "commitHash": "0" * 12,
                "fileCount": 1,
                "createdAt": CREATED,
                "updatedAt": None,
                "aliases": [a | {"artifactCollection": collection} for a in aliases],
            }
            membership = {
                "__typename": "ArtifactCollectionMembership",
                "id": "TWVtYmVyc2hpcDox",
                "versionIndex": 0,
                "createdAt": CREATED,
                "aliases": aliases,
                "artifactCollection": collection,
                "artifact": artifact,
            }
            return {"project": {"artifactCollectionMembership": membership if held else None}}
        if operation == "FetchArtifactManifest":
            manifest = {"file": {"directUrl": f"{base}/files/manifest.json"}}
            return {"artifact": {"currentManifest": manifest}}
        if operation == "GetArtifactMembershipFileUrls":
            node = {
                "__typename": "File",
                "name": self.file_name,
                "directUrl": f"{base}/files/{self.file_name}",
            }
            page = {"__typename": "PageInfo", "endCursor": None, "hasNextPage": False}
            files = {"pageInfo": page, "edges": [{"node": node}]}
            membership = {"files": files}
            sequence = {"__typename": "ArtifactSequence", "artifactMembership": membership}
            return {"project": {"artifactCollection": sequence}}
        return {}


def _operation(body: dict[str, Any]) -> str:
    match = re.search(r"(?:query|mutation)\s+(\w+)", body.get("query", ""))
    return body.get("operationName") or (match.group(1) if match else "")


@contextmanager
def artifact_server(artifact: Artifact) -> Iterator[str]:
    """Serve ``artifact`` on a free local port; yields the base URL (``WANDB_BASE_URL``)."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, payload: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path != "/graphql":  # the SDK's telemetry: accepted, ignored
                self._reply(b"", "application/json")
                return
            body = json.loads(raw)
            operation = _operation(body)
            variables = body.get("variables") or {}
            artifact.requests.append({"operation": operation, "variables": variables})
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            data = artifact.answer(operation, variables, base)
            self._reply(json.dumps({"data": data}).encode(), "application/json")

        def do_GET(self) -> None:
            if self.path == "/files/manifest.json":
                self._reply(artifact.manifest(), "application/json")
            elif self.path == f"/files/{artifact.file_name}":
                self._reply(artifact.payload, "application/octet-stream")
            else:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
