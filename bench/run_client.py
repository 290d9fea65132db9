"""Runs one mail-gateway client N times on one mail and prints
`median_wall_ms peak_rss_kb`: wall from time.perf_counter around each plain run; peak
RSS from one more run under /usr/bin/time (Python's own child accounting would count
the forked Python image). Fails if any run exits non-zero.

    python3 bench/run_client.py CLIENT MAIL RUNS URL
"""
import statistics
import subprocess
import sys
import tempfile
import time

client, mail, runs, url = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
walls = []
for _ in range(runs):
    with open(mail, "rb") as stdin:
        start = time.perf_counter()
        done = subprocess.run([client, "--url", url, "--queue", "General"], stdin=stdin, stderr=subprocess.PIPE)
        walls.append(time.perf_counter() - start)
    if done.returncode != 0:
        sys.exit(f"{client} exited {done.returncode} on {mail}: {done.stderr.decode(errors='replace')}")
with open(mail, "rb") as stdin, tempfile.NamedTemporaryFile("r") as rss:
    command = ["/usr/bin/time", "-f", "%M", "-o", rss.name, client, "--url", url, "--queue", "General"]
    subprocess.run(command, stdin=stdin, stderr=subprocess.DEVNULL, check=True)
    peak_kb = int(rss.read().split()[-1])
print(f"{statistics.median(walls) * 1000:.2f} {peak_kb}")
