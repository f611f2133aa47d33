"""`/v1/files`: uploads (multipart), listing, retrieve, content and delete, kept in memory.

Batch mode reads its input from here and writes its output and error files here.
"""

from __future__ import annotations

import email.message
import email.utils
import threading
import time
from dataclasses import dataclass

from .wire import HTTPError, listing, new_id


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


class FileStore:
    """The files endpoint's state: `files` maps an id to its `StoredFile`."""

    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()

    def upload(self, content_type: str, raw: bytes) -> dict:
        fields = parse_multipart(content_type, raw)
        if "file" not in fields:
            raise HTTPError(400, "Missing the 'file' part.", param="file")
        filename, data = fields["file"]
        purpose = fields.get("purpose", (None, b""))[1].decode()
        if not purpose:
            raise HTTPError(400, "Missing the 'purpose' part.", param="purpose")
        return self.store(filename or "upload", purpose, data).to_json()

    def store(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        stored = StoredFile(new_id("file-"), filename, purpose, data, int(time.time()))
        with self._lock:
            self.files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self.files.get(file_id)
        if stored is None:
            raise HTTPError(404, f"No such File object: {file_id}", code="file_not_found")
        return stored

    def delete(self, file_id: str) -> dict:
        self.get(file_id)
        with self._lock:
            del self.files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def listing(self) -> dict:
        return listing([f.to_json() for f in self.files.values()])


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise HTTPError(400, "Expected multipart/form-data with a boundary.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    delimiter = b"--" + boundary.encode()
    for part in raw.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        part_headers = email.message.Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                part_headers[name.strip()] = value.strip()
        name = part_headers.get_param("name", header="content-disposition")
        filename = part_headers.get_param("filename", header="content-disposition")
        if isinstance(filename, tuple):  # RFC 2231 encoded
            filename = email.utils.collapse_rfc2231_value(filename)
        if isinstance(name, str):
            fields[name] = (filename if isinstance(filename, str) else None, data)
    return fields
