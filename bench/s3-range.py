#!/usr/bin/env python3
"""Times the S3 server's own ranged GET of 1 MiB from the middle of the newest archive.

usage: s3-range.py ENDPOINT BUCKET PREFIX

Finds the newest archive under PREFIX and times one GET of the mebibyte at its middle,
read whole, printing a JSON line with the seconds, the bytes and the archive's size. A
selective restore makes a few such reads (header, footer, index, the blocks it needs):
this is what each costs on this server, whatever the client does. Real S3 answers a range
in milliseconds whatever the object's size; some test servers read the whole object to
answer one.
"""
import json
import sys
import time

import boto3

ARCHIVES = (".tar.gz.enc", ".tar.gz", ".tar.zst.enc", ".tar.zst")


def main():
    endpoint, bucket, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    s3 = boto3.client("s3", endpoint_url=endpoint)
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(ARCHIVES) and (newest is None or obj["LastModified"] > newest["LastModified"]):
                newest = obj
    if newest is None:
        sys.exit(f"s3-range.py: no archive under s3://{bucket}/{prefix}")
    start_byte = max(0, newest["Size"] // 2 - (1 << 19))
    end_byte = min(newest["Size"], start_byte + (1 << 20)) - 1
    start = time.monotonic()
    body = s3.get_object(Bucket=bucket, Key=newest["Key"], Range=f"bytes={start_byte}-{end_byte}")["Body"]
    read = len(body.read())
    seconds = time.monotonic() - start
    print(json.dumps({"seconds": round(seconds, 3), "bytes": read, "object_bytes": newest["Size"]}))


if __name__ == "__main__":
    main()
