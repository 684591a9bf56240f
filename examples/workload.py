"""The default example that ./run puts on tessera: a small, allocation-heavy
Python program (object graphs, JSON round trips, string building, sorting,
and a few threads), deterministic, printing a checksum of what it computed so
runs under different allocators can be compared."""
import hashlib
import json
import random
import threading


def build_records(rng, n):
    return [
        {
            "id": i,
            "name": "item-%d-%s" % (i, "x" * rng.randrange(1, 40)),
            "tags": [rng.choice("abcdefgh") * rng.randrange(1, 8) for _ in range(rng.randrange(0, 6))],
            "score": rng.random(),
        }
        for i in range(n)
    ]


def churn(seed, rounds, out, slot):
    rng = random.Random(seed)
    digest = hashlib.sha256()
    for _ in range(rounds):
        records = build_records(rng, 4000)
        text = json.dumps(records, sort_keys=True)
        back = json.loads(text)
        back.sort(key=lambda r: (r["score"], r["id"]))
        digest.update(("|".join(r["name"] for r in back[:200])).encode())
        words = {}
        for r in back:
            for t in r["tags"]:
                words[t] = words.get(t, 0) + 1
        digest.update(repr(sorted(words.items())).encode())
    out[slot] = digest.hexdigest()


def main():
    results = [None] * 4
    threads = [threading.Thread(target=churn, args=(seed, 6, results, seed)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("checksum", hashlib.sha256("".join(results).encode()).hexdigest()[:16])


if __name__ == "__main__":
    main()
