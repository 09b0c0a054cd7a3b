/* tok_stream — see tok_stream.h. */
#include "tok_stream.h"

#include <string.h>

#include "g4_alloc.h"

/* Length of the well-formed prefix of a code point starting at s[0] (avail
 * bytes), and the full length it needs. Returns 1 when complete. */
static int s_scan(const unsigned char *s, size_t avail, size_t *good, size_t *need)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t l;
    if (c < 0x80) l = 1;
    else if (c >= 0xC2 && c <= 0xDF) l = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        l = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        l = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *good = 0, *need = 1;
        return 0;
    }
    *need = l;
    size_t k = 1;
    while (k < l && k < avail) {
        unsigned b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
        k++;
    }
    *good = k;
    return k == l;
}

size_t tok_utf8_clean(const char *s, size_t n, char *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t good, need;
        if (s_scan(u + i, n - i, &good, &need)) {
            memcpy(out + o, s + i, need);
            o += need, i += need;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += good ? good : 1;
        }
    }
    out[o] = 0;
    return o;
}

size_t tok_utf8_pending(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    /* the last lead byte within 3 bytes of the end */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned c = u[n - back];
        if ((c & 0xC0) == 0x80) continue;
        size_t good, need;
        if (s_scan(u + n - back, back, &good, &need)) return 0;
        return (good == back && need > back) ? back : 0;
    }
    return 0;
}

void tok_stream_init(tok_stream_t *s, int special)
{
    memset(s, 0, sizeof *s);
    s->special = special;
}

static long s_append_clean(const char *bytes, size_t n, char **buf, size_t *len)
{
    char *nb = g4_realloc(*buf, *len + 3 * n + 1);
    if (!nb) return -1;
    size_t k = tok_utf8_clean(bytes, n, nb + *len);
    *buf = nb;
    *len += k;
    return (long)k;
}

long tok_stream_feed(const tok_vocab_t *v, tok_stream_t *s, int32_t id, char **buf, size_t *len)
{
    size_t pl;
    char *piece = tok_vocab_detokenize(v, &id, 1, s->special, &pl);
    if (!piece) return -1;
    char *tmp = g4_malloc(pl + sizeof s->pend);
    if (!tmp) {
        g4_free(piece);
        return -1;
    }
    memcpy(tmp, s->pend, (size_t)s->n_pend);
    memcpy(tmp + s->n_pend, piece, pl);
    size_t n = (size_t)s->n_pend + pl;
    size_t hold = tok_utf8_pending(tmp, n);
    long r = s_append_clean(tmp, n - hold, buf, len);
    if (r >= 0) {
        memcpy(s->pend, tmp + n - hold, hold);
        s->n_pend = (int)hold;
    }
    g4_free(piece);
    g4_free(tmp);
    return r;
}

long tok_stream_flush(tok_stream_t *s, char **buf, size_t *len)
{
    long r = s_append_clean(s->pend, (size_t)s->n_pend, buf, len);
    s->n_pend = 0;
    return r;
}

char *tok_detokenize_text(const tok_vocab_t *v, const int32_t *ids, int n, int special, size_t *len)
{
    size_t raw_len;
    char *raw = tok_vocab_detokenize(v, ids, n, special, &raw_len);
    if (!raw) return NULL;
    char *out = g4_malloc(raw_len * 3 + 1);
    if (out) {
        size_t k = tok_utf8_clean(raw, raw_len, out);
        if (len) *len = k;
    }
    g4_free(raw);
    return out;
}
