#!/usr/bin/env python3
"""Writes the backups of a fleet into a destination, as its agents would have: for each of
INSTANCES instances and each of DAYS days (ending yesterday, UTC), one manifest and one tiny
archive under PREFIX/YYYY/MM/DD/ (spec/destination-layout.md), written directly, in parallel.

usage: fleet-seed.py local DIR INSTANCES DAYS
       fleet-seed.py s3 ENDPOINT BUCKET PREFIX INSTANCES DAYS
"""
import concurrent.futures
import datetime
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def tiny_archive():
    """A plain archive of one small file, as a backup of it would be stored."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"fleet bench\n"
        info = tarfile.TarInfo("data.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return raw.getvalue(), gzip.compress(raw.getvalue(), mtime=0)


TAR, ARCHIVE = tiny_archive()
SHA256 = hashlib.sha256(ARCHIVE).hexdigest()


def backups(instances, days):
    today = datetime.datetime.now(datetime.timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    for d in range(days, 0, -1):
        day = today - datetime.timedelta(days=d)
        for i in range(instances):
            instance = f"inst-{i:05d}"
            # Spread over the night, so that instances interleave in key order.
            started = day + datetime.timedelta(hours=1, seconds=(i * 7) % 10800)
            name = f"{started:%Y%m%dT%H%M%SZ}-{instance}-{(i * 2654435761 + d) & 0xFFFFFFFF:08x}"
            manifest = {
                "format_version": 1,
                "name": name,
                "instance_id": instance,
                "deployment": None,
                "started_at": started.isoformat().replace("+00:00", "Z"),
                "finished_at": (started + datetime.timedelta(seconds=30))
                .isoformat()
                .replace("+00:00", "Z"),
                "source_folder": "/var/vcap/store",
                "file_count": 1,
                "plain_bytes": 12,
                "stored_bytes": len(ARCHIVE),
                "sha256": SHA256,
                "archive": f"{name}.tar.gz",
                "compression": {"algorithm": "gzip", "level": 6},
                "encryption": None,
                "agent_version": "bench",
                "locked_until": None,
            }
            folder = f"{day:%Y/%m/%d}/"
            yield folder + f"{name}.tar.gz", ARCHIVE
            yield folder + f"{name}.json", json.dumps(manifest).encode()


def local(root, instances, days):
    made = set()
    n = 0
    for key, body in backups(instances, days):
        path = os.path.join(root, key)
        folder = os.path.dirname(path)
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        with open(path, "wb") as f:
            f.write(body)
        n += 1
    return n


def s3(endpoint, bucket, prefix, instances, days):
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint, config=Config(max_pool_connections=64)
    )
    try:
        client.create_bucket(Bucket=bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    def put(item):
        key, body = item
        client.put_object(Bucket=bucket, Key=base + key, Body=body)

    with concurrent.futures.ThreadPoolExecutor(48) as pool:
        return sum(1 for _ in pool.map(put, backups(instances, days), chunksize=256))


def main():
    kind = sys.argv[1]
    if kind == "local":
        n = local(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif kind == "s3":
        n = s3(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(__doc__)
    print(n)


if __name__ == "__main__":
    main()
