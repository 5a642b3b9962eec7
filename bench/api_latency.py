#!/usr/bin/env python3
"""bench/api_latency.py PATH RUNS NAME=SOCKET... — the engines' own time for one API request:
one HTTP/1.1 request per fresh connection on each Unix socket, engines alternating, no client
start-up in the figure (unlike curl or the docker CLI). Prints "NAME MEDIAN_MS" per engine."""
import socket
import statistics
import sys
import time


def request(sock_path, path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n".encode())
    head = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        head = head or chunk[:12]
    s.close()
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{sock_path}: GET {path} answered {head!r}")


def main():
    path, runs, engines = sys.argv[1], int(sys.argv[2]), [a.split("=", 1) for a in sys.argv[3:]]
    times = {name: [] for name, _ in engines}
    for _ in range(runs):
        for name, sock_path in engines:
            t = time.perf_counter()
            request(sock_path, path)
            times[name].append((time.perf_counter() - t) * 1000)
    for name, v in times.items():
        print(name, f"{statistics.median(v):.2f}")


main()
