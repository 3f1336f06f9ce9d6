/* The compiled fast path of a proof, format v1 and v2 (store/native_line.py wraps it).
 *
 * canonical_line(line) builds C(step) (docs/hash-chain-v1.md) from one raw COPY text line
 * in STEP_COLUMNS order, exactly as store/step_line_decoder.py's fast path does, or returns
 * None for any line it is not certain of: a backslash anywhere (NULLs, COPY escapes, JSON
 * escapes), a number in exponent form or with 16+ significant digits, -0, an astral
 * character in a JSON key (JCS orders keys by UTF-16 code units), a duplicate key, invalid
 * UTF-8, an odd timestamp, nesting deeper than NATIVE_MAX_DEPTH.  Such lines take the pure
 * path, which words every failure.
 *
 * walk(lines, start, prev, prev_hex, next_index, stop) checks rules 2-3 over the lines from
 * `start` while each one is fast, carries the expected step_index and prev_hash, and its
 * step_hash is SHA-256(prev || C(step)); it stops after the step that reaches index `stop`
 * (the sealed length), so the caller knows the head there.  Returns (consumed, prev).
 *
 * canonical_line_v2 / walk_v2 do the same for format v2 (docs/hash-chain-v2.md): C2(step)
 * of a STEP_V2_COLUMNS line, as store/step_rows_v2.py's StepV2Decoder builds it, and a walk
 * that also checks each row's chain position (see "format v2" below).
 *
 * SHA-256 is OpenSSL's libcrypto (the interpreter's _hashlib uses the same library).
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_API_COMPAT 0x10100000L
#include <Python.h>
#include <openssl/sha.h>
#include <string.h>

#define NATIVE_MAX_DEPTH 64
#define FIELDS 16

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (b->len + n > b->cap && buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

#define PUT_LIT(b, s) buf_put((b), (s), (Py_ssize_t)(sizeof(s) - 1))

/* Result codes: 0 ok, 1 not fast (refuse), -1 memory error (Python error set). */
#define NOT_FAST 1

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (no surrogates, no overlongs, <= U+10FFFF), or 0. */
static int utf8_seq(const unsigned char *s, const unsigned char *end) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        if (end - s < 2 || (s[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c < 0xF0) {
        if (end - s < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (end - s < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
            (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* beyond U+10FFFF */
        return 4;
    }
    return 0;
}

/* A text column as a JSON string (orjson's escaping, which is JCS's). No backslash can
 * reach here (the line was refused), but `"` and control bytes can. */
static int put_json_string(Buf *b, const unsigned char *s, Py_ssize_t n) {
    const unsigned char *end = s + n;
    static const char hex[] = "0123456789abcdef";
    if (buf_reserve(b, n + 2) < 0) return -1;
    b->data[b->len++] = '"';
    while (s < end) {
        unsigned char c = *s;
        if (c >= 0x20 && c != '"' && c != '\\') {
            int k = utf8_seq(s, end);
            if (k == 0) return NOT_FAST;
            if (buf_put(b, (const char *)s, k) < 0) return -1;
            s += k;
            continue;
        }
        char esc[6];
        Py_ssize_t m = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            m = 6;
        }
        if (buf_put(b, esc, m) < 0) return -1;
        s++;
    }
    return buf_put(b, "\"", 1);
}

/* ---- numbers -------------------------------------------------------------------------- */

/* A decimal number without exponent, [-]digits[.digits], not zero with a minus sign, as
 * ES6 prints its double (es6_number of integrity/canonical.py): an integer of at most 15
 * digits as it is (within 2^53); a fraction of at most 17 significant digits as repr() of
 * its nearest double without the `.0`, refused when repr() takes an exponent.
 *
 * v2 (a format-v2 jsonb number, docs/hash-chain-v2.md "exact numbers"): only numbers whose
 * exact value is the value of ES6(nearest double) are taken, written ES6(d) (plain RFC
 * 8785); every other one is refused, so the pure path writes its exact form.  Taken: zero of
 * either sign ("0": -0 has the value 0), an integer within 2^53, a fraction of at most 15
 * significant digits in ES6's plain range, and one of 16-17 significant digits whose text,
 * trailing zeros dropped, is repr() of its double (then the double's value is the text's). */
static int put_decimal_mode(Buf *b, const char *s, Py_ssize_t n, int allow_fraction, int v2);

static int put_decimal(Buf *b, const char *s, Py_ssize_t n, int allow_fraction) {
    return put_decimal_mode(b, s, n, allow_fraction, 0);
}

static int put_decimal_mode(Buf *b, const char *s, Py_ssize_t n, int allow_fraction, int v2) {
    char tmp[400];
    if (n <= 0 || n >= (Py_ssize_t)sizeof(tmp)) return NOT_FAST;
    Py_ssize_t i = 0;
    int negative = 0;
    if (s[0] == '-') { negative = 1; i = 1; }
    Py_ssize_t int_start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    Py_ssize_t int_len = i - int_start;
    if (int_len == 0) return NOT_FAST;
    if (int_len > 1 && s[int_start] == '0') return NOT_FAST; /* not JSON / not float8 text */
    Py_ssize_t frac_len = 0;
    if (i < n) {
        if (!allow_fraction || s[i] != '.') return NOT_FAST;
        i++;
        Py_ssize_t f = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        frac_len = i - f;
        if (frac_len == 0 || i != n) return NOT_FAST;
    }
    /* significant digits: from the first non-zero digit to the last non-zero one */
    Py_ssize_t first = -1, last = -1, pos = 0;
    for (Py_ssize_t j = int_start; j < n; j++) {
        if (s[j] == '.') continue;
        if (s[j] != '0') {
            if (first < 0) first = pos;
            last = pos;
        }
        pos++;
    }
    if (first < 0) { /* zero */
        if (negative && !v2) return NOT_FAST;
        return buf_put(b, "0", 1);
    }
    if (frac_len == 0) {
        /* an integer of at most 15 digits: its own digits (within 2^53); v2 also takes the
         * 16-digit ones up to 2^53 (exact doubles, ES6 writes their digits) */
        if (int_len > 15 &&
            !(v2 && int_len == 16 && memcmp(s + int_start, "9007199254740992", 16) <= 0))
            return NOT_FAST;
        return buf_put(b, s, n);
    }
    Py_ssize_t significant = last - first + 1;
    if (significant <= 15 && int_len <= 21 && first <= int_len + 5) {
        /* At most 15 significant digits (DBL_DIG): the double's shortest round-trip digits
         * are the text's own, so ES6 prints the text without its trailing zeros (and its
         * point), in plain form for 1e-6 <= |x| < 1e21: the first non-zero digit at most
         * 5 places after the point, at most 21 digits before it. */
        Py_ssize_t keep = n;
        while (s[keep - 1] == '0') keep--;
        if (s[keep - 1] == '.') keep--;
        return buf_put(b, s, keep);
    }
    /* at most 17: the stored-number rule (docs/stored-numbers.md) accepts the text, and it
     * denotes its nearest double, printed the shortest way */
    if (significant > 17) return NOT_FAST;
    Py_ssize_t kept = n; /* v2: the text without trailing fraction zeros (and point) */
    while (s[kept - 1] == '0') kept--;
    if (s[kept - 1] == '.') kept--;
    memcpy(tmp, s, (size_t)n);
    tmp[n] = '\0';
    char *endp = NULL;
    double x = PyOS_string_to_double(tmp, &endp, NULL);
    if (x == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return NOT_FAST; }
    if (endp != tmp + n || x == 0.0) return NOT_FAST;
    char *r = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL) return -1;
    size_t rl = strlen(r);
    int rc;
    if (strchr(r, 'e') != NULL || strchr(r, 'n') != NULL) {
        rc = NOT_FAST;
    } else {
        if (rl >= 2 && r[rl - 2] == '.' && r[rl - 1] == '0') rl -= 2;
        if (v2 && ((Py_ssize_t)rl != kept || memcmp(r, s, rl) != 0))
            rc = NOT_FAST; /* another value than its double's: the exact form, pure path */
        else
            rc = buf_put(b, r, (Py_ssize_t)rl);
    }
    PyMem_Free(r);
    return rc;
}

/* ---- JSON (jsonb output text) --------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    int v2; /* format v2's number rule (put_decimal_mode) */
} Src;

typedef struct {
    const char *key;     /* into the source */
    Py_ssize_t key_len;
    Py_ssize_t val_at;   /* into the scratch buffer */
    Py_ssize_t val_len;
} Member;

static void skip_ws(Src *src) {
    while (src->p < src->end && *src->p == ' ') src->p++;
}

static int json_value(Src *src, Buf *out, int depth);

/* A string's bytes (no escapes can occur: the line holds no backslash). */
static int json_string_span(Src *src, const unsigned char **start, Py_ssize_t *len,
                            int is_key) {
    if (src->p >= src->end || *src->p != '"') return NOT_FAST;
    const unsigned char *s = ++src->p;
    while (src->p < src->end) {
        unsigned char c = *src->p;
        if (c == '"') {
            *start = s;
            *len = src->p - s;
            src->p++;
            return 0;
        }
        if (c < 0x20 || c == '\\') return NOT_FAST;
        if (c < 0x80) { src->p++; continue; }
        if (is_key && c >= 0xF0) return NOT_FAST; /* astral: UTF-16 key order differs */
        int k = utf8_seq(src->p, src->end);
        if (k == 0) return NOT_FAST;
        src->p += k;
    }
    return NOT_FAST;
}

static int member_cmp(const void *a, const void *b) {
    const Member *x = a, *y = b;
    Py_ssize_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, (size_t)n);
    if (c != 0) return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Few members (the common case): an insertion sort, no callback per comparison. */
static void sort_members(Member *m, Py_ssize_t count) {
    if (count > 24) {
        qsort(m, (size_t)count, sizeof(Member), member_cmp);
        return;
    }
    for (Py_ssize_t i = 1; i < count; i++) {
        Member x = m[i];
        Py_ssize_t j = i;
        while (j > 0 && member_cmp(&m[j - 1], &x) > 0) {
            m[j] = m[j - 1];
            j--;
        }
        m[j] = x;
    }
}

static int json_object(Src *src, Buf *out, int depth) {
    src->p++; /* { */
    skip_ws(src);
    if (src->p < src->end && *src->p == '}') {
        src->p++;
        return PUT_LIT(out, "{}");
    }
    Member small[16];
    Member *members = small;
    Py_ssize_t count = 0, cap = 16;
    /* The members' values are written after `base` in source order, then laid out again
     * in key order from a copy. */
    Py_ssize_t base = out->len;
    char local[2048];
    char *copy = NULL;
    int rc = 0;
    for (;;) {
        const unsigned char *key;
        Py_ssize_t key_len;
        skip_ws(src);
        if ((rc = json_string_span(src, &key, &key_len, 1)) != 0) goto done;
        skip_ws(src);
        if (src->p >= src->end || *src->p != ':') { rc = NOT_FAST; goto done; }
        src->p++;
        skip_ws(src);
        if (count == cap) {
            Member *bigger = PyMem_Malloc(sizeof(Member) * (size_t)cap * 2);
            if (bigger == NULL) { PyErr_NoMemory(); rc = -1; goto done; }
            memcpy(bigger, members, sizeof(Member) * (size_t)count);
            if (members != small) PyMem_Free(members);
            members = bigger;
            cap *= 2;
        }
        Py_ssize_t at = out->len;
        if ((rc = json_value(src, out, depth)) != 0) goto done;
        members[count].key = (const char *)key;
        members[count].key_len = key_len;
        members[count].val_at = at - base;
        members[count].val_len = out->len - at;
        count++;
        skip_ws(src);
        if (src->p >= src->end) { rc = NOT_FAST; goto done; }
        if (*src->p == ',') { src->p++; continue; }
        if (*src->p == '}') { src->p++; break; }
        rc = NOT_FAST;
        goto done;
    }
    sort_members(members, count);
    Py_ssize_t values = out->len - base;
    copy = values <= (Py_ssize_t)sizeof(local) ? local : PyMem_Malloc((size_t)values);
    if (copy == NULL) { PyErr_NoMemory(); rc = -1; goto done; }
    memcpy(copy, out->data + base, (size_t)values);
    out->len = base;
    if ((rc = buf_put(out, "{", 1)) != 0) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i > 0) {
            if (member_cmp(&members[i - 1], &members[i]) == 0) { rc = NOT_FAST; goto done; }
            if ((rc = buf_put(out, ",", 1)) != 0) goto done;
        }
        if (buf_reserve(out, members[i].key_len + members[i].val_len + 3) < 0) {
            rc = -1;
            goto done;
        }
        char *w = out->data + out->len;
        *w++ = '"';
        memcpy(w, members[i].key, (size_t)members[i].key_len);
        w += members[i].key_len;
        *w++ = '"';
        *w++ = ':';
        memcpy(w, copy + members[i].val_at, (size_t)members[i].val_len);
        out->len += members[i].key_len + members[i].val_len + 3;
    }
    rc = buf_put(out, "}", 1);
done:
    if (members != small) PyMem_Free(members);
    if (copy != NULL && copy != local) PyMem_Free(copy);
    if (rc < 0 && !PyErr_Occurred()) PyErr_NoMemory();
    return rc;
}

static int json_array(Src *src, Buf *out, int depth) {
    src->p++; /* [ */
    skip_ws(src);
    if (src->p < src->end && *src->p == ']') {
        src->p++;
        return PUT_LIT(out, "[]");
    }
    int rc;
    if ((rc = buf_put(out, "[", 1)) != 0) return rc;
    for (;;) {
        skip_ws(src);
        if ((rc = json_value(src, out, depth)) != 0) return rc;
        skip_ws(src);
        if (src->p >= src->end) return NOT_FAST;
        if (*src->p == ',') {
            src->p++;
            if ((rc = buf_put(out, ",", 1)) != 0) return rc;
            continue;
        }
        if (*src->p == ']') { src->p++; return buf_put(out, "]", 1); }
        return NOT_FAST;
    }
}

static int json_literal(Src *src, Buf *out, const char *word, Py_ssize_t n) {
    if (src->end - src->p < n || memcmp(src->p, word, (size_t)n) != 0) return NOT_FAST;
    src->p += n;
    return buf_put(out, word, n);
}

static int json_value(Src *src, Buf *out, int depth) {
    if (src->p >= src->end) return NOT_FAST;
    unsigned char c = *src->p;
    if (c == '{' || c == '[') {
        if (depth >= NATIVE_MAX_DEPTH) return NOT_FAST;
        return c == '{' ? json_object(src, out, depth + 1) : json_array(src, out, depth + 1);
    }
    if (c == '"') {
        const unsigned char *s;
        Py_ssize_t n;
        int rc = json_string_span(src, &s, &n, 0);
        if (rc != 0) return rc;
        /* no escapes and no control bytes: the JCS string is the stored one */
        if (buf_reserve(out, n + 2) < 0) return -1;
        out->data[out->len++] = '"';
        memcpy(out->data + out->len, s, (size_t)n);
        out->len += n;
        out->data[out->len++] = '"';
        return 0;
    }
    if (c == 't') return json_literal(src, out, "true", 4);
    if (c == 'f') return json_literal(src, out, "false", 5);
    if (c == 'n') return json_literal(src, out, "null", 4);
    if (c == '-' || (c >= '0' && c <= '9')) {
        const unsigned char *s = src->p;
        while (src->p < src->end &&
               ((*src->p >= '0' && *src->p <= '9') || *src->p == '-' || *src->p == '.' ||
                *src->p == 'e' || *src->p == 'E' || *src->p == '+'))
            src->p++;
        return put_decimal_mode(out, (const char *)s, src->p - s, 1, src->v2);
    }
    return NOT_FAST;
}

/* One jsonb column's text as JCS (v2: C2) into out. */
static int put_json_mode(Buf *out, const char *s, Py_ssize_t n, int v2) {
    Src src = {(const unsigned char *)s, (const unsigned char *)s + n, v2};
    int rc = json_value(&src, out, 0);
    if (rc != 0) return rc;
    return src.p == src.end ? 0 : NOT_FAST;
}

/* ---- timestamp ------------------------------------------------------------------------ */

static int all_digits(const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

static int num2(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

/* `YYYY-MM-DD HH:MM:SS[.f{1,6}]+00` as `"YYYY-MM-DDTHH:MM:SS.ffffffZ"` (the pure path's
 * _timestamp and valid_minute: a real calendar date, years 1-9999). */
static int put_timestamp(Buf *b, const char *v, Py_ssize_t n) {
    if (n < 22 || n > 29 || memcmp(v + n - 3, "+00", 3) != 0) return NOT_FAST;
    if (v[4] != '-' || v[7] != '-' || v[10] != ' ' || v[13] != ':' || v[16] != ':')
        return NOT_FAST;
    if (!all_digits(v, 4) || !all_digits(v + 5, 2) || !all_digits(v + 8, 2) ||
        !all_digits(v + 11, 2) || !all_digits(v + 14, 2) || !all_digits(v + 17, 2))
        return NOT_FAST;
    int year = (v[0] - '0') * 1000 + (v[1] - '0') * 100 + num2(v + 2);
    int month = num2(v + 5), day = num2(v + 8);
    if (year < 1 || month < 1 || month > 12 || day < 1) return NOT_FAST;
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    int limit = days[month - 1] + (month == 2 && leap);
    if (day > limit) return NOT_FAST;
    if (num2(v + 11) >= 24 || num2(v + 14) >= 60 || num2(v + 17) >= 60) return NOT_FAST;
    Py_ssize_t frac = 0;
    if (n > 22) {
        frac = n - 23;
        if (v[19] != '.' || frac == 0 || !all_digits(v + 20, frac)) return NOT_FAST;
    }
    char t[32];
    t[0] = '"';
    memcpy(t + 1, v, 10);
    t[11] = 'T';
    memcpy(t + 12, v + 11, 8);
    t[20] = '.';
    memcpy(t + 21, "000000", 6);
    if (frac) memcpy(t + 21, v + 20, (size_t)frac);
    t[27] = 'Z';
    t[28] = '"';
    return buf_put(b, t, 29);
}

/* ---- the line ------------------------------------------------------------------------- */

enum {
    F_INDEX, F_TENANT, F_RUN, F_SKILL_ID, F_SKILL_NAME, F_PARAMS, F_STATUS, F_OCAT, F_OCODE,
    F_ODATA, F_COST, F_DURATION, F_RETRY, F_TIMESTAMP, F_PREV, F_HASH
};

typedef struct {
    const char *s[FIELDS];
    Py_ssize_t n[FIELDS];
    long long index;
} Line;

/* Split and check the line; NOT_FAST for anything the pure path must see. */
static int split_line(const char *data, Py_ssize_t len, Line *line) {
    if (len > 0 && data[len - 1] == '\n') len--;
    /* a backslash: NULL or an escape; a newline or return left inside: the pure path's */
    if (memchr(data, '\\', (size_t)len) != NULL || memchr(data, '\n', (size_t)len) != NULL ||
        memchr(data, '\r', (size_t)len) != NULL)
        return NOT_FAST;
    const char *p = data, *end = data + len;
    for (int f = 0; f < FIELDS; f++) {
        const char *tab = f < FIELDS - 1 ? memchr(p, '\t', (size_t)(end - p)) : NULL;
        if (f < FIELDS - 1 && tab == NULL) return NOT_FAST;
        const char *stop = tab ? tab : end;
        if (f == FIELDS - 1 && memchr(p, '\t', (size_t)(end - p)) != NULL) return NOT_FAST;
        line->s[f] = p;
        line->n[f] = stop - p;
        p = stop + 1;
    }
    Py_ssize_t k = line->n[F_INDEX];
    if (k == 0 || k > 15 || !all_digits(line->s[F_INDEX], k)) return NOT_FAST;
    long long index = 0;
    for (Py_ssize_t i = 0; i < k; i++) index = index * 10 + (line->s[F_INDEX][i] - '0');
    line->index = index;
    return 0;
}

static int put_double_column(Buf *b, const char *s, Py_ssize_t n) {
    /* float8 text without exponent (longer than 19 characters: the pure path decides) */
    if (n > 19) return NOT_FAST;
    return put_decimal(b, s, n, 1);
}

static int put_int_column(Buf *b, const char *s, Py_ssize_t n) {
    /* canonical_int: -?[0-9]+ within 2^53; leading zeros and -0 go to the pure path */
    return put_decimal(b, s, n, 0);
}

#define TRY(expr) do { int rc_ = (expr); if (rc_ != 0) return rc_; } while (0)

static int build_canonical(const Line *l, Buf *b) {
    TRY(PUT_LIT(b, "{\"cost_cents\":"));
    TRY(put_double_column(b, l->s[F_COST], l->n[F_COST]));
    TRY(PUT_LIT(b, ",\"duration_ms\":"));
    TRY(put_double_column(b, l->s[F_DURATION], l->n[F_DURATION]));
    TRY(PUT_LIT(b, ",\"kind\":\"step\",\"outcome_category\":"));
    TRY(put_json_string(b, (const unsigned char *)l->s[F_OCAT], l->n[F_OCAT]));
    TRY(PUT_LIT(b, ",\"outcome_code\":"));
    TRY(put_json_string(b, (const unsigned char *)l->s[F_OCODE], l->n[F_OCODE]));
    TRY(PUT_LIT(b, ",\"outcome_data\":"));
    TRY(put_json_mode(b, l->s[F_ODATA], l->n[F_ODATA], 0));
    TRY(PUT_LIT(b, ",\"params\":"));
    TRY(put_json_mode(b, l->s[F_PARAMS], l->n[F_PARAMS], 0));
    TRY(PUT_LIT(b, ",\"retry_count\":"));
    TRY(put_int_column(b, l->s[F_RETRY], l->n[F_RETRY]));
    TRY(PUT_LIT(b, ",\"run_id\":"));
    TRY(put_json_string(b, (const unsigned char *)l->s[F_RUN], l->n[F_RUN]));
    TRY(PUT_LIT(b, ",\"skill_id\":"));
    TRY(put_json_string(b, (const unsigned char *)l->s[F_SKILL_ID], l->n[F_SKILL_ID]));
    TRY(PUT_LIT(b, ",\"skill_name\":"));
    TRY(put_json_string(b, (const unsigned char *)l->s[F_SKILL_NAME], l->n[F_SKILL_NAME]));
    TRY(PUT_LIT(b, ",\"status\":"));
    TRY(put_json_string(b, (const unsigned char *)l->s[F_STATUS], l->n[F_STATUS]));
    TRY(PUT_LIT(b, ",\"step_index\":"));
    char idx[24];
    int k = snprintf(idx, sizeof(idx), "%lld", l->index);
    TRY(buf_put(b, idx, k));
    TRY(PUT_LIT(b, ",\"tenant_id\":"));
    TRY(put_json_string(b, (const unsigned char *)l->s[F_TENANT], l->n[F_TENANT]));
    TRY(PUT_LIT(b, ",\"timestamp\":"));
    TRY(put_timestamp(b, l->s[F_TIMESTAMP], l->n[F_TIMESTAMP]));
    TRY(PUT_LIT(b, ",\"v\":1}"));
    return 0;
}

/* The chain's hashes as the pure path reads them: the field's text, any text (the chain
 * compares it); only non-ASCII is left to the pure path (str decoding). */
static int ascii_field(const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

static PyObject *canonical_line(PyObject *self, PyObject *arg) {
    (void)self;
    char *data;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(arg, &data, &len) < 0) return NULL;
    Line line;
    if (split_line(data, len, &line) != 0 || !ascii_field(line.s[F_PREV], line.n[F_PREV]) ||
        !ascii_field(line.s[F_HASH], line.n[F_HASH]))
        Py_RETURN_NONE;
    Buf b = {NULL, 0, 0};
    if (buf_reserve(&b, 4096) < 0) return PyErr_NoMemory();
    int rc = build_canonical(&line, &b);
    if (rc != 0) {
        PyMem_Free(b.data);
        if (rc < 0) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *result = Py_BuildValue("(Ly#s#s#)", line.index, b.data, b.len,
                                     line.s[F_PREV], line.n[F_PREV], line.s[F_HASH],
                                     line.n[F_HASH]);
    PyMem_Free(b.data);
    return result;
}

static void to_hex(const unsigned char *digest, char *out) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
}

static PyObject *walk(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *lines;
    Py_ssize_t start;
    const char *prev_in, *prev_hex_in;
    Py_ssize_t prev_len, prev_hex_len;
    long long next_index, stop;
    if (!PyArg_ParseTuple(args, "O!ny#s#LL", &PyList_Type, &lines, &start, &prev_in, &prev_len,
                          &prev_hex_in, &prev_hex_len, &next_index, &stop))
        return NULL;
    if (prev_len != 32) {
        PyErr_SetString(PyExc_ValueError, "prev must be a 32-byte digest");
        return NULL;
    }
    unsigned char prev[32];
    memcpy(prev, prev_in, 32);
    char prev_hex[64];
    int hex_given = prev_hex_len == 64;
    if (hex_given) memcpy(prev_hex, prev_hex_in, 64);
    Buf b = {NULL, 0, 0};
    if (buf_reserve(&b, 8192) < 0) return PyErr_NoMemory();
    Py_ssize_t n = PyList_GET_SIZE(lines), i = start < 0 ? 0 : start, consumed = 0;
    for (; i < n && hex_given; i++) {
        PyObject *item = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(item)) break;
        Line line;
        if (split_line(PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item), &line) != 0) break;
        if (line.index != next_index) break;
        if (line.n[F_PREV] != 64 || memcmp(line.s[F_PREV], prev_hex, 64) != 0) break;
        if (line.n[F_HASH] != 64) break;
        b.len = 32;
        memcpy(b.data, prev, 32);
        int rc = build_canonical(&line, &b);
        if (rc < 0) {
            PyMem_Free(b.data);
            if (!PyErr_Occurred()) PyErr_NoMemory();
            return NULL;
        }
        if (rc != 0) break;
        unsigned char digest[32];
        SHA256((const unsigned char *)b.data, (size_t)b.len, digest);
        char digest_hex[64];
        to_hex(digest, digest_hex);
        if (memcmp(line.s[F_HASH], digest_hex, 64) != 0) break;
        memcpy(prev, digest, 32);
        memcpy(prev_hex, digest_hex, 64);
        next_index++;
        consumed++;
        if (next_index == stop) break;
    }
    PyMem_Free(b.data);
    return Py_BuildValue("(ny#)", consumed, (const char *)prev, (Py_ssize_t)32);
}

/* ---- format v2 (docs/hash-chain-v2.md) -------------------------------------------------
 *
 * A v2 line is STEP_V2_COLUMNS (store/step_columns.py): the step's hashed columns, then
 * chain_position, prev_hash, step_hash.  Unlike v1, NULL is common in AOS's rows (an
 * outcome_data, an idempotency_key...) and hashes as null, so a field that is exactly `\N`
 * is taken as NULL; any other backslash (a COPY escape) sends the line to the pure path.
 * The trace's tenant_id, run_id and trace_id go into every record (a step row does not carry
 * them): the caller passes each as its C2 text, made once per trace by the pure encoder. */

#define FIELDS_V2 24

enum {
    G_INDEX, G_SKILL_ID, G_SKILL_NAME, G_PARAMS, G_STATUS, G_OCAT, G_OCODE, G_ODATA, G_COST,
    G_DURATION, G_RETRY, G_TIMESTAMP, G_INPUT, G_OUTPUT, G_RNG, G_IDEM, G_REPLAY, G_SOURCE,
    G_LEVEL, G_SYNTHETIC, G_SCENARIO, G_POSITION, G_PREV, G_HASH
};

typedef struct {
    const char *s[FIELDS_V2];
    Py_ssize_t n[FIELDS_V2]; /* -1: NULL */
    long long index;
    long long position;
} LineV2;

typedef struct {
    const char *tenant, *run, *trace; /* C2 text of the trace's ids */
    Py_ssize_t tenant_n, run_n, trace_n;
} Ids;

static int plain_count(const char *s, Py_ssize_t n, long long *out) {
    /* [0-9]{1,15}: a step_index or chain_position the pure path reads as this int */
    if (n <= 0 || n > 15 || !all_digits(s, n)) return NOT_FAST;
    long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
    *out = v;
    return 0;
}

static int split_line_v2(const char *data, Py_ssize_t len, LineV2 *line) {
    if (len > 0 && data[len - 1] == '\n') len--;
    if (memchr(data, '\n', (size_t)len) != NULL || memchr(data, '\r', (size_t)len) != NULL)
        return NOT_FAST;
    int escapes = memchr(data, '\\', (size_t)len) != NULL;
    const char *p = data, *end = data + len;
    for (int f = 0; f < FIELDS_V2; f++) {
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        if ((f < FIELDS_V2 - 1) != (tab != NULL)) return NOT_FAST; /* too few / many fields */
        const char *stop = tab ? tab : end;
        Py_ssize_t n = stop - p;
        line->s[f] = p;
        line->n[f] = n;
        if (escapes && memchr(p, '\\', (size_t)n) != NULL) {
            if (n != 2 || p[1] != 'N') return NOT_FAST; /* an escape: the pure path's */
            line->n[f] = -1;
        }
        p = stop + 1;
    }
    /* NULL where the chain needs a value: the pure path words the failure */
    if (plain_count(line->s[G_INDEX], line->n[G_INDEX], &line->index) != 0 ||
        plain_count(line->s[G_POSITION], line->n[G_POSITION], &line->position) != 0 ||
        line->n[G_PREV] < 0 || line->n[G_HASH] < 0)
        return NOT_FAST;
    return 0;
}

static int put_text_v2(Buf *b, const LineV2 *l, int f) {
    if (l->n[f] < 0) return PUT_LIT(b, "null");
    return put_json_string(b, (const unsigned char *)l->s[f], l->n[f]);
}

static int put_json_v2(Buf *b, const LineV2 *l, int f) {
    if (l->n[f] < 0) return PUT_LIT(b, "null"); /* SQL NULL and JSON null hash alike */
    return put_json_mode(b, l->s[f], l->n[f], 1);
}

static int put_double_v2(Buf *b, const LineV2 *l, int f) {
    if (l->n[f] < 0) return PUT_LIT(b, "null");
    return put_double_column(b, l->s[f], l->n[f]);
}

static int put_int_v2(Buf *b, const LineV2 *l, int f) {
    if (l->n[f] < 0) return PUT_LIT(b, "null");
    return put_int_column(b, l->s[f], l->n[f]);
}

static int put_timestamp_v2(Buf *b, const LineV2 *l, int f) {
    if (l->n[f] < 0) return PUT_LIT(b, "null");
    return put_timestamp(b, l->s[f], l->n[f]);
}

static int put_boolean_v2(Buf *b, const LineV2 *l, int f) {
    if (l->n[f] < 0) return PUT_LIT(b, "null");
    if (l->n[f] == 1 && l->s[f][0] == 't') return PUT_LIT(b, "true");
    if (l->n[f] == 1 && l->s[f][0] == 'f') return PUT_LIT(b, "false");
    return NOT_FAST;
}

/* C2(step record), its keys in the record's sorted order (ASCII: UTF-16 order). */
static int build_canonical_v2(const LineV2 *l, const Ids *ids, Buf *b) {
    TRY(PUT_LIT(b, "{\"cost_cents\":"));
    TRY(put_double_v2(b, l, G_COST));
    TRY(PUT_LIT(b, ",\"duration_ms\":"));
    TRY(put_double_v2(b, l, G_DURATION));
    TRY(PUT_LIT(b, ",\"idempotency_key\":"));
    TRY(put_text_v2(b, l, G_IDEM));
    TRY(PUT_LIT(b, ",\"input_hash\":"));
    TRY(put_text_v2(b, l, G_INPUT));
    TRY(PUT_LIT(b, ",\"is_synthetic\":"));
    TRY(put_boolean_v2(b, l, G_SYNTHETIC));
    TRY(PUT_LIT(b, ",\"kind\":\"step\",\"level\":"));
    TRY(put_text_v2(b, l, G_LEVEL));
    TRY(PUT_LIT(b, ",\"outcome_category\":"));
    TRY(put_text_v2(b, l, G_OCAT));
    TRY(PUT_LIT(b, ",\"outcome_code\":"));
    TRY(put_text_v2(b, l, G_OCODE));
    TRY(PUT_LIT(b, ",\"outcome_data\":"));
    TRY(put_json_v2(b, l, G_ODATA));
    TRY(PUT_LIT(b, ",\"output_hash\":"));
    TRY(put_text_v2(b, l, G_OUTPUT));
    TRY(PUT_LIT(b, ",\"params\":"));
    TRY(put_json_v2(b, l, G_PARAMS));
    TRY(PUT_LIT(b, ",\"replay_behavior\":"));
    TRY(put_text_v2(b, l, G_REPLAY));
    TRY(PUT_LIT(b, ",\"retry_count\":"));
    TRY(put_int_v2(b, l, G_RETRY));
    TRY(PUT_LIT(b, ",\"rng_state_before\":"));
    TRY(put_text_v2(b, l, G_RNG));
    TRY(PUT_LIT(b, ",\"run_id\":"));
    TRY(buf_put(b, ids->run, ids->run_n));
    TRY(PUT_LIT(b, ",\"skill_id\":"));
    TRY(put_text_v2(b, l, G_SKILL_ID));
    TRY(PUT_LIT(b, ",\"skill_name\":"));
    TRY(put_text_v2(b, l, G_SKILL_NAME));
    TRY(PUT_LIT(b, ",\"source\":"));
    TRY(put_text_v2(b, l, G_SOURCE));
    TRY(PUT_LIT(b, ",\"status\":"));
    TRY(put_text_v2(b, l, G_STATUS));
    TRY(PUT_LIT(b, ",\"step_index\":"));
    char idx[24];
    int k = snprintf(idx, sizeof(idx), "%lld", l->index);
    TRY(buf_put(b, idx, k));
    TRY(PUT_LIT(b, ",\"synthetic_scenario_id\":"));
    TRY(put_text_v2(b, l, G_SCENARIO));
    TRY(PUT_LIT(b, ",\"tenant_id\":"));
    TRY(buf_put(b, ids->tenant, ids->tenant_n));
    TRY(PUT_LIT(b, ",\"timestamp\":"));
    TRY(put_timestamp_v2(b, l, G_TIMESTAMP));
    TRY(PUT_LIT(b, ",\"trace_id\":"));
    TRY(buf_put(b, ids->trace, ids->trace_n));
    TRY(PUT_LIT(b, ",\"v\":2}"));
    return 0;
}

static PyObject *canonical_line_v2(PyObject *self, PyObject *args) {
    (void)self;
    const char *data;
    Py_ssize_t len;
    Ids ids;
    if (!PyArg_ParseTuple(args, "y#y#y#y#", &data, &len, &ids.tenant, &ids.tenant_n, &ids.run,
                          &ids.run_n, &ids.trace, &ids.trace_n))
        return NULL;
    LineV2 line;
    if (split_line_v2(data, len, &line) != 0 ||
        !ascii_field(line.s[G_PREV], line.n[G_PREV]) ||
        !ascii_field(line.s[G_HASH], line.n[G_HASH]))
        Py_RETURN_NONE;
    Buf b = {NULL, 0, 0};
    if (buf_reserve(&b, 4096) < 0) return PyErr_NoMemory();
    int rc = build_canonical_v2(&line, &ids, &b);
    if (rc != 0) {
        PyMem_Free(b.data);
        if (rc < 0) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *result = Py_BuildValue("(Ly#Ls#s#)", line.index, b.data, b.len, line.position,
                                     line.s[G_PREV], line.n[G_PREV], line.s[G_HASH],
                                     line.n[G_HASH]);
    PyMem_Free(b.data);
    return result;
}

/* Rules 2-3 of format v2 over the lines from `start` while each is fast and verifies: in
 * the order the pure chain checks them (integrity/verdicts.py _walk_canonical), the
 * step_index is the next one, the chain position is that index, prev_hash is the previous
 * hash's text and step_hash = SHA-256(prev || C2(step)).  The first line that is not fast
 * or fails any check ends the run (the pure path decodes it and words the failure). */
static PyObject *walk_v2(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *lines;
    Py_ssize_t start;
    const char *prev_in, *prev_hex_in;
    Py_ssize_t prev_len, prev_hex_len;
    long long next_index, stop;
    Ids ids;
    if (!PyArg_ParseTuple(args, "O!ny#s#LLy#y#y#", &PyList_Type, &lines, &start, &prev_in,
                          &prev_len, &prev_hex_in, &prev_hex_len, &next_index, &stop,
                          &ids.tenant, &ids.tenant_n, &ids.run, &ids.run_n, &ids.trace,
                          &ids.trace_n))
        return NULL;
    if (prev_len != 32) {
        PyErr_SetString(PyExc_ValueError, "prev must be a 32-byte digest");
        return NULL;
    }
    unsigned char prev[32];
    memcpy(prev, prev_in, 32);
    char prev_hex[64];
    int hex_given = prev_hex_len == 64;
    if (hex_given) memcpy(prev_hex, prev_hex_in, 64);
    Buf b = {NULL, 0, 0};
    if (buf_reserve(&b, 8192) < 0) return PyErr_NoMemory();
    Py_ssize_t n = PyList_GET_SIZE(lines), i = start < 0 ? 0 : start, consumed = 0;
    for (; i < n && hex_given; i++) {
        PyObject *item = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(item)) break;
        LineV2 line;
        if (split_line_v2(PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item), &line) != 0) break;
        if (line.index != next_index || line.position != line.index) break;
        if (line.n[G_PREV] != 64 || memcmp(line.s[G_PREV], prev_hex, 64) != 0) break;
        if (line.n[G_HASH] != 64) break;
        b.len = 32;
        memcpy(b.data, prev, 32);
        int rc = build_canonical_v2(&line, &ids, &b);
        if (rc < 0) {
            PyMem_Free(b.data);
            if (!PyErr_Occurred()) PyErr_NoMemory();
            return NULL;
        }
        if (rc != 0) break;
        unsigned char digest[32];
        SHA256((const unsigned char *)b.data, (size_t)b.len, digest);
        char digest_hex[64];
        to_hex(digest, digest_hex);
        if (memcmp(line.s[G_HASH], digest_hex, 64) != 0) break;
        memcpy(prev, digest, 32);
        memcpy(prev_hex, digest_hex, 64);
        next_index++;
        consumed++;
        if (next_index == stop) break;
    }
    PyMem_Free(b.data);
    return Py_BuildValue("(ny#)", consumed, (const char *)prev, (Py_ssize_t)32);
}

static PyMethodDef methods[] = {
    {"canonical_line", canonical_line, METH_O,
     "canonical_line(line) -> (step_index, C(step), prev_hash, step_hash) or None"},
    {"walk", walk, METH_VARARGS,
     "walk(lines, start, prev, prev_hex, next_index, stop) -> (consumed, prev)"},
    {"canonical_line_v2", canonical_line_v2, METH_VARARGS,
     "canonical_line_v2(line, tenant, run, trace) -> (step_index, C2(step), chain_position,"
     " prev_hash, step_hash) or None"},
    {"walk_v2", walk_v2, METH_VARARGS,
     "walk_v2(lines, start, prev, prev_hex, next_index, stop, tenant, run, trace)"
     " -> (consumed, prev)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_line",
    "The compiled fast path of a proof, v1 and v2 (store/native_line.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native_line(void) { return PyModule_Create(&module); }
