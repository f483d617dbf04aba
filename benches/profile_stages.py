#!/usr/bin/env python3
"""Where a server's CPU goes, from `perf script` output with call graphs on stdin.

Each sample is charged to one thread group (by thread name) and to one stage of that
group: the first rule below whose pattern appears anywhere in its stack. Prints the share
of samples per group and per stage, and the µs per reply when given the CPU per reply.

Usage: perf script -i perf.data | benches/profile_stages.py [cpu_us_per_reply]
"""
import re
import sys
from collections import Counter

GROUPS = [
    ("runtime threads", re.compile(r"^tokio-r")),
    ("crypto pool", re.compile(r"^keycast-crypto")),
    ("SQLite threads", re.compile(r"^sqlx-sqlite")),
]

# Per group, (stage, pattern over the stack's symbols). The first match wins.
STAGES = {
    "runtime threads": [
        ("request signature check", r"schnorrsig_verify"),
        ("relay pool: reading relay messages", r"handle_relay_message|handle_incoming|"
         r"RelayMessage.*from_json|InnerRelay.*handle_"),
        ("relay pool: sending replies", r"send_event|send_msg|batch_msg|ClientMessage.*as_json"),
        ("WebSocket frames", r"tungstenite|async_wsocket"),
        ("keycast intake and reply", r"keycast_nip46|keycast_core"),
        # The peer signs and encrypts on its runtime threads.
        ("signing (BIP-340)", r"schnorrsig_sign"),
        ("NIP-44 (conversation key, ChaCha20, HMAC)", r"nip44|chacha|hmac|ecdh|Conversation"),
        ("runtime: polling, wake-ups, sleeping", r"tokio::runtime|futex|schedule|epoll"),
    ],
    "crypto pool": [
        ("signing (BIP-340)", r"schnorrsig_sign"),
        ("NIP-44 (conversation key, ChaCha20, HMAC)", r"nip44|chacha|hmac|ecdh|Conversation"),
        ("waking and sleeping", r"futex|schedule|park|recv"),
        ("the rest of the job (JSON, ids, allocation)", r"answer_transport|custody"),
    ],
    "SQLite threads": [
        ("commit: WAL write and fsync", r"sqlite3PagerCommit|pagerWalFrames|fsync"),
        ("statements (inserts, index updates)", r"sqlite3_step|sqlite3VdbeExec"),
        ("waking and sleeping", r"futex|schedule"),
    ],
}
STAGES = {g: [(name, re.compile(p)) for name, p in rules] for g, rules in STAGES.items()}

HEADER = re.compile(r"^(\S.*?)\s+\d+(?:/\d+)?\s+\[?\d*\]?\s*[\d.]+:")


def samples(lines):
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif line[0] not in " \t":
            m = HEADER.match(line)
            comm = m.group(1) if m else line.split()[0]
            frames = []
        else:
            frames.append(line.strip())
    if comm is not None:
        yield comm, frames


def main():
    per_reply = float(sys.argv[1]) if len(sys.argv) > 1 else None
    groups, stages, total = Counter(), Counter(), 0
    for comm, frames in samples(sys.stdin):
        total += 1
        group = next((g for g, p in GROUPS if p.search(comm)), "other threads")
        groups[group] += 1
        stack = "\n".join(frames)
        stage = next((s for s, p in STAGES.get(group, []) if p.search(stack)), "other")
        stages[(group, stage)] += 1
    if not total:
        sys.exit("no samples")

    def row(label, n):
        share = 100.0 * n / total
        us = f"{per_reply * n / total:8.1f} µs" if per_reply else ""
        print(f"  {label:<55} {share:5.1f} %  {us}")

    print(f"{total} samples")
    for group, n in groups.most_common():
        row(group, n)
        for (g, stage), m in stages.most_common():
            if g == group:
                row("  " + stage, m)


if __name__ == "__main__":
    main()
