#!/usr/bin/env bash
# real_programs.sh - real programs from Debian packages run unchanged on
# tessera (LD_PRELOAD) and behave exactly as on glibc's malloc.
#
# For each workload: run it once without tessera (the reference) and once
# with LD_PRELOAD=libtessera.so and TESSERA_STATS_FILE set.  The two runs
# must give the same stdout and exit status; the tessera run must print no
# "tessera:" report on stderr; and the stats file must hold a JSON line,
# with mapped > 0, from each program expected to run (proof that tessera,
# not glibc, served them).
#
# usage: real_programs.sh path/to/libtessera.so [workdir]
set -u

if [[ $# -lt 1 ]]; then
  echo "usage: $0 path/to/libtessera.so [workdir]" >&2
  exit 2
fi
lib=$(readlink -f "$1")
work=${2:-}
if [[ -z $work ]]; then
  work=$(mktemp -d /tmp/tessera-real-XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
rm -rf "$work"
mkdir -p "$work"
work=$(readlink -f "$work")

if [[ ! -f $lib ]]; then
  echo "real_programs: $lib does not exist" >&2
  exit 1
fi

PY=/usr/bin/python3
TIMEOUT=${TESS_REAL_TIMEOUT:-180}
failures=0
passes=0

fail() {
  echo "  FAIL: $*"
  failures=$((failures + 1))
}

need() {
  local missing=()
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  if ((${#missing[@]})); then
    echo "real_programs: missing ${missing[*]} (run scripts/setup-deps.sh)" >&2
    return 1
  fi
}

# check_stats FILE PROGRAM... : every PROGRAM has a line with mapped > 0
check_stats() {
  env -u LD_PRELOAD "$PY" - "$@" <<'EOF'
import json, os, sys
path, wanted = sys.argv[1], sys.argv[2:]
if not os.path.exists(path):
    print("  no stats file %s: tessera wrote nothing" % path); sys.exit(1)
seen = {}
bad = 0
with open(path) as f:
    for n, line in enumerate(f, 1):
        try:
            d = json.loads(line)
        except ValueError as e:
            print("  stats line %d is not JSON (%s): %r" % (n, e, line[:200])); bad += 1; continue
        for key in ("pid", "program", "mapped"):
            if key not in d:
                print("  stats line %d lacks %r: %r" % (n, key, line[:200])); bad += 1
        prog = os.path.basename(str(d.get("program", "")))
        if isinstance(d.get("mapped"), (int, float)) and d["mapped"] > 0:
            seen[prog] = seen.get(prog, 0) + 1
for w in wanted:
    if not any(p == w or p.startswith(w) for p in seen):
        print("  no stats line with mapped > 0 from %r (seen: %s)" % (w, sorted(seen))); bad += 1
print("  stats: %d processes: %s" % (sum(seen.values()), ", ".join("%s x%d" % kv for kv in sorted(seen.items()))))
sys.exit(1 if bad else 0)
EOF
}

# run_case NAME "PROG1 PROG2..." SETUP_FN CMD... : compare plain vs tessera
run_case() {
  local name=$1 progs=$2 setup=$3
  shift 3
  local d=$work/$name
  echo "== $name"
  mkdir -p "$d"
  local stats=$d/stats.jsonl

  $setup "$d"
  (cd "$d/run" && env -u LD_PRELOAD -u TESSERA_STATS_FILE timeout "$TIMEOUT" "$@" \
    >"$d/ref.out" 2>"$d/ref.err")
  local ref_rc=$?
  $setup "$d"
  (cd "$d/run" && env LD_PRELOAD="$lib" TESSERA_STATS_FILE="$stats" timeout "$TIMEOUT" "$@" \
    >"$d/tess.out" 2>"$d/tess.err")
  local tess_rc=$?

  local before=$failures
  if [[ $ref_rc -ne 0 ]]; then
    fail "$name: the reference run (without tessera) failed with $ref_rc"
    sed 's/^/    /' "$d/ref.err" | head -20
  fi
  if [[ $tess_rc -ne $ref_rc ]]; then
    fail "$name: exit status $tess_rc with tessera, $ref_rc without"
    sed 's/^/    /' "$d/tess.err" | tail -20
  fi
  if ! cmp -s "$d/ref.out" "$d/tess.out"; then
    fail "$name: stdout differs with tessera"
    diff "$d/ref.out" "$d/tess.out" | head -20 | sed 's/^/    /'
  fi
  if grep -q '^tessera: ' "$d/tess.err"; then
    fail "$name: tessera reported something on stderr"
    grep '^tessera: ' "$d/tess.err" | head -5 | sed 's/^/    /'
  fi
  if [[ ! -s $d/ref.out ]]; then
    fail "$name: the workload printed nothing (broken workload?)"
  fi
  # shellcheck disable=SC2086
  if ! check_stats "$stats" $progs; then
    fail "$name: tessera did not serve every process"
  fi
  if [[ $failures -eq $before ]]; then
    echo "  ok ($(wc -l <"$d/ref.out") lines of output compared)"
    passes=$((passes + 1))
  fi
}

fresh_run_dir() {
  rm -rf "$1/run"
  mkdir -p "$1/run"
}

# ---- python3: json, dicts, sorting, threads ---------------------------------
setup_python() {
  fresh_run_dir "$1"
  cat >"$1/run/work.py" <<'EOF'
import collections, hashlib, json, random, threading

random.seed(12345)
data = [{"id": i, "name": "item%05d" % i,
         "tags": ["t" + random.choice("abcdefgh") * (i % 7 + 1) for _ in range(i % 5)],
         "value": round(random.random(), 6)} for i in range(60000)]
text = json.dumps(data, sort_keys=True)
back = json.loads(text)
assert back == data
print("json", len(text), hashlib.sha256(text.encode()).hexdigest())

groups = collections.defaultdict(list)
for x in back:
    groups[x["name"][-2:]].append(x["value"])
keys = sorted(groups, key=lambda k: (-len(groups[k]), k))
print("groups", len(groups), keys[:5], round(sum(sum(v) for v in groups.values()), 3))

words = ["".join(random.choice("abcdefghijklmnop") for _ in range(random.randint(1, 12)))
         for _ in range(100000)]
words.sort()
counts = collections.Counter(words)
print("sort", words[0], words[-1], len(counts), counts.most_common(3))

results = [None] * 4
def work(k):
    acc = {}
    for i in range(40000):
        acc[str(i * (k + 1))] = [i] * (i % 4) + [str(i)] * (i % 3)
    results[k] = sum(len(v) for v in acc.values())
threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print("threads", results)

big = bytearray(8 << 20)
big[::4096] = b"x" * len(big[::4096])
print("bytes", big.count(b"x"), len(bytes(big) * 2))
EOF
}

# ---- perl: hashes, sorting, regexes, strings ---------------------------------
setup_perl() {
  fresh_run_dir "$1"
  cat >"$1/run/work.pl" <<'EOF'
use strict; use warnings; use Digest::MD5 qw(md5_hex);
my %h; my $seed = 7;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed; }
for my $i (1 .. 200000) { my $k = sprintf("key%07d", rnd() % 1000000); $h{$k} .= "v$i,"; }
my @keys = sort { length($h{$b}) <=> length($h{$a}) || $a cmp $b } keys %h;
print scalar(@keys), " keys, first $keys[0], last $keys[-1]\n";
my $text = join("\n", map { "$_=$h{$_}" } @keys[0 .. 20000]);
my @m = ($text =~ /key(\d+)7=v(\d+)/g);
print scalar(@m), " matches, md5 ", md5_hex($text), "\n";
(my $t2 = $text) =~ s/v(\d+)/"w" . ($1 * 2)/ge;
print "substituted length ", length($t2), "\n";
my @arr = map { [$_, rnd() % 1000] } 1 .. 100000;
my @sorted = sort { $a->[1] <=> $b->[1] || $a->[0] <=> $b->[0] } @arr;
print "sorted $sorted[0][0] $sorted[-1][0]\n";
my $big = "x" x (20 * 1024 * 1024); print "big ", length($big . $big), "\n";
EOF
}

# ---- ruby: hashes, arrays, strings, json, threads ------------------------------
setup_ruby() {
  fresh_run_dir "$1"
  cat >"$1/run/work.rb" <<'EOF'
require 'json'
require 'digest'
srand(4242)
data = (0...50000).map { |i| { "id" => i, "name" => "n#{i % 977}", "vals" => Array.new(i % 6) { rand(1000) } } }
text = JSON.generate(data)
back = JSON.parse(text)
raise "json mismatch" unless back == data
puts "json #{text.size} #{Digest::SHA256.hexdigest(text)}"
groups = back.group_by { |x| x["name"] }
top = groups.sort_by { |k, v| [-v.size, k] }.first(3).map { |k, v| [k, v.size] }
puts "groups #{groups.size} #{top.inspect}"
words = Array.new(100000) { (0...rand(1..10)).map { ("a".ord + rand(16)).chr }.join }
puts "sort #{words.sort.first} #{words.sort.last} #{words.tally.size}"
threads = (0...4).map { |k| Thread.new { h = {}; 30000.times { |i| h["#{i * (k + 1)}"] = [i] * (i % 4) }; h.size } }
puts "threads #{threads.map(&:value).inspect}"
s = "y" * (10 * 1024 * 1024); puts "big #{(s + s).size}"
EOF
}

# ---- sqlite3: tables, 100k rows, indexes, queries ------------------------------
setup_sqlite() {
  fresh_run_dir "$1"
  cat >"$1/run/work.sql" <<'EOF'
PRAGMA journal_mode=MEMORY;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);
CREATE TABLE g(grp INTEGER PRIMARY KEY, label TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t SELECT x, x % 97, printf('name-%06d-%s', x, hex(x * 7919)), (x * 37 % 1000) / 10.0 FROM c;
WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 96)
INSERT INTO g SELECT x, 'group ' || x FROM c;
CREATE INDEX t_grp ON t(grp, val);
SELECT count(*), sum(val), min(name), max(name) FROM t;
SELECT g.label, count(*), round(avg(t.val), 3) FROM t JOIN g USING (grp)
  GROUP BY g.label ORDER BY count(*) DESC, g.label LIMIT 5;
SELECT name FROM t WHERE grp = 13 ORDER BY val DESC, id LIMIT 3;
UPDATE t SET name = name || '-updated' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
SELECT count(*), count(DISTINCT grp), sum(length(name)) FROM t;
SELECT group_concat(id, ',') FROM (SELECT id FROM t ORDER BY name DESC LIMIT 10);
VACUUM;
SELECT count(*) FROM t;
EOF
}

# ---- git: init, commit, log, diff ----------------------------------------------
setup_git() {
  fresh_run_dir "$1"
  cat >"$1/run/work.sh" <<'EOF'
set -e
export GIT_AUTHOR_NAME=Tess GIT_AUTHOR_EMAIL=tess@example.org
export GIT_COMMITTER_NAME=Tess GIT_COMMITTER_EMAIL=tess@example.org
export GIT_CONFIG_NOSYSTEM=1 HOME=$PWD GIT_PAGER=cat PAGER=cat TZ=UTC
git init -q -b main repo
cd repo
for c in 1 2 3 4 5 6; do
  export GIT_AUTHOR_DATE="2026-01-0$c 12:00:00 +0000" GIT_COMMITTER_DATE="2026-01-0$c 12:00:00 +0000"
  for f in 1 2 3 4 5 6 7 8; do
    seq $((c * 100 + f)) $((c * 100 + f + 3000)) | sed "s/^/line $c $f /" > "file$f.txt"
  done
  mkdir -p dir$c && echo "commit $c" > dir$c/readme
  git add -A
  git commit -q -m "commit $c"
done
git log --stat --format='%H %an %s'
git diff HEAD~3 HEAD | head -200
git diff --stat HEAD~5
git gc -q
git fsck
git rev-list --count HEAD
git cat-file -p HEAD
EOF
}

# ---- gcc: compile a multi-file program, run it --------------------------------
setup_gcc() {
  fresh_run_dir "$1"
  local r=$1/run
  cat >"$r/list.h" <<'EOF'
#include <stddef.h>
typedef struct node { struct node* next; long value; char* name; } node_t;
node_t* list_build(size_t n);
long list_sum(const node_t* l);
void list_free(node_t* l);
char* join_names(const node_t* l, size_t max);
EOF
  cat >"$r/list.c" <<'EOF'
#include "list.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
node_t* list_build(size_t n) {
  node_t* head = NULL;
  for (size_t i = 0; i < n; i++) {
    node_t* x = malloc(sizeof *x);
    x->value = (long)(i * 2654435761u % 1000003);
    x->name = malloc(32);
    snprintf(x->name, 32, "node-%zu", i);
    x->next = head;
    head = x;
  }
  return head;
}
long list_sum(const node_t* l) { long s = 0; for (; l; l = l->next) s += l->value; return s; }
void list_free(node_t* l) { while (l) { node_t* n = l->next; free(l->name); free(l); l = n; } }
EOF
  cat >"$r/strings.c" <<'EOF'
#include "list.h"
#include <stdlib.h>
#include <string.h>
char* join_names(const node_t* l, size_t max) {
  size_t cap = 16, len = 0;
  char* s = malloc(cap);
  s[0] = 0;
  for (size_t i = 0; l && i < max; l = l->next, i++) {
    size_t n = strlen(l->name);
    while (len + n + 2 > cap) s = realloc(s, cap *= 2);
    memcpy(s + len, l->name, n);
    len += n;
    s[len++] = ',';
    s[len] = 0;
  }
  return s;
}
EOF
  cat >"$r/main.c" <<'EOF'
#include "list.h"
#include <stdio.h>
#include <stdlib.h>
static int cmp(const void* a, const void* b) { long x = *(const long*)a, y = *(const long*)b; return (x > y) - (x < y); }
int main(void) {
  node_t* l = list_build(200000);
  printf("sum %ld\n", list_sum(l));
  char* s = join_names(l, 20000);
  size_t n = 0; for (char* p = s; *p; p++) n += *p == ',';
  printf("joined %zu names, starts %.40s\n", n, s);
  free(s);
  long* v = malloc(200000 * sizeof *v); size_t k = 0;
  for (node_t* p = l; p; p = p->next) v[k++] = p->value;
  qsort(v, k, sizeof *v, cmp);
  printf("min %ld median %ld max %ld\n", v[0], v[k / 2], v[k - 1]);
  free(v);
  list_free(l);
  return 0;
}
EOF
  cat >"$r/build.sh" <<'EOF'
set -e
gcc -O2 -Wall -c list.c -o list.o
gcc -O2 -Wall -c strings.c -o strings.o
gcc -O2 -Wall -c main.c -o main.o
gcc -o prog main.o list.o strings.o
gcc -O0 -g -o prog-debug main.c list.c strings.c
./prog
./prog-debug
sha256sum prog main.o list.o strings.o
EOF
}

# ---- threaded tools: sort --parallel, xz -T2 ----------------------------------
# Blocks allocated by one worker thread and freed by another, in programs
# that were not written with any allocator in mind.
setup_threads() {
  fresh_run_dir "$1"
  env -u LD_PRELOAD "$PY" - "$1/run/input.txt" <<'EOF'
import random, sys
random.seed(7)
words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
with open(sys.argv[1], "w") as f:
    for i in range(300000):
        f.write("%s %08d %s\n" % (random.choice(words), random.randrange(10**8), "x" * random.randrange(40)))
EOF
  cat >"$1/run/work.sh" <<'EOF'
set -e
sort --parallel=2 -S 8M -k2,2n input.txt | sha256sum
sort --parallel=2 -S 8M -u -k1,1 input.txt | sha256sum
xz -T2 -3 --block-size=2MiB -c input.txt > input.txt.xz
xz -T2 -d -c input.txt.xz | sha256sum
EOF
}

need "$PY" perl ruby sqlite3 git gcc xz sort timeout cmp sha256sum || exit 1

run_case python "python3" setup_python "$PY" work.py
run_case perl "perl" setup_perl perl work.pl
run_case ruby "ruby" setup_ruby ruby work.rb
run_case sqlite3 "sqlite3" setup_sqlite sh -c 'sqlite3 test.db < work.sql'
run_case git "git" setup_git bash work.sh
run_case gcc "gcc cc1 as collect2 ld prog" setup_gcc bash build.sh
run_case threads "sort xz" setup_threads bash work.sh

echo "real_programs: $passes passed, $failures failed"
[[ $failures -eq 0 ]]
