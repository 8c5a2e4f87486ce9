#!/usr/bin/env python3
"""Times the S3 server's CompleteMultipartUpload alone, for an object of a given size.

usage: s3-complete.py ENDPOINT BUCKET BYTES

Uploads BYTES of random data to ENDPOINT as 8 MiB parts (the part size service-backup
starts with), then times the one request that completes the upload, and prints its
seconds. Against real S3 that request only joins metadata; a test server may copy the
whole object there, and a backup waits for it at its very end. The object is deleted
afterwards.
"""
import os
import sys
import time

import boto3

PART = 8 << 20


def main():
    endpoint, bucket, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s3 = boto3.client("s3", endpoint_url=endpoint)
    key = "bench-complete-probe"
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    data = os.urandom(PART)
    parts, left, number = [], size, 1
    while left > 0:
        body = data[: min(PART, left)]
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body)["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
        left -= len(body)
        number += 1
    start = time.monotonic()
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    print(f"{time.monotonic() - start:.2f}")
    s3.delete_object(Bucket=bucket, Key=key)


if __name__ == "__main__":
    main()
