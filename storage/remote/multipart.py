"""Uploads to S3 over s3fs's client: one PUT, or a multipart upload with a window of parts in flight;
every request body watched, so that a server that stops taking bytes fails the upload in bounded time.

s3fs's own ``put_file`` sends parts in batches and waits for the slowest of each batch
before reading the next; the server idles while the client hashes and signs the next
batch, and the client idles while the server digests the last one. Measured on a 1 GiB
upload to an S3-compatible server on loopback, that cost about a fifth of the speed of
boto3's own ``upload_file``. Here a new part starts as soon as any finishes, so both sides
stay busy. The requests themselves are s3fs's (``_call_s3``: its client, retries and
error translation); only the scheduling is ours.

The local file is hashed in a thread while the parts go up, and the upload completes only
if it still hashes to the digest it is stored under. Each part carries a CRC32, and the upload declares it (as boto3 does), so the server checks
every part as it lands. The object appears only when ``complete_multipart_upload``
succeeds; any failure aborts the upload, so nothing partial is left behind to pay for.

Why the watch: the client's timeouts (connect, and read: the wait for the next bytes of a
reply) do not cover sending a request body. aiohttp has no write timeout, so a server that
freezes mid-upload (a stopped process, a dead link: its TCP window closes) stalls the
write forever. A body here is a file-like object that aiohttp reads a chunk at a time as
the socket takes it; a request whose body has not moved for ``stall`` seconds is
cancelled and raises ``Stalled``. Once the last byte is read, what remains is the server's
reply, which the read timeout bounds (plus a retry's backoff: hence the longer allowance).
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import time
from collections.abc import Callable
from contextlib import suppress

from fsspec.asyn import sync
from fsspec.callbacks import Callback

MAX_PARTS = 10_000  # S3's limit
_BACKOFF = 20  # seconds: the longest a retry of botocore's standard mode sleeps before sending again


class Stalled(ConnectionError):
    """A request body stopped moving: the server (or the link to it) stopped taking bytes.

    Not a ``TimeoutError``: fsspec's ``sync`` would swap that for a bare ``FSTimeoutError``."""


class _Paced(io.RawIOBase):
    """Bytes as a request body, remembering when they last moved (read, or rewound for a retry)."""

    def __init__(self, data: bytes | memoryview) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._at = 0
        self.moved = time.monotonic()
        self.sent = False  # the last byte was read: the rest is the reply's, bounded by the read timeout

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._data)}[whence]
        self._at = max(0, base + offset)
        self.moved, self.sent = time.monotonic(), self._at >= len(self._data)
        return self._at

    def readinto(self, buffer) -> int:
        chunk = self._data[self._at : self._at + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._at += len(chunk)
        self.moved, self.sent = time.monotonic(), self._at >= len(self._data)
        return len(chunk)

    def __len__(self) -> int:
        return len(self._data)


async def _send(fs, method: str, data: bytes | memoryview, stall: float, **kwargs) -> dict:
    """``fs._call_s3(method, Body=data, **kwargs)``, cancelled with ``Stalled`` when the body stops moving."""
    body = _Paced(data)
    call = asyncio.ensure_future(fs._call_s3(method, Body=body, **kwargs))
    try:
        while True:
            done, _ = await asyncio.wait({call}, timeout=min(1.0, stall / 4))
            if done:
                return call.result()
            quiet = time.monotonic() - body.moved
            if quiet > (2 * stall + _BACKOFF if body.sent else stall):
                raise Stalled(f"the server took no bytes for {quiet:.0f} s ({len(body)}-byte {method} request); "
                              "it stopped answering mid-upload")
    finally:
        if not call.done():
            call.cancel()
            with suppress(BaseException):
                await call


async def _put(fs, data: bytes, path: str, stall: float, callback: Callback) -> None:
    bucket, key, _ = fs.split_path(path)
    await _send(fs, "put_object", data, stall, Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32")
    callback.relative_update(len(data))


def put(fs, source: str | os.PathLike[str] | bytes, path: str, *, stall: float,
        callback: Callback | None = None) -> None:
    """Upload a small local file (read whole) or bytes to ``path`` (``bucket/key``) in one watched PUT,
    with a CRC32 the server checks."""
    if not isinstance(source, bytes):
        with open(source, "rb") as f:
            source = f.read()
    sync(fs.loop, _put, fs, source, path, stall, callback or Callback())


async def _upload(fs, local: str, path: str, part_size: int, window: int, stall: float, callback: Callback,
                  verify: Callable[[], None] | None) -> None:
    bucket, key, _ = fs.split_path(path)
    size = os.path.getsize(local)
    part_size = max(part_size, math.ceil(size / MAX_PARTS))
    count = max(1, math.ceil(size / part_size))
    mpu = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32")
    upload_id = mpu["UploadId"]
    slots = asyncio.Semaphore(window)
    fd = os.open(local, os.O_RDONLY)

    async def part(number: int) -> dict:
        async with slots:  # read in a worker thread: the loop keeps sending while the disk works
            data = await asyncio.to_thread(os.pread, fd, part_size, (number - 1) * part_size)
            reply = await _send(fs, "upload_part", data, stall, Bucket=bucket, Key=key, UploadId=upload_id,
                                PartNumber=number, ChecksumAlgorithm="CRC32")
            callback.relative_update(len(data))
            done = {"PartNumber": number, "ETag": reply["ETag"]}
            if "ChecksumCRC32" in reply:
                done["ChecksumCRC32"] = reply["ChecksumCRC32"]
            return done

    tasks = [asyncio.ensure_future(part(n)) for n in range(1, count + 1)]
    checking = asyncio.ensure_future(asyncio.to_thread(verify)) if verify is not None else None
    try:
        parts = await asyncio.gather(*tasks)
        if checking is not None:
            await checking  # the file's bytes are what they should be, or the upload never completes
        await fs._call_s3("complete_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id,
                          MultipartUpload={"Parts": parts})
    except BaseException:
        for task in tasks:  # no part may land after the abort (nor read a closed file)
            task.cancel()
        if checking is not None:
            checking.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # one try, bounded: a server that stopped answering must not hold the error back; an upload
        # left open is invisible, and `mlv gc --remote` aborts it
        with suppress(Exception):
            await asyncio.wait_for(fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key,
                                               UploadId=upload_id), timeout=stall)
        raise
    finally:
        os.close(fd)


def upload(fs, local: str | os.PathLike[str], path: str, *, part_size: int, window: int, stall: float,
           callback: Callback | None = None, verify: Callable[[], None] | None = None) -> None:
    """Upload ``local`` to ``path`` (``bucket/key``) in parts, ``window`` of them in flight (memory:
    ``window × part_size``). ``verify`` runs in a thread while the parts go up; if it raises, the
    upload is aborted and nothing appears. A part whose bytes stop moving for ``stall`` seconds
    fails the upload (``Stalled``)."""
    sync(fs.loop, _upload, fs, os.fspath(local), path, part_size, window, stall, callback or Callback(), verify)


def abort_stale(fs, root: str, cutoff: float, *, dry_run: bool = False) -> int:
    """Abort the multipart uploads under ``root`` begun before ``cutoff`` (seconds since the epoch):
    a push killed mid-upload leaves them open, invisible but billed. Returns how many there were."""
    bucket, prefix, _ = fs.split_path(root)

    async def run() -> int:
        stale = []
        options = {"Bucket": bucket, "Prefix": f"{prefix}/" if prefix else ""}
        while True:
            page = await fs._call_s3("list_multipart_uploads", **options)
            stale += [u for u in page.get("Uploads", []) if u["Initiated"].timestamp() < cutoff]
            if not page.get("IsTruncated"):
                break
            options.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])
        if not dry_run:
            for u in stale:
                await fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
        return len(stale)

    return sync(fs.loop, run)
