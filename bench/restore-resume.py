#!/usr/bin/env python3
"""A restore killed once it is most of the way through, then the restore that goes on.

usage: restore-resume.py BINARY CONFIG DESTINATION TARGET STATE_DIR TAR_BYTES FRACTION

Starts `BINARY restore CONFIG --destination DESTINATION --target TARGET --force`, watches
its checkpoint in STATE_DIR and kills it (SIGKILL) once the checkpoint says FRACTION of
the TAR_BYTES of the tar stream are restored; then times the same restore again, which
goes on from the checkpoint. Prints a JSON line: the seconds of the second restore alone,
the tar offset it went on from and the stored byte it fetched from.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time


def checkpoint(state_dir):
    for path in glob.glob(os.path.join(state_dir, "restore-*.json")):
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None
    return None


def main():
    binary, config, destination, target, state_dir = sys.argv[1:6]
    tar_bytes, fraction = int(sys.argv[6]), float(sys.argv[7])
    args = [binary, "restore", config, "--destination", destination, "--target", target, "--force"]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = None
    while first.poll() is None:
        mark = checkpoint(state_dir)
        if mark and mark["tar_offset"] >= tar_bytes * fraction:
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed_at = mark["tar_offset"]
            break
        time.sleep(0.005)
    if killed_at is None:
        sys.exit("restore-resume.py: the restore ended before it could be killed")
    start = time.monotonic()
    second = subprocess.run([binary, "-v"] + args[1:], capture_output=True, text=True)
    seconds = time.monotonic() - start
    if second.returncode != 0:
        sys.exit(f"restore-resume.py: the second restore failed:\n{second.stderr}")
    resumed = None
    for line in (second.stdout + second.stderr).splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if "resuming the restore where it stopped" in doc.get("message", ""):
            resumed = doc["data"]
    if resumed is None:
        sys.exit("restore-resume.py: the second restore did not resume")
    print(json.dumps({"seconds": round(seconds, 2), "killed_at_tar_offset": killed_at,
                      "from_byte": resumed["from_byte"], "of_bytes": resumed["of_bytes"]}))


if __name__ == "__main__":
    main()
