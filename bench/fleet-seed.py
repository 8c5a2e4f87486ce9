#!/usr/bin/env python3
"""Writes the backups of a fleet into a destination, as its agents would have: for each of
INSTANCES instances and each of DAYS days (ending yesterday, UTC), one manifest and one tiny
archive under PREFIX/YYYY/MM/DD/ (spec/destination-layout.md), written directly.

usage: fleet-seed.py local DIR INSTANCES DAYS
       fleet-seed.py moto PORT BUCKET PREFIX INSTANCES DAYS

`moto` starts moto's own S3 server on 127.0.0.1:PORT in this process, with the fleet's
objects already in its store: moto takes about 130 PUTs a second over HTTP, so 180,000
objects would take 23 minutes to write through its API. What the agent then lists and
reads is served by moto's server as any other. It prints the object count once serving,
then runs until stopped.
"""
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


def moto(port, bucket, prefix, instances, days):
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.s3.models import s3_backends

    # The account and partition moto's server answers any credentials with.
    backend = s3_backends["123456789012"]["aws"]
    backend.create_bucket(bucket, "us-east-1")
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    n = 0
    for key, body in backups(instances, days):
        backend.put_object(bucket, base + key, body)
        n += 1
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(n, flush=True)
    import threading

    threading.Event().wait()


def main():
    kind = sys.argv[1]
    if kind == "local":
        n = local(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif kind == "moto":
        moto(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
        return
    else:
        sys.exit(__doc__)
    print(n)


if __name__ == "__main__":
    main()
