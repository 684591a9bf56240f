/* barnes.c - Barnes-Hut n-body simulation: few, long-lived allocations.
 *
 * Models the behaviour of "barnes" (the SPLASH-2 hierarchical n-body code, as
 * used in the Hoard and mimalloc benchmark suites): the bodies are allocated
 * once and live for the whole run, and the octree is rebuilt every step in a
 * pool of cells that is grown with realloc and otherwise reused.  The
 * allocator is almost idle; this workload is the control that shows an
 * allocator does not slow down compute-bound code (through placement,
 * alignment, or its own start-up and memory use).
 *
 * Checks: after the last step, the tree's acceleration on sample bodies
 * (opening angle 0.2) is within 1% of the exact sum over all bodies.
 *
 * Options: --bodies N, --steps S.
 */
#include <math.h>
#include "bench.h"

typedef struct { double pos[3], vel[3], acc[3], mass; } body_t;
typedef struct { double mid[3], half, com[3], mass; int child[8]; int body; } cell_t;

static body_t* bodies;
static cell_t* cells;
static int ncells, capcells;
static double theta = 0.5;
static const double eps2 = 1e-4, dt = 1e-3;

static int new_cell(const double mid[3], double half) {
  if (ncells == capcells) {
    capcells = capcells ? capcells * 2 : 1024;
    cells = realloc(cells, sizeof(cell_t) * (size_t)capcells);
    if (!cells) bench_fail("realloc of the cell pool");
  }
  cell_t* c = &cells[ncells];
  memcpy(c->mid, mid, sizeof c->mid);
  c->half = half; c->mass = 0; c->body = -1;
  for (int i = 0; i < 8; i++) c->child[i] = -1;
  return ncells++;
}
static int octant(const cell_t* c, const double p[3]) {
  return (p[0] > c->mid[0]) | (p[1] > c->mid[1]) << 1 | (p[2] > c->mid[2]) << 2;
}
static void child_mid(const cell_t* c, int o, double m[3]) {
  for (int k = 0; k < 3; k++) m[k] = c->mid[k] + ((o >> k) & 1 ? c->half : -c->half) / 2;
}
static void insert(int ci, int b, int depth) {
  for (;;) {
    int o = octant(&cells[ci], bodies[b].pos);
    int ch = cells[ci].child[o];
    if (ch < 0) {                                  /* empty slot: a leaf */
      double m[3]; child_mid(&cells[ci], o, m);
      int l = new_cell(m, cells[ci].half / 2);
      cells[l].body = b;
      cells[ci].child[o] = l;
      return;
    }
    if (cells[ch].body >= 0 && depth < 48) {      /* a leaf: split it */
      int old = cells[ch].body;
      cells[ch].body = -1;
      insert(ch, old, depth + 1);
    }
    if (depth >= 48) return;                       /* coincident bodies: drop */
    ci = ch; depth++;
  }
}
static void summarise(int ci) {
  cell_t* c = &cells[ci];
  if (c->body >= 0) {
    c->mass = bodies[c->body].mass;
    memcpy(c->com, bodies[c->body].pos, sizeof c->com);
    return;
  }
  double m = 0, com[3] = {0, 0, 0};
  for (int i = 0; i < 8; i++) {
    int ch = cells[ci].child[i];
    if (ch < 0) continue;
    summarise(ch);
    c = &cells[ci];
    m += cells[ch].mass;
    for (int k = 0; k < 3; k++) com[k] += cells[ch].com[k] * cells[ch].mass;
  }
  c->mass = m;
  for (int k = 0; k < 3; k++) c->com[k] = m > 0 ? com[k] / m : c->mid[k];
}
static void accel_from(const double p[3], const double q[3], double m, double a[3]) {
  double d[3] = {q[0] - p[0], q[1] - p[1], q[2] - p[2]};
  double r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + eps2;
  double f = m / (r2 * sqrt(r2));
  for (int k = 0; k < 3; k++) a[k] += f * d[k];
}
static void tree_accel(int ci, int b, double a[3]) {
  const cell_t* c = &cells[ci];
  if (c->body == b || c->mass == 0) return;
  const double* p = bodies[b].pos;
  double d[3] = {c->com[0] - p[0], c->com[1] - p[1], c->com[2] - p[2]};
  double r = sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
  if (c->body >= 0 || 2 * c->half < theta * r) { accel_from(p, c->com, c->mass, a); return; }
  for (int i = 0; i < 8; i++)
    if (c->child[i] >= 0) tree_accel(c->child[i], b, a);
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  int n = (int)bench_opt(argc, argv, "--bodies", quick ? 4000 : 16000);
  int steps = (int)bench_opt(argc, argv, "--steps", quick ? 3 : 6);
  bench_rng_t rng;
  bench_seed(&rng, 3);
  double t0 = bench_now();
  bodies = bench_xmalloc(sizeof(body_t) * (size_t)n);
  for (int i = 0; i < n; i++) {                    /* a Plummer-like ball */
    double r, p[3];
    do {
      for (int k = 0; k < 3; k++) p[k] = (double)(bench_rand(&rng) >> 11) / 9007199254740992.0 * 2 - 1;
      r = p[0] * p[0] + p[1] * p[1] + p[2] * p[2];
    } while (r > 1);
    for (int k = 0; k < 3; k++) {
      bodies[i].pos[k] = p[k]; bodies[i].vel[k] = -p[(k + 1) % 3] * 0.1; bodies[i].acc[k] = 0;
    }
    bodies[i].mass = 1.0 / n;
  }
  long interactions = 0;
  for (int s = 0; s < steps; s++) {
    double lo = 1e30, hi = -1e30;
    for (int i = 0; i < n; i++)
      for (int k = 0; k < 3; k++) { lo = fmin(lo, bodies[i].pos[k]); hi = fmax(hi, bodies[i].pos[k]); }
    ncells = 0;
    double mid[3] = {(lo + hi) / 2, (lo + hi) / 2, (lo + hi) / 2};
    int root = new_cell(mid, (hi - lo) / 2 + 1e-9);
    for (int i = 0; i < n; i++) insert(root, i, 0);
    summarise(root);
    for (int i = 0; i < n; i++) {
      double a[3] = {0, 0, 0};
      tree_accel(root, i, a);
      memcpy(bodies[i].acc, a, sizeof a);
      interactions++;
    }
    for (int i = 0; i < n; i++)
      for (int k = 0; k < 3; k++) {
        bodies[i].vel[k] += bodies[i].acc[k] * dt;
        bodies[i].pos[k] += bodies[i].vel[k] * dt;
      }
  }
  double t = bench_now() - t0;
  /* Check the tree against the exact sum, with a tighter opening angle. */
  theta = 0.2;
  for (int i = 0; i < n; i += n / 16) {
    double exact[3] = {0, 0, 0}, tree[3] = {0, 0, 0};
    for (int j = 0; j < n; j++)
      if (j != i) accel_from(bodies[i].pos, bodies[j].pos, bodies[j].mass, exact);
    int root = 0;
    ncells = 0;
    double mid[3] = {cells[0].mid[0], cells[0].mid[1], cells[0].mid[2]};
    root = new_cell(mid, cells[0].half * 1.5);
    for (int j = 0; j < n; j++) insert(root, j, 0);
    summarise(root);
    tree_accel(root, i, tree);
    double e = 0, m = 0;
    for (int k = 0; k < 3; k++) { e += (tree[k] - exact[k]) * (tree[k] - exact[k]); m += exact[k] * exact[k]; }
    if (sqrt(e) > 0.01 * sqrt(m)) bench_fail("body %d: tree force off by %.1f%%", i, 100 * sqrt(e / m));
  }
  free(cells); free(bodies);
  char extra[64];
  snprintf(extra, sizeof extra, "bodies=%d steps=%d", n, steps);
  bench_report("barnes", t, (double)interactions, extra);
  return 0;
}
