# bench/programs/workload.py: the python3 workload of bench/run.
# A data-processing script: parse CSV-like text into dicts, aggregate with
# dicts and sets, sort, round-trip through JSON, join strings, and build and
# drop a tree of objects.  Python serves objects up to 512 bytes from its
# own pool (pymalloc) and takes larger strings, lists, dicts and the pools
# themselves from malloc, so both paths are exercised as in real programs.
# Run: /usr/bin/python3 workload.py [rounds]; prints a "check:" line fixed
# for a given number of rounds.
import json
import sys

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8


class Node:
    __slots__ = ("key", "left", "right", "payload")

    def __init__(self, key, payload):
        self.key, self.left, self.right, self.payload = key, None, None, payload


def insert(root, key, payload):
    if root is None:
        return Node(key, payload)
    node = root
    while True:
        if key < node.key:
            if node.left is None:
                node.left = Node(key, payload)
                return root
            node = node.left
        else:
            if node.right is None:
                node.right = Node(key, payload)
                return root
            node = node.right


def depth_sum(root):
    total, stack = 0, [(root, 1)]
    while stack:
        node, d = stack.pop()
        if node is not None:
            total += d + len(node.payload)
            stack.append((node.left, d + 1))
            stack.append((node.right, d + 1))
    return total


total = 0
for r in range(rounds):
    lines = [f"{i},{(i * 7919) % 10007},city{i % 97},{'y' * (i % 700)}" for i in range(20000)]
    text = "\n".join(lines)
    rows = [dict(zip(("id", "v", "city", "pad"), line.split(","))) for line in text.split("\n")]
    by_city = {}
    for row in rows:
        by_city.setdefault(row["city"], []).append(int(row["v"]))
    stats = {c: (len(v), sum(v), max(v)) for c, v in by_city.items()}
    back = json.loads(json.dumps(rows))
    assert back[4321] == rows[4321], "JSON round trip changed a row"
    ordered = sorted(back, key=lambda row: (int(row["v"]) % 101, row["id"]))
    root = None
    for row in ordered[:6000]:
        root = insert(root, (int(row["v"]) * 2654435761) % 1000003, row["pad"])
    words = set(" ".join(row["city"] for row in ordered).split())
    total += depth_sum(root) + sum(s[1] for s in stats.values()) % 1000 + len(words)
print("check:", total)
