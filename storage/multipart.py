"""S3 multipart upload with a sliding window of parts in flight, over s3fs's client.

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
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable

from fsspec.asyn import sync
from fsspec.callbacks import Callback

MAX_PARTS = 10_000  # S3's limit


async def _upload(fs, local: str, path: str, part_size: int, window: int, callback: Callback,
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
            reply = await fs._call_s3("upload_part", Bucket=bucket, Key=key, UploadId=upload_id,
                                      PartNumber=number, Body=data, ChecksumAlgorithm="CRC32")
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
        try:
            await fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001, S110 - the original failure is what the user must see
            pass
        raise
    finally:
        os.close(fd)


def upload(fs, local: str | os.PathLike[str], path: str, *, part_size: int, window: int,
           callback: Callback | None = None, verify: Callable[[], None] | None = None) -> None:
    """Upload ``local`` to ``path`` (``bucket/key``) in parts, ``window`` of them in flight (memory:
    ``window × part_size``). ``verify`` runs in a thread while the parts go up; if it raises, the
    upload is aborted and nothing appears."""
    sync(fs.loop, _upload, fs, os.fspath(local), path, part_size, window, callback or Callback(), verify)


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
