/* json_check.h - a strict little JSON validator for the statistics output.
 *
 * json_check_object(s) returns NULL when s is exactly one JSON object
 * (surrounding whitespace allowed), else a short description of the first
 * problem.  json_get_number(s, key, &v) finds a top-level "key": number.
 * Enough for checking tessera's JSON lines; not a general parser.
 */
#ifndef TESS_TEST_JSON_CHECK_H
#define TESS_TEST_JSON_CHECK_H

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char* json_err_;

static const char* json_ws_(const char* s) {
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  return s;
}

static const char* json_value_(const char* s, int depth);

static const char* json_string_(const char* s) {
  if (*s != '"') return json_err_ = "expected a string", NULL;
  for (s++;; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == 0) return json_err_ = "unterminated string", NULL;
    if (c < 0x20) return json_err_ = "control character in string", NULL;
    if (c == '"') return s + 1;
    if (c == '\\') {
      s++;
      if (*s == 'u') {
        for (int i = 1; i <= 4; i++)
          if (!isxdigit((unsigned char)s[i])) return json_err_ = "bad \\u escape", NULL;
        s += 4;
      } else if (!strchr("\"\\/bfnrt", *s) || *s == 0) {
        return json_err_ = "bad escape", NULL;
      }
    }
  }
}

static const char* json_number_(const char* s) {
  const char* start = s;
  if (*s == '-') s++;
  if (*s == '0') s++;
  else if (*s >= '1' && *s <= '9') while (isdigit((unsigned char)*s)) s++;
  else return json_err_ = "bad number", NULL;
  if (*s == '.') {
    s++;
    if (!isdigit((unsigned char)*s)) return json_err_ = "bad fraction", NULL;
    while (isdigit((unsigned char)*s)) s++;
  }
  if (*s == 'e' || *s == 'E') {
    s++;
    if (*s == '+' || *s == '-') s++;
    if (!isdigit((unsigned char)*s)) return json_err_ = "bad exponent", NULL;
    while (isdigit((unsigned char)*s)) s++;
  }
  return s > start ? s : NULL;
}

static const char* json_container_(const char* s, int depth, char open, char close) {
  if (depth > 32) return json_err_ = "nested too deep", NULL;
  s = json_ws_(s + 1);
  if (*s == close) return s + 1;
  for (;;) {
    if (open == '{') {
      s = json_string_(s);
      if (!s) return NULL;
      s = json_ws_(s);
      if (*s != ':') return json_err_ = "expected ':'", NULL;
      s = json_ws_(s + 1);
    }
    s = json_value_(s, depth + 1);
    if (!s) return NULL;
    s = json_ws_(s);
    if (*s == close) return s + 1;
    if (*s != ',') return json_err_ = "expected ',' or end of container", NULL;
    s = json_ws_(s + 1);
  }
}

static const char* json_value_(const char* s, int depth) {
  s = json_ws_(s);
  switch (*s) {
    case '{': return json_container_(s, depth, '{', '}');
    case '[': return json_container_(s, depth, '[', ']');
    case '"': return json_string_(s);
    case 't': return strncmp(s, "true", 4) ? (json_err_ = "bad literal", NULL) : s + 4;
    case 'f': return strncmp(s, "false", 5) ? (json_err_ = "bad literal", NULL) : s + 5;
    case 'n': return strncmp(s, "null", 4) ? (json_err_ = "bad literal", NULL) : s + 4;
    default: return json_number_(s);
  }
}

static const char* json_check_object(const char* s) {
  json_err_ = "bad value";
  s = json_ws_(s);
  if (*s != '{') return "does not start with '{'";
  s = json_value_(s, 0);
  if (!s) return json_err_;
  s = json_ws_(s);
  if (*s) return "text after the object";
  return NULL;
}

/* The value of "key" (at any depth; keys are unique in our objects): a
 * pointer to its first character, or NULL. */
__attribute__((unused)) static const char* json_value_of_(const char* s, const char* key) {
  char pat[128];
  size_t klen = strlen(key);
  if (klen + 3 > sizeof pat) return NULL;
  pat[0] = '"';
  memcpy(pat + 1, key, klen);
  pat[klen + 1] = '"';
  pat[klen + 2] = 0;
  for (const char* p = strstr(s, pat); p; p = strstr(p + 1, pat)) {
    const char* v = json_ws_(p + klen + 2);
    if (*v == ':') return json_ws_(v + 1);
  }
  return NULL;
}

/* Find "key": <number>. */
__attribute__((unused)) static int json_get_number(const char* s, const char* key, double* out) {
  const char* v = json_value_of_(s, key);
  if (v == NULL) return 0;
  char* end;
  double d = strtod(v, &end);
  if (end == v) return 0;
  *out = d;
  return 1;
}

/* Copy the string value of "key" (no escapes decoded) into buf. */
__attribute__((unused)) static int json_get_string(const char* s, const char* key, char* buf, size_t cap) {
  const char* v = json_value_of_(s, key);
  if (v == NULL || *v != '"') return 0;
  v++;
  size_t n = 0;
  while (v[n] && v[n] != '"') {
    if (v[n] == '\\' && v[n + 1]) n++;
    n++;
  }
  if (n >= cap) n = cap - 1;
  memcpy(buf, v, n);
  buf[n] = 0;
  return 1;
}

#endif /* TESS_TEST_JSON_CHECK_H */
