/* prodcons.c - producer/consumer: some threads only allocate, others only free.
 *
 * Models a pipeline (a network reader filling buffers that worker threads
 * consume and release; the "xmalloc-test" and mimalloc's "mstress"
 * transfer pattern): producers allocate messages of random size
 * (16 B - 2 KiB, log-uniform) in batches of 64 and pass each batch through
 * a bounded queue; consumers check and free every message and the batch.
 * Every free is remote: the allocator must move memory from the consumers
 * back to the producers.
 *
 * Checks: each message's stamps (size and address hash) when consumed.
 *
 * Options: --threads N (half produce, half consume; at least one of each),
 *          --messages M (in total).
 */
#include "bench.h"

#define BATCH 64
#define QCAP 64

static void** queue[QCAP];
static size_t qhead, qtail;                 /* monotonic counters */
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qnotfull = PTHREAD_COND_INITIALIZER, qnotempty = PTHREAD_COND_INITIALIZER;
static long producers, consumers, batches_per_producer;

static void push(void** b) {
  pthread_mutex_lock(&qlock);
  while (qtail - qhead == QCAP) pthread_cond_wait(&qnotfull, &qlock);
  queue[qtail++ % QCAP] = b;
  pthread_cond_signal(&qnotempty);
  pthread_mutex_unlock(&qlock);
}
static void** pop(void) {
  pthread_mutex_lock(&qlock);
  while (qtail == qhead) pthread_cond_wait(&qnotempty, &qlock);
  void** b = queue[qhead++ % QCAP];
  pthread_cond_signal(&qnotfull);
  pthread_mutex_unlock(&qlock);
  return b;
}
static void* producer(void* arg) {
  bench_rng_t rng;
  bench_seed(&rng, (uint64_t)(long)arg + 100);
  for (long k = 0; k < batches_per_producer; k++) {
    void** b = bench_xmalloc(sizeof(void*) * BATCH);
    for (int i = 0; i < BATCH; i++) {
      size_t n = bench_logsize(&rng, 16, 2048);
      b[i] = bench_xmalloc(n);
      bench_sstamp(b[i], n);
    }
    push(b);
  }
  return NULL;
}
static void* consumer(void) {
  for (;;) {
    void** b = pop();
    if (b == NULL) return NULL;                /* end marker */
    for (int i = 0; i < BATCH; i++) { bench_scheck(b[i]); free(b[i]); }
    free(b);
  }
}
static void* role(void* arg) {
  long i = (long)arg;
  return i < producers ? producer(arg) : consumer();
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  long threads = bench_opt(argc, argv, "--threads", 4);
  long messages = bench_opt(argc, argv, "--messages", quick ? 1000000 : 8000000);
  producers = threads / 2 > 0 ? threads / 2 : 1;
  consumers = threads - producers > 0 ? threads - producers : 1;
  batches_per_producer = messages / BATCH / producers;
  pthread_t* t = bench_xmalloc(sizeof(pthread_t) * (size_t)(producers + consumers));
  double t0 = bench_now();
  for (long i = 0; i < producers + consumers; i++)
    if (pthread_create(&t[i], NULL, role, (void*)i) != 0) bench_fail("pthread_create");
  for (long i = 0; i < producers; i++) pthread_join(t[i], NULL);
  for (long i = 0; i < consumers; i++) push(NULL);
  for (long i = producers; i < producers + consumers; i++) pthread_join(t[i], NULL);
  double secs = bench_now() - t0;
  free(t);
  char extra[64];
  snprintf(extra, sizeof extra, "producers=%ld consumers=%ld", producers, consumers);
  bench_report("prodcons", secs, (double)(batches_per_producer * producers * BATCH), extra);
  return 0;
}
