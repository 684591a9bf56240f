/* error.c - the one reporter of misuse, warnings, and a formatter that
 * never allocates (the reporter may run with the heap in any state). */
#include "internal.h"

#include <stdarg.h>

static size_t put_str(char* buf, size_t size, size_t at, const char* s) {
  for (; *s != 0; s++, at++) {
    if (at + 1 < size) buf[at] = *s;
  }
  return at;
}

static size_t put_uint(char* buf, size_t size, size_t at, unsigned long long v, unsigned base, bool prefix) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v != 0);
  if (prefix) at = put_str(buf, size, at, "0x");
  while (n > 0) {
    if (at + 1 < size) buf[at] = tmp[--n];
    else --n;
    at++;
  }
  return at;
}

static int vformat(char* buf, size_t size, const char* fmt, va_list ap) {
  size_t at = 0;
  for (const char* f = fmt; *f != 0; f++) {
    if (*f != '%') {
      if (at + 1 < size) buf[at] = *f;
      at++;
      continue;
    }
    f++;
    bool left = false;
    size_t width = 0;
    if (*f == '-') {
      left = true;
      f++;
    }
    while (*f >= '0' && *f <= '9') width = width * 10 + (size_t)(*f++ - '0');
    size_t field_start = at;
    bool is_long = false, is_size = false;
    while (*f == 'l' || *f == 'z') {
      if (*f == 'z') is_size = true;
      else is_long = true;
      f++;
    }
    switch (*f) {
    case 's': at = put_str(buf, size, at, va_arg(ap, const char*)); break;
    case 'p': {
      void* p = va_arg(ap, void*);
      at = p == NULL ? put_str(buf, size, at, "(nil)") : put_uint(buf, size, at, (uintptr_t)p, 16, true);
      break;
    }
    case 'd': {
      long long v = is_size ? (long long)va_arg(ap, ptrdiff_t) : is_long ? va_arg(ap, long) : va_arg(ap, int);
      if (v < 0) {
        at = put_str(buf, size, at, "-");
        v = -v;
      }
      at = put_uint(buf, size, at, (unsigned long long)v, 10, false);
      break;
    }
    case 'u':
    case 'x': {
      unsigned long long v = is_size ? va_arg(ap, size_t) : is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
      at = put_uint(buf, size, at, v, *f == 'x' ? 16 : 10, false);
      break;
    }
    case '%': at = put_str(buf, size, at, "%"); break;
    default: at = put_str(buf, size, at, "?"); break;
    }
    /* pad to the width: after the field when left-justified, else before */
    size_t len = at - field_start;
    if (len < width) {
      size_t pad = width - len;
      if (!left && field_start + pad + len < size) {
        memmove(buf + field_start + pad, buf + field_start, len);
        memset(buf + field_start, ' ', pad);
      } else if (!left) {
        pad = 0; /* truncated anyway */
      } else {
        for (size_t i = 0; i < pad; i++) {
          if (at + 1 < size) buf[at] = ' ';
          at++;
        }
        pad = 0;
      }
      at += pad;
    }
  }
  if (size > 0) buf[at < size ? at : size - 1] = 0;
  return (int)at;
}

int _tess_format(char* buf, size_t size, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vformat(buf, size, fmt, ap);
  va_end(ap);
  return n;
}

void _tess_error(const char* call, const void* p, const char* what) {
  char msg[256];
  int n = _tess_format(msg, sizeof msg, "tessera: %s(%p): %s\n", call, p, what);
  _tess_prim_write_stderr(msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
  _tess_prim_abort();
}

void _tess_block_overwritten(const char* call, const tess_page_t* page, const tess_block_t* b) {
  /* A block on a free list that has the in-flight seal, and an aligned
   * link, was freed again by another thread, which sent it home over the
   * list's link (the low bit of a link written over fakes only the seal). */
  if (_tess_block_in_flight(page, b) && ((uintptr_t)b->next & (TESS_ALIGN - 1)) == 0) {
    _tess_error(call, b, "double free (detected later; one free came from another thread)");
  }
  _tess_error(call, b, "heap corruption: a free block was overwritten (written after free, or by an overflow)");
}

void _tess_freed_overwritten(const void* block) {
  _tess_error("malloc", block, "heap corruption: a freed block was overwritten (written after free, or by an overflow)");
}

void _tess_warning(const char* fmt, ...) {
  char msg[256];
  size_t at = (size_t)_tess_format(msg, sizeof msg, "tessera: ");
  va_list ap;
  va_start(ap, fmt);
  vformat(msg + at, sizeof msg - at - 1, fmt, ap);
  va_end(ap);
  size_t n = strlen(msg);
  msg[n++] = '\n';
  _tess_prim_write_stderr(msg, n);
}

void _tess_assert_fail(const char* expr, const char* file, int line) {
  char msg[256];
  int n = _tess_format(msg, sizeof msg, "tessera: assertion failed: %s (%s:%d)\n", expr, file, line);
  _tess_prim_write_stderr(msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
  _tess_prim_abort();
}
