/* block_start.c - the one-multiply, one-compare test free uses to decide
 * whether a pointer is the start of a carved block (_tess_is_block_start,
 * with page->div_magic and page->limit as _tess_page_set_blocks sets them),
 * checked against plain division.
 *
 * The free fast path trusts this test to reject interior pointers, pointers
 * into the page's tail and into blocks not yet carved; a wrong answer there
 * would put a block on a free list twice or hand out overlapping memory.
 * So every offset in and around the page is checked, for every size class
 * tessera uses, for every block size up to 4160 bytes, and for powers of two
 * and their neighbours up to 4 MiB (large blocks), each with several
 * carved-block counts.
 *
 * Only the page's fields are used: no memory is allocated or touched.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "../src/alloc_inline.h"

static long cases;

/* Offsets from `before` bytes ahead of the start to one page-and-a-bit
 * after it, for blocks of size d, `cap` of `reserved` carved. */
static void check_size(size_t d, uint32_t reserved, uint32_t cap, size_t step) {
  tess_page_t page;
  memset(&page, 0, sizeof page);
  page.start = (uint8_t*)(uintptr_t)0x40000000;
  _tess_page_set_blocks(&page, d, cap);
  size_t area = (size_t)cap * d, span = (size_t)reserved * d + 2 * d + 4096;
  long bad = 0;
  for (size_t x = 0; x < span; x += (x < 2 * d || (x + 2 * d > area && x < area + 2 * d)) ? 1 : step) {
    bool want = x < area && x % d == 0;
    if (_tess_is_block_start(&page, x) != want && bad++ < 3) {
      CHECK_MSG(false, "d=%zu cap=%u off=%zu: got %d", d, cap, x, !want);
    }
    cases++;
  }
  /* Before the start (a pointer into the segment header or a previous
   * slice): never a block start. */
  for (size_t back = 1; back <= 65536; back += back < 256 ? 1 : 61) {
    if (_tess_is_block_start(&page, (uintptr_t)0 - back) && bad++ < 3) {
      CHECK_MSG(false, "d=%zu cap=%u off=-%zu taken as a block start", d, cap, back);
    }
    cases++;
  }
  CHECK_MSG(bad == 0, "d=%zu cap=%u: %ld wrong answers", d, cap, bad);
}

static void check_all_caps(size_t d, size_t page_bytes, size_t step) {
  uint32_t reserved = (uint32_t)(page_bytes / d);
  if (reserved == 0) reserved = 1;
  uint32_t caps[] = {0, 1, 2, reserved / 2, reserved - 1, reserved};
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    if (caps[i] <= reserved) check_size(d, reserved, caps[i], step);
  }
}

int main(void) {
  /* Every class of small and medium pages, every offset (step 1) on small
   * pages, a prime stride elsewhere plus every byte near the edges. */
  for (size_t bin = 1; bin <= TESS_BIN_MEDIUM_LAST; bin++) {
    size_t d = _tess_bin_size(bin);
    size_t page_bytes = bin <= TESS_BIN_SMALL_LAST ? TESS_SLICE_SIZE : 8 * TESS_SLICE_SIZE;
    check_all_caps(d, page_bytes, bin <= TESS_BIN_SMALL_LAST ? 1 : 7);
  }
  /* Any block size, not only the classes. */
  for (size_t d = 1; d <= 4160; d++) check_all_caps(d, TESS_SLICE_SIZE, 13);
  /* Large blocks: one per span, sizes up to a segment. */
  for (size_t d = 4096; d <= TESS_SEGMENT_SIZE; d *= 2) {
    size_t ds[] = {d - 16, d, d + 16, d + d / 2};
    for (size_t i = 0; i < 4; i++) check_size(ds[i], 1, 1, 4093);
  }
  printf("block_start: %ld offsets checked\n", cases);
  return th_done();
}
