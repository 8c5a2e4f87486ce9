#!/usr/bin/env python3
"""The benchmark's report: the JSON of a run and its Markdown table.

usage: python3 bench/report.py collect RESULTS.tsv OUT.json --size SIZE --source-bytes N
                                       --source-files N --runs N [--single-file] [--only REGEX]
                                       [--restores-into WHERE] [--s3-complete SECONDS]
                                       [--one-file-fetched BYTES] [--s3-archive-bytes BYTES]
                                       [--resumed-from BYTE]
                                       [--service-backup VERSION] [--restic VERSION]
                                       [--openssl VERSION]
       python3 bench/report.py show RESULTS.json

collect  reads the cases bench/run.sh measured (one tab-separated line each: name, group,
         tool, label, wall times, peak RSS in KiB, stored bytes, status), adds the medians,
         MB/s and ratios and a description of this machine, writes OUT.json and prints the
         table.
show     prints the table of a JSON that collect wrote (bench/results/).
"""

import argparse
import datetime
import json
import os
import statistics
import sys


def read_cases(path, source_bytes):
    """The rows of the results file, with medians, MB/s and the ratios between tools."""
    rows = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            name, group, tool, label, walls, rss, stored, status = line.rstrip("\n").split("\t")
            walls = [float(w) for w in walls.split()] if walls else []
            rows.append(dict(case=name, group=group, tool=tool, label=label, status=status,
                             walls_s=walls,
                             median_s=statistics.median(walls) if walls else None,
                             peak_rss_kib=int(rss) if rss else None,
                             stored_bytes=int(stored) if stored else None))
    ref = {}
    for r in rows:
        if r["median_s"] is not None:
            ref[(r["group"], r["tool"])] = r["median_s"]
            # A restore that goes on from a checkpoint restores only what was left.
            whole = r["median_s"] > 0 and "resume" not in r["case"]
            r["mb_per_s"] = round(source_bytes / 1e6 / r["median_s"], 1) if whole else None

    def ratio(r, tool):
        other = ref.get((r["group"], tool))
        if r["median_s"] is None or not other:
            return None
        return round(r["median_s"] / other, 2)

    for r in rows:
        r["time_vs_pipeline"] = ratio(r, "pipeline")
        r["time_vs_restic"] = ratio(r, "restic")
    return rows


def machine():
    """This machine: CPUs usable here (as nproc counts them), CPU model, memory, kernel, load."""
    cpu = ""
    memory_kib = 0
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(": ", 1)[1].rstrip("\n")
                break
    with open("/proc/meminfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("MemTotal"):
                memory_kib = int(line.split()[1])
                break
    with open("/proc/loadavg", encoding="utf-8") as load:
        load_average = " ".join(load.read().split()[:3])
    uname = os.uname()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_kib": memory_kib,
        "kernel": f"{uname.sysname} {uname.release}",
        "load_average_at_start": load_average,
    }


def collect(args):
    """The run's JSON document, written to args.out."""
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size": args.size, "single_file": args.single_file, "only": args.only or None,
        "source_bytes": args.source_bytes, "source_files": args.source_files, "runs": args.runs,
        "restores_into": args.restores_into,
        "service_backup": args.service_backup,
        "restic": args.restic,
        "openssl": args.openssl,
        "machine": machine(), "cases": read_cases(args.results, args.source_bytes),
        "s3_server_complete_s": args.s3_complete,
        "one_file_fetched_bytes": args.one_file_fetched,
        "s3_archive_bytes": args.s3_archive_bytes,
        "resumed_from_byte": args.resumed_from,
    }
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(doc, out, indent=2, ensure_ascii=False)
        out.write("\n")
    return doc


def fmt(x, f):
    return "—" if x is None else f(x)


def print_table(doc):
    """The summary line, the Markdown table and the notes under it."""
    src = doc["source_bytes"]
    machine = doc["machine"]
    rows = doc["cases"]
    print()
    print(f"{src / 1e6:.0f} MB in {doc['source_files']} files, {doc['runs']} run(s) each; "
          f"{machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_kib'] // 1024} MiB; "
          f"load at start {machine['load_average_at_start']}; restores into {doc.get('restores_into')}")
    print()
    print("| case | wall median (min–max) | MB/s | vs pipeline | vs restic | stored | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        label = r["label"].replace("|", "\\|")  # a pipe inside a Markdown cell
        if r["status"] != "ok":
            print(f"| {label} | {r['status']} | | | | | |")
            continue
        w = r["walls_s"]
        spread = f" ({min(w):.2f}–{max(w):.2f})" if len(w) > 1 else ""
        stored = fmt(r["stored_bytes"], lambda b: f"{b / 1e6:.1f} MB")
        if r["case"] == "sb_backup_fanout" and r["stored_bytes"] is not None:
            stored += " ×3"
        print(f"| {label} | {r['median_s']:.2f} s{spread} | {fmt(r['mb_per_s'], lambda x: f'{x:.1f}')} | "
              f"{fmt(r['time_vs_pipeline'], lambda x: f'{x:.2f}×')} | {fmt(r['time_vs_restic'], lambda x: f'{x:.2f}×')} | "
              f"{stored} | {r['peak_rss_kib'] / 1024:.0f} MiB |")
    # Results written before these keys existed have neither.
    if doc.get("s3_server_complete_s") is not None:
        print()
        print(f"moto alone takes {doc['s3_server_complete_s']:.2f} s to complete a multipart upload of the size of "
              "our S3 backup (CompleteMultipartUpload, timed apart): a wait at the end of each S3 backup that "
              "real S3 does not have.")
    # Results written before the one-thread row have no such line.
    by_case = {r["case"]: r["median_s"] for r in rows if r["status"] == "ok"}
    every, one = by_case.get("sb_restore_local"), by_case.get("sb_restore_local_1thread")
    if every and one:
        restic = by_case.get("restic_restore_local")
        against = f", {restic / every:.2f}× as fast as restic's" if restic else ""
        print()
        print(f"restore ← local, decompressing on every core: {one / every:.2f}× as fast as on one "
              f"decompression thread{against}.")
    # Results written before the deflate-limit row have no such line.
    ours, limit = by_case.get("sb_backup_local"), by_case.get("limit_deflate")
    if ours and limit:
        print()
        print(f"backup → local runs at {limit / ours:.0%} of this machine's deflate limit ({limit:.2f} s: "
              "libdeflate level 6 alone, on every core, over the same blocks' compressible parts).")
    # Results written before the server's GET row have no such line.
    s3, get = by_case.get("sb_restore_s3"), by_case.get("server_get_s3")
    if s3 and get:
        print()
        print(f"restore ← S3 takes {s3 / get:.2f}× the time moto takes to serve the archive alone "
              f"({get:.2f} s for one GET, read and discarded).")
    resumed, whole = by_case.get("sb_restore_resume_s3"), by_case.get("sb_restore_s3")
    if resumed and whole:
        start, archive = doc.get("resumed_from_byte"), doc.get("s3_archive_bytes")
        fetched = f", fetching the archive from byte {start} ({1 - start / archive:.1%} of it)" if start and archive else ""
        print()
        print(f"restore ← S3 killed at 90 %: the restore that goes on takes {resumed:.2f} s, "
              f"{resumed / whole:.0%} of a whole restore's {whole:.2f} s{fetched}.")
    fetched, archive = doc.get("one_file_fetched_bytes"), doc.get("s3_archive_bytes")
    if fetched is not None and archive:
        one = by_case.get("sb_restore_one_file_s3")
        took = f" in {one:.2f} s" if one else ""
        print()
        print(f"restore --include of one file fetched {fetched / 1e6:.2f} MB, {fetched / archive:.2%} of the "
              f"{archive / 1e9:.2f} GB archive{took}.")
    ranged, local = by_case.get("server_range_s3"), by_case.get("sb_restore_one_file_local")
    if ranged:
        print(f"moto takes {ranged:.2f} s to answer one ranged GET of 1 MiB of that archive, on its own.")
    if local:
        print(f"restore --include of the same file from `local`: {local:.2f} s.")
    print()
    print("vs pipeline / vs restic: wall time divided by that of the shell pipeline / restic for the same")
    print("operation and destination (below 1 is faster). Peak RSS of a pipeline: its largest process.")


def main():
    parser = argparse.ArgumentParser(description="The benchmark's JSON and Markdown table.")
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("collect", help="write the JSON of a run and print its table")
    c.add_argument("results", help="the cases bench/run.sh measured, one tab-separated line each")
    c.add_argument("out", help="the JSON file to write")
    c.add_argument("--size", required=True)
    c.add_argument("--single-file", action="store_true")
    c.add_argument("--only", default="")
    c.add_argument("--source-bytes", type=int, required=True)
    c.add_argument("--source-files", type=int, required=True)
    c.add_argument("--runs", type=int, required=True)
    c.add_argument("--restores-into", default="")
    c.add_argument("--s3-complete", type=float, default=None)
    c.add_argument("--one-file-fetched", type=int, default=None)
    c.add_argument("--s3-archive-bytes", type=int, default=None)
    c.add_argument("--resumed-from", type=int, default=None)
    c.add_argument("--service-backup", default="")
    c.add_argument("--restic", default="")
    c.add_argument("--openssl", default="")
    s = commands.add_parser("show", help="print the table of a JSON that collect wrote")
    s.add_argument("json")
    args = parser.parse_args()
    if args.command == "collect":
        doc = collect(args)
    else:
        with open(args.json, encoding="utf-8") as f:
            doc = json.load(f)
    print_table(doc)


if __name__ == "__main__":
    sys.exit(main())
