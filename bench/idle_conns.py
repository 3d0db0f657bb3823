#!/usr/bin/env python3
"""bench/idle_conns.py PID HOST PORT [N=4096] [HOLD_S=3] - a server's RSS with N idle keep-alive
connections (issue 12: "RSS with 4,096 idle keep-alive connections stated").

Reads VmRSS and RssAnon of PID from /proc, opens N TCP connections to HOST:PORT, sends one
`GET /v1/health` (HTTP/1.1, keep-alive) on each and reads the whole answer, leaves them all open
and idle for HOLD_S seconds, reads the RSS again, then sends a second GET on every connection (so
the figure is for connections the server still holds, not ones it dropped), opens one more
connection to check the server still serves, closes everything and reads the RSS once more.
Prints one line:

  CONNS_RESULT n=.. opened=.. answered=.. answered_again=.. extra_ok=0|1 rss_before_kb=..
               anon_before_kb=.. rss_with_kb=.. anon_with_kb=.. rss_after_kb=.. anon_after_kb=..
               hwm_kb=.. per_conn_b=.. open_s=.. first_error=..

per_conn_b is (RssAnon with - RssAnon before) / answered. Standard library only. Raises its own
RLIMIT_NOFILE soft limit (the server's limit is the caller's business). Exit status 1 if fewer
than N connections were answered.
"""
import resource
import socket
import sys
import time

REQ_TMPL = "GET /v1/health HTTP/1.1\r\nHost: {}:{}\r\nConnection: keep-alive\r\n\r\n"


def status_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def read_answer(s, buf):
    """Reads one HTTP answer (Content-Length framed) from s; returns (status, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server before an answer")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
        elif k.strip().lower() == b"transfer-encoding":
            raise ConnectionError("chunked answer: not handled by this probe")
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server in the middle of an answer")
        rest += chunk
    return status, rest[length:]


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: idle_conns.py PID HOST PORT [N=4096] [HOLD_S=3]")
    pid, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 4096
    hold = float(sys.argv[5]) if len(sys.argv) > 5 else 3.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            sys.exit(f"idle_conns: RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    req = REQ_TMPL.format(host, port).encode()

    before = status_kb(pid)
    socks, first_error = [], ""
    t0 = time.perf_counter()
    for _ in range(n):
        try:
            s = socket.create_connection((host, port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(req)
            socks.append(s)
        except OSError as e:
            first_error = first_error or f"connect/send: {e}"
            break
    answered, alive = 0, []
    for s in socks:
        try:
            status, _ = read_answer(s, b"")
            if 200 <= status < 300:
                answered += 1
                alive.append(s)
            else:
                first_error = first_error or f"status {status}"
        except (OSError, ValueError) as e:
            first_error = first_error or f"first answer: {e}"
    open_s = time.perf_counter() - t0

    time.sleep(hold)  # idle: nothing in flight, the server's steady state with the connections
    with_conns = status_kb(pid)

    answered_again = 0
    for s in alive:
        try:
            s.sendall(req)
            status, _ = read_answer(s, b"")
            answered_again += 200 <= status < 300
        except (OSError, ValueError) as e:
            first_error = first_error or f"second answer: {e}"
    extra_ok = 0
    try:
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(req)
            extra_ok = int(200 <= read_answer(s, b"")[0] < 300)
    except (OSError, ValueError) as e:
        first_error = first_error or f"extra connection: {e}"

    for s in socks:
        s.close()
    time.sleep(1.0)
    after = status_kb(pid)
    per_conn = (with_conns["RssAnon"] - before["RssAnon"]) * 1024 // answered if answered else 0
    print(f"CONNS_RESULT n={n} opened={len(socks)} answered={answered} "
          f"answered_again={answered_again} extra_ok={extra_ok} "
          f"rss_before_kb={before['VmRSS']} anon_before_kb={before['RssAnon']} "
          f"rss_with_kb={with_conns['VmRSS']} anon_with_kb={with_conns['RssAnon']} "
          f"rss_after_kb={after['VmRSS']} anon_after_kb={after['RssAnon']} "
          f"hwm_kb={after['VmHWM']} per_conn_b={per_conn} open_s={open_s:.2f} "
          f"first_error={first_error.replace(' ', '_')}")
    sys.exit(0 if answered == n and answered_again == n else 1)


if __name__ == "__main__":
    main()
