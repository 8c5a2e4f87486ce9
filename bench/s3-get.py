#!/usr/bin/env python3
"""Times the S3 server's own GET of the newest archive under a prefix, read and discarded.

usage: s3-get.py ENDPOINT BUCKET PREFIX

Finds the newest archive under PREFIX, reads it in one GET in 8 MiB pieces that
are thrown away, and prints a JSON line with the seconds and the bytes. It is the fastest
a client could read that object from this server: the restore ← S3 rows are compared with
it in the same run.
"""
import json
import sys
import time

import boto3

PIECE = 8 << 20
ARCHIVES = (".tar.gz.enc", ".tar.gz", ".tar.zst.enc", ".tar.zst")


def main():
    endpoint, bucket, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    s3 = boto3.client("s3", endpoint_url=endpoint)
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith(ARCHIVES):
                continue
            if newest is None or obj["LastModified"] > newest["LastModified"]:
                newest = obj
    if newest is None:
        sys.exit(f"s3-get.py: no object under s3://{bucket}/{prefix}")
    start = time.monotonic()
    body = s3.get_object(Bucket=bucket, Key=newest["Key"])["Body"]
    read = 0
    while True:
        piece = body.read(PIECE)
        if not piece:
            break
        read += len(piece)
    seconds = time.monotonic() - start
    print(json.dumps({"seconds": round(seconds, 2), "bytes": read, "key": newest["Key"]}))


if __name__ == "__main__":
    main()
