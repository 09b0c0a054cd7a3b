/* tok_jinja — see tok_jinja.h. One arena per parsed template (tokens, AST)
 * and one per render (values); errors unwind with longjmp to the entry point,
 * which frees the arena, so no path below has to clean up. */
#define _POSIX_C_SOURCE 200809L
#include "tok_jinja.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "g4_alloc.h"

/* ---- arena ---------------------------------------------------------------- */

typedef struct ablk {
    struct ablk *next;
    size_t used, size;
    max_align_t data[];
} ablk;

typedef struct arena {
    ablk *head;
    jmp_buf *jb;
    g4_err_t *err;
    size_t total, max_total; /* bytes allocated; a render past max_total is refused (0: no limit) */
} arena;

/* the budget of one render (tj_set_limits) */
static size_t s_max_bytes = (size_t)256 << 20;
static uint64_t s_max_steps = 20000000;

void tj_set_limits(size_t max_bytes, uint64_t max_steps)
{
    if (max_bytes) s_max_bytes = max_bytes;
    if (max_steps) s_max_steps = max_steps;
}

static void *a_alloc(arena *A, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (A->max_total && (A->total += n) > A->max_total) {
        g4_err_set(A->err, G4_ERR_RANGE, "template: rendering needs more than %zu MiB (a limit of tokenizerd: --max-render-mb)",
                   A->max_total >> 20);
        longjmp(*A->jb, 1);
    }
    if (!A->head || A->head->size - A->head->used < n) {
        size_t sz = n > 65536 ? n : 65536;
        ablk *b = g4_malloc(sizeof(ablk) + sz);
        if (!b) {
            g4_err_set(A->err, G4_ERR_NOMEM, "template: out of memory");
            longjmp(*A->jb, 1);
        }
        b->next = A->head, b->used = 0, b->size = sz;
        A->head = b;
    }
    void *p = (char *)A->head->data + A->head->used;
    A->head->used += n;
    return p;
}

static void a_free(arena *A)
{
    while (A->head) {
        ablk *n = A->head->next;
        g4_free(A->head);
        A->head = n;
    }
}

static char *a_strndup(arena *A, const char *s, size_t n)
{
    char *p = a_alloc(A, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* growable buffer in the arena */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(arena *A, sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = a_alloc(A, cap);
        if (b->n) memcpy(q, b->p, b->n);
        b->p = q, b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(arena *A, sbuf *b, const char *s) { sb_put(A, b, s, strlen(s)); }

/* ---- values --------------------------------------------------------------- */

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_MACRO } vtype;

typedef struct node node;
typedef struct vlist vlist;
typedef struct vdict vdict;

typedef struct val {
    vtype t;
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *s;
            size_t n;
        } s;
        vlist *l;
        vdict *d;
        const node *m;
    } u;
} val;

struct vlist {
    val *v;
    size_t n, cap;
};

struct vdict {
    const char **k;
    size_t *kn;
    val *v;
    size_t n, cap;
    int ns; /* namespace(): attributes may be assigned */
};

static val V_undef(void) { return (val){.t = V_UNDEF}; }
static val V_none(void) { return (val){.t = V_NONE}; }
static val V_bool(int b) { return (val){.t = V_BOOL, .u.b = !!b}; }
static val V_int(int64_t i) { return (val){.t = V_INT, .u.i = i}; }
static val V_float(double f) { return (val){.t = V_FLOAT, .u.f = f}; }
static val V_str(const char *s, size_t n) { return (val){.t = V_STR, .u.s = {s, n}}; }

static vlist *l_new(arena *A)
{
    vlist *l = a_alloc(A, sizeof *l);
    memset(l, 0, sizeof *l);
    return l;
}

static void l_push(arena *A, vlist *l, val v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        val *nv = a_alloc(A, cap * sizeof(val));
        if (l->n) memcpy(nv, l->v, l->n * sizeof(val));
        l->v = nv, l->cap = cap;
    }
    l->v[l->n++] = v;
}

static vdict *d_new(arena *A)
{
    vdict *d = a_alloc(A, sizeof *d);
    memset(d, 0, sizeof *d);
    return d;
}

static val *d_find(const vdict *d, const char *k, size_t kn)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->kn[i] == kn && memcmp(d->k[i], k, kn) == 0) return &d->v[i];
    return NULL;
}

static void d_set(arena *A, vdict *d, const char *k, size_t kn, val v)
{
    val *p = d_find(d, k, kn);
    if (p) {
        *p = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        const char **nk = a_alloc(A, cap * sizeof *nk);
        size_t *nkn = a_alloc(A, cap * sizeof *nkn);
        val *nv = a_alloc(A, cap * sizeof *nv);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nkn, d->kn, d->n * sizeof *nkn);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk, d->kn = nkn, d->v = nv, d->cap = cap;
    }
    d->k[d->n] = k, d->kn[d->n] = kn, d->v[d->n] = v;
    d->n++;
}

/* ---- tokens --------------------------------------------------------------- */

enum { K_TEXT, K_VOPEN, K_VCLOSE, K_BOPEN, K_BCLOSE, K_NAME, K_STR, K_INT, K_FLOAT, K_OP, K_EOF };

typedef struct tok {
    int k;
    const char *s;
    size_t n;
    int64_t i;
    double f;
    int line;
} tok;

/* ---- AST ------------------------------------------------------------------ */

enum {
    /* statements */
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_BREAK, N_CONTINUE, N_FILTERBLOCK,
    /* expressions */
    E_LIT, E_NAME, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NEG, E_POS, E_NOT, E_BIN, E_AND, E_OR,
    E_COND, E_LIST, E_DICT
};

typedef struct nlist {
    node **v;
    int n;
} nlist;

struct node {
    int kind, line;
    const char *s; /* name, operator, text */
    size_t n;
    val lit;
    node *a, *b, *c, *d;
    nlist body, els;      /* statements; args / list items / dict keys+values */
    nlist kw;             /* keyword argument values, macro defaults     */
    const char **names;   /* for-targets, set-targets, kwarg names, params */
    size_t *name_n;
    int n_names;
    int neg;
};

struct tj_template {
    arena A;
    nlist body;
};

typedef struct parser {
    arena *A;
    tok *t;
    int n, pos;
} parser;

static _Noreturn void p_fail(parser *P, int line, const char *fmt, ...)
{
    char m[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    g4_err_set(P->A->err, G4_ERR_FORMAT, "template line %d: %s", line, m);
    longjmp(*P->A->jb, 1);
}

/* ---- lexer ---------------------------------------------------------------- */

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* lstrip_blocks and trim_blocks, as @huggingface/jinja applies them: spaces
 * and tabs before "{%" / "{#" at the start of a line go, and one newline
 * right after "%}" / "#}" / "-}" goes. */
static char *preprocess(arena *A, const char *src, size_t len, size_t *olen)
{
    char *o = a_alloc(A, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int bol = (i == 0 || src[i - 1] == '\n');
        if (bol) {
            size_t j = i;
            while (j < len && (src[j] == ' ' || src[j] == '\t')) j++;
            if (j + 1 < len && src[j] == '{' && (src[j + 1] == '%' || src[j + 1] == '#' || src[j + 1] == '-')) {
                i = j;
            }
        }
        char c = src[i];
        o[n++] = c;
        i++;
        if (c == '}' && i >= 2 && (src[i - 2] == '%' || src[i - 2] == '#' || src[i - 2] == '-') && i < len &&
            src[i] == '\n')
            i++;
    }
    o[n] = 0;
    *olen = n;
    return o;
}

typedef struct tokv {
    tok *v;
    int n, cap;
} tokv;

static tok *tv_push(arena *A, tokv *tv)
{
    if (tv->n == tv->cap) {
        int cap = tv->cap ? tv->cap * 2 : 256;
        tok *nv = a_alloc(A, (size_t)cap * sizeof(tok));
        if (tv->n) memcpy(nv, tv->v, (size_t)tv->n * sizeof(tok));
        tv->v = nv, tv->cap = cap;
    }
    tok *t = &tv->v[tv->n++];
    memset(t, 0, sizeof *t);
    return t;
}

static void lex(parser *P, const char *s, size_t len, tokv *tv)
{
    arena *A = P->A;
    size_t i = 0;
    int line = 1, strip_next = 0;
    while (i < len) {
        /* text up to the next tag */
        size_t j = i;
        while (j < len && !(s[j] == '{' && j + 1 < len && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#'))) j++;
        size_t a = i, b = j;
        if (strip_next)
            while (a < b && is_ws(s[a])) a++;
        strip_next = 0;
        if (j < len && j + 2 < len && s[j + 2] == '-')
            while (b > a && is_ws(s[b - 1])) b--;
        if (b > a) {
            tok *t = tv_push(A, tv);
            t->k = K_TEXT, t->s = s + a, t->n = b - a, t->line = line;
        }
        for (size_t q = i; q < j; q++) line += s[q] == '\n';
        if (j >= len) break;
        char kind = s[j + 1];
        i = j + 2;
        if (i < len && (s[i] == '-' || s[i] == '+')) i++;
        if (kind == '#') {
            const char *e = NULL;
            for (size_t q = i; q + 1 < len; q++)
                if (s[q] == '#' && s[q + 1] == '}') {
                    e = s + q;
                    break;
                }
            if (!e) p_fail(P, line, "unclosed comment");
            size_t q = (size_t)(e - s);
            for (size_t r = i; r < q; r++) line += s[r] == '\n';
            if (q > i && s[q - 1] == '-') strip_next = 1;
            i = q + 2;
            continue;
        }
        /* raw block: copy verbatim up to endraw */
        if (kind == '%') {
            size_t q = i;
            while (q < len && is_ws(s[q])) q++;
            if (len - q >= 3 && memcmp(s + q, "raw", 3) == 0 && (q + 3 >= len || !isalnum((unsigned char)s[q + 3]))) {
                const char *close = strstr(s + q, "%}");
                if (!close) p_fail(P, line, "unclosed raw tag");
                size_t body = (size_t)(close - s) + 2;
                if (close > s && close[-1] == '-')
                    while (body < len && is_ws(s[body])) body++;
                /* find {% endraw %} */
                size_t r = body;
                size_t end_tag = len, after = len;
                while (r + 1 < len) {
                    if (s[r] == '{' && s[r + 1] == '%') {
                        size_t w = r + 2, strip_before = 0;
                        if (w < len && s[w] == '-') strip_before = 1, w++;
                        while (w < len && is_ws(s[w])) w++;
                        if (len - w >= 6 && memcmp(s + w, "endraw", 6) == 0) {
                            const char *c2 = strstr(s + w, "%}");
                            if (!c2) break;
                            size_t tb = r;
                            if (strip_before)
                                while (tb > body && is_ws(s[tb - 1])) tb--;
                            end_tag = tb;
                            after = (size_t)(c2 - s) + 2;
                            if (c2[-1] == '-') strip_next = 1;
                            break;
                        }
                    }
                    r++;
                }
                if (end_tag == len) p_fail(P, line, "raw without endraw");
                if (end_tag > body) {
                    tok *t = tv_push(A, tv);
                    t->k = K_TEXT, t->s = s + body, t->n = end_tag - body, t->line = line;
                }
                for (size_t z = i; z < after; z++) line += s[z] == '\n';
                i = after;
                continue;
            }
        }
        tok *open = tv_push(A, tv);
        open->k = kind == '{' ? K_VOPEN : K_BOPEN, open->line = line;
        char closer = kind == '{' ? '}' : '%';
        for (;;) {
            while (i < len && is_ws(s[i])) line += s[i++] == '\n';
            if (i >= len) p_fail(P, line, "unclosed tag");
            if ((s[i] == '-' || s[i] == '+') && i + 2 < len + 0 && s[i + 1] == closer && s[i + 2] == '}') {
                if (s[i] == '-') strip_next = 1;
                i++;
            }
            if (i + 1 < len && s[i] == closer && s[i + 1] == '}') {
                tok *t = tv_push(A, tv);
                t->k = kind == '{' ? K_VCLOSE : K_BCLOSE, t->line = line;
                i += 2;
                break;
            }
            tok *t = tv_push(A, tv);
            t->line = line;
            char c = s[i];
            if (isalpha((unsigned char)c) || c == '_') {
                size_t q = i;
                while (q < len && (isalnum((unsigned char)s[q]) || s[q] == '_')) q++;
                t->k = K_NAME, t->s = s + i, t->n = q - i;
                i = q;
            } else if (isdigit((unsigned char)c)) {
                size_t q = i;
                int isf = 0;
                while (q < len && (isdigit((unsigned char)s[q]) || s[q] == '_')) q++;
                if (q + 1 < len && s[q] == '.' && isdigit((unsigned char)s[q + 1])) {
                    isf = 1, q++;
                    while (q < len && isdigit((unsigned char)s[q])) q++;
                }
                if (q < len && (s[q] == 'e' || s[q] == 'E')) {
                    size_t r = q + 1;
                    if (r < len && (s[r] == '+' || s[r] == '-')) r++;
                    if (r < len && isdigit((unsigned char)s[r])) {
                        isf = 1, q = r;
                        while (q < len && isdigit((unsigned char)s[q])) q++;
                    }
                }
                char buf[64];
                size_t m = 0;
                for (size_t r = i; r < q && m < sizeof buf - 1; r++)
                    if (s[r] != '_') buf[m++] = s[r];
                buf[m] = 0;
                if (isf)
                    t->k = K_FLOAT, t->f = strtod(buf, NULL);
                else
                    t->k = K_INT, t->i = strtoll(buf, NULL, 10);
                i = q;
            } else if (c == '\'' || c == '"') {
                sbuf sb = {0};
                size_t q = i + 1;
                for (;;) {
                    if (q >= len) p_fail(P, line, "unterminated string");
                    if (s[q] == c) break;
                    if (s[q] == '\\' && q + 1 < len) {
                        char e = s[q + 1], o = e;
                        switch (e) {
                        case 'n': o = '\n'; break;
                        case 't': o = '\t'; break;
                        case 'r': o = '\r'; break;
                        case 'b': o = '\b'; break;
                        case 'f': o = '\f'; break;
                        case '\\': case '\'': case '"': o = e; break;
                        default: sb_put(A, &sb, "\\", 1); o = e; break;
                        }
                        sb_put(A, &sb, &o, 1);
                        q += 2;
                        continue;
                    }
                    line += s[q] == '\n';
                    sb_put(A, &sb, s + q, 1);
                    q++;
                }
                t->k = K_STR, t->s = sb.p ? sb.p : "", t->n = sb.n;
                i = q + 1;
            } else {
                static const char *ops2[] = {"==", "!=", "<=", ">=", "//", "**", NULL};
                t->k = K_OP, t->s = s + i, t->n = 1;
                for (int o = 0; ops2[o]; o++)
                    if (i + 1 < len && s[i] == ops2[o][0] && s[i + 1] == ops2[o][1]) t->n = 2;
                if (!strchr("()[]{}.,:|=<>+-*/%~!?", c)) p_fail(P, line, "unexpected character '%c'", c);
                i += t->n;
            }
        }
    }
    tok *e = tv_push(A, tv);
    e->k = K_EOF, e->line = line;
}

/* ---- parser --------------------------------------------------------------- */

static tok *pk(parser *P) { return &P->t[P->pos]; }
static tok *nx(parser *P) { return &P->t[P->pos < P->n - 1 ? P->pos++ : P->pos]; }
static int is_op(tok *t, const char *op) { return t->k == K_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0; }
static int is_name(tok *t, const char *nm) { return t->k == K_NAME && t->n == strlen(nm) && memcmp(t->s, nm, t->n) == 0; }
static int accept_op(parser *P, const char *op)
{
    if (is_op(pk(P), op)) return nx(P), 1;
    return 0;
}
static int accept_name(parser *P, const char *nm)
{
    if (is_name(pk(P), nm)) return nx(P), 1;
    return 0;
}
static void expect_op(parser *P, const char *op)
{
    if (!accept_op(P, op)) p_fail(P, pk(P)->line, "expected '%s'", op);
}
static tok *expect_name(parser *P)
{
    if (pk(P)->k != K_NAME) p_fail(P, pk(P)->line, "expected a name");
    return nx(P);
}

static node *mk(parser *P, int kind, int line)
{
    node *n = a_alloc(P->A, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind, n->line = line;
    return n;
}

typedef struct nvec {
    node **v;
    int n, cap;
} nvec;

static void nv_push(arena *A, nvec *v, node *x)
{
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 8;
        node **nvv = a_alloc(A, (size_t)cap * sizeof(node *));
        if (v->n) memcpy(nvv, v->v, (size_t)v->n * sizeof(node *));
        v->v = nvv, v->cap = cap;
    }
    v->v[v->n++] = x;
}
static nlist nv_list(nvec *v) { return (nlist){v->v, v->n}; }

typedef struct namev {
    const char **s;
    size_t *n;
    int cnt, cap;
} namev;

static void nm_push(arena *A, namev *v, const char *s, size_t n)
{
    if (v->cnt == v->cap) {
        int cap = v->cap ? v->cap * 2 : 8;
        const char **ns = a_alloc(A, (size_t)cap * sizeof *ns);
        size_t *nn = a_alloc(A, (size_t)cap * sizeof *nn);
        if (v->cnt) memcpy(ns, v->s, (size_t)v->cnt * sizeof *ns), memcpy(nn, v->n, (size_t)v->cnt * sizeof *nn);
        v->s = ns, v->n = nn, v->cap = cap;
    }
    v->s[v->cnt] = s, v->n[v->cnt] = n, v->cnt++;
}

static node *p_expr(parser *P);
static node *p_or(parser *P);
static node *p_unary(parser *P, int with_filter);

/* (args) after a callee: positional and name=value */
static void p_args(parser *P, node *call)
{
    nvec pos = {0}, kw = {0};
    namev names = {0};
    expect_op(P, "(");
    while (!accept_op(P, ")")) {
        if (pk(P)->k == K_NAME && is_op(&P->t[P->pos + 1], "=")) {
            tok *nm = nx(P);
            nx(P);
            nm_push(P->A, &names, nm->s, nm->n);
            nv_push(P->A, &kw, p_expr(P));
        } else {
            nv_push(P->A, &pos, p_expr(P));
        }
        if (!accept_op(P, ",")) {
            expect_op(P, ")");
            break;
        }
    }
    call->body = nv_list(&pos);
    call->kw = nv_list(&kw);
    call->names = names.s, call->name_n = names.n, call->n_names = names.cnt;
}

static node *p_primary(parser *P)
{
    tok *t = nx(P);
    node *n;
    switch (t->k) {
    case K_STR: {
        /* adjacent string literals concatenate */
        sbuf b = {0};
        sb_put(P->A, &b, t->s, t->n);
        while (pk(P)->k == K_STR) {
            tok *u = nx(P);
            sb_put(P->A, &b, u->s, u->n);
        }
        n = mk(P, E_LIT, t->line);
        n->lit = V_str(b.p ? b.p : "", b.n);
        return n;
    }
    case K_INT:
        n = mk(P, E_LIT, t->line), n->lit = V_int(t->i);
        return n;
    case K_FLOAT:
        n = mk(P, E_LIT, t->line), n->lit = V_float(t->f);
        return n;
    case K_NAME:
        n = mk(P, E_LIT, t->line);
        if (is_name(t, "true") || is_name(t, "True")) return n->lit = V_bool(1), n;
        if (is_name(t, "false") || is_name(t, "False")) return n->lit = V_bool(0), n;
        if (is_name(t, "none") || is_name(t, "None")) return n->lit = V_none(), n;
        n->kind = E_NAME, n->s = a_strndup(P->A, t->s, t->n), n->n = t->n;
        return n;
    case K_OP:
        if (is_op(t, "(")) {
            node *e = p_expr(P);
            if (is_op(pk(P), ",")) { /* tuple */
                nvec items = {0};
                nv_push(P->A, &items, e);
                while (accept_op(P, ",")) {
                    if (is_op(pk(P), ")")) break;
                    nv_push(P->A, &items, p_expr(P));
                }
                e = mk(P, E_LIST, t->line);
                e->body = nv_list(&items);
            }
            expect_op(P, ")");
            return e;
        }
        if (is_op(t, "[")) {
            nvec items = {0};
            while (!accept_op(P, "]")) {
                nv_push(P->A, &items, p_expr(P));
                if (!accept_op(P, ",")) {
                    expect_op(P, "]");
                    break;
                }
            }
            n = mk(P, E_LIST, t->line);
            n->body = nv_list(&items);
            return n;
        }
        if (is_op(t, "{")) {
            nvec keys = {0}, vals = {0};
            while (!accept_op(P, "}")) {
                nv_push(P->A, &keys, p_expr(P));
                expect_op(P, ":");
                nv_push(P->A, &vals, p_expr(P));
                if (!accept_op(P, ",")) {
                    expect_op(P, "}");
                    break;
                }
            }
            n = mk(P, E_DICT, t->line);
            n->body = nv_list(&keys), n->els = nv_list(&vals);
            return n;
        }
        break;
    default:
        break;
    }
    p_fail(P, t->line, "unexpected '%.*s' in expression", (int)(t->n ? t->n : 3), t->n ? t->s : "end");
}

static node *p_postfix(parser *P, node *n)
{
    for (;;) {
        tok *t = pk(P);
        if (is_op(t, ".")) {
            nx(P);
            tok *nm = pk(P);
            node *a = mk(P, E_ATTR, t->line);
            a->a = n;
            if (nm->k == K_INT) { /* x.0 */
                nx(P);
                a->kind = E_INDEX;
                a->b = mk(P, E_LIT, t->line), a->b->lit = V_int(nm->i);
            } else {
                nm = expect_name(P);
                a->s = a_strndup(P->A, nm->s, nm->n), a->n = nm->n;
            }
            n = a;
        } else if (is_op(t, "[")) {
            nx(P);
            node *lo = NULL, *hi = NULL, *st = NULL;
            int slice = 0;
            if (!is_op(pk(P), ":")) lo = p_expr(P);
            if (accept_op(P, ":")) {
                slice = 1;
                if (!is_op(pk(P), "]") && !is_op(pk(P), ":")) hi = p_expr(P);
                if (accept_op(P, ":"))
                    if (!is_op(pk(P), "]")) st = p_expr(P);
            }
            expect_op(P, "]");
            node *a = mk(P, slice ? E_SLICE : E_INDEX, t->line);
            a->a = n, a->b = lo, a->c = hi, a->d = st;
            n = a;
        } else if (is_op(t, "(")) {
            node *c = mk(P, E_CALL, t->line);
            c->a = n;
            p_args(P, c);
            n = c;
        } else {
            return n;
        }
    }
}

static node *p_filters(parser *P, node *n)
{
    for (;;) {
        tok *t = pk(P);
        if (is_op(t, "|")) {
            nx(P);
            tok *nm = expect_name(P);
            node *f = mk(P, E_FILTER, t->line);
            f->a = n, f->s = a_strndup(P->A, nm->s, nm->n), f->n = nm->n;
            if (is_op(pk(P), "(")) p_args(P, f);
            n = f;
        } else if (is_name(t, "is")) {
            nx(P);
            node *f = mk(P, E_TEST, t->line);
            f->neg = accept_name(P, "not");
            tok *nm = nx(P);
            if (nm->k != K_NAME) p_fail(P, nm->line, "expected a test name after 'is'");
            f->a = n, f->s = a_strndup(P->A, nm->s, nm->n), f->n = nm->n;
            if (is_op(pk(P), "(")) {
                p_args(P, f);
            } else { /* one bare argument: is divisibleby 3, is sameas false */
                tok *u = pk(P);
                if (u->k == K_STR || u->k == K_INT || u->k == K_FLOAT ||
                    (u->k == K_NAME && !is_name(u, "and") && !is_name(u, "or") && !is_name(u, "else") &&
                     !is_name(u, "if") && !is_name(u, "is") && !is_name(u, "in") && !is_name(u, "not"))) {
                    nvec a = {0};
                    nv_push(P->A, &a, p_unary(P, 0));
                    f->body = nv_list(&a);
                }
            }
            n = f;
        } else {
            return n;
        }
    }
}

static node *p_unary(parser *P, int with_filter)
{
    tok *t = pk(P);
    if (is_op(t, "-") || is_op(t, "+")) {
        nx(P);
        node *u = mk(P, is_op(t, "-") ? E_NEG : E_POS, t->line);
        u->a = p_unary(P, 0);
        return with_filter ? p_filters(P, u) : u;
    }
    node *n = p_postfix(P, p_primary(P));
    return with_filter ? p_filters(P, n) : n;
}

static node *bin(parser *P, const char *op, node *a, node *b, int line)
{
    node *n = mk(P, E_BIN, line);
    n->s = op, n->a = a, n->b = b;
    return n;
}

static node *p_pow(parser *P)
{
    node *a = p_unary(P, 1);
    while (is_op(pk(P), "**")) {
        int line = nx(P)->line;
        a = bin(P, "**", a, p_unary(P, 1), line);
    }
    return a;
}

static node *p_mul(parser *P)
{
    node *a = p_pow(P);
    for (;;) {
        tok *t = pk(P);
        const char *op = is_op(t, "*") ? "*" : is_op(t, "/") ? "/" : is_op(t, "//") ? "//" : is_op(t, "%") ? "%" : NULL;
        if (!op) return a;
        nx(P);
        a = bin(P, op, a, p_pow(P), t->line);
    }
}

static node *p_concat(parser *P)
{
    node *a = p_mul(P);
    while (is_op(pk(P), "~")) {
        int line = nx(P)->line;
        a = bin(P, "~", a, p_mul(P), line);
    }
    return a;
}

static node *p_add(parser *P)
{
    node *a = p_concat(P);
    for (;;) {
        tok *t = pk(P);
        const char *op = is_op(t, "+") ? "+" : is_op(t, "-") ? "-" : NULL;
        if (!op) return a;
        nx(P);
        a = bin(P, op, a, p_concat(P), t->line);
    }
}

static node *p_cmp(parser *P)
{
    node *a = p_add(P);
    for (;;) {
        tok *t = pk(P);
        const char *op = NULL;
        if (is_op(t, "==")) op = "==";
        else if (is_op(t, "!=")) op = "!=";
        else if (is_op(t, "<")) op = "<";
        else if (is_op(t, ">")) op = ">";
        else if (is_op(t, "<=")) op = "<=";
        else if (is_op(t, ">=")) op = ">=";
        else if (is_name(t, "in")) op = "in";
        else if (is_name(t, "not") && is_name(&P->t[P->pos + 1], "in")) {
            nx(P);
            op = "not in";
        }
        if (!op) return a;
        nx(P);
        a = bin(P, op, a, p_add(P), t->line);
    }
}

static node *p_not(parser *P)
{
    if (is_name(pk(P), "not")) {
        int line = nx(P)->line;
        node *n = mk(P, E_NOT, line);
        n->a = p_not(P);
        return n;
    }
    return p_cmp(P);
}

static node *p_and(parser *P)
{
    node *a = p_not(P);
    while (is_name(pk(P), "and")) {
        int line = nx(P)->line;
        node *n = mk(P, E_AND, line);
        n->a = a, n->b = p_not(P);
        a = n;
    }
    return a;
}

static node *p_or(parser *P)
{
    node *a = p_and(P);
    while (is_name(pk(P), "or")) {
        int line = nx(P)->line;
        node *n = mk(P, E_OR, line);
        n->a = a, n->b = p_and(P);
        a = n;
    }
    return a;
}

static node *p_expr(parser *P)
{
    node *a = p_or(P);
    while (is_name(pk(P), "if")) {
        int line = nx(P)->line;
        node *n = mk(P, E_COND, line);
        n->b = p_or(P); /* condition */
        n->a = a;
        n->c = accept_name(P, "else") ? p_expr(P) : NULL;
        a = n;
    }
    return a;
}

/* expression list without brackets: a, b, c -> list literal */
static node *p_tuple(parser *P)
{
    node *e = p_expr(P);
    if (!is_op(pk(P), ",")) return e;
    nvec items = {0};
    nv_push(P->A, &items, e);
    while (accept_op(P, ",")) {
        if (pk(P)->k == K_BCLOSE || pk(P)->k == K_VCLOSE) break;
        nv_push(P->A, &items, p_expr(P));
    }
    node *l = mk(P, E_LIST, e->line);
    l->body = nv_list(&items);
    return l;
}

static void expect_bclose(parser *P)
{
    if (pk(P)->k != K_BCLOSE) p_fail(P, pk(P)->line, "expected '%%}'");
    nx(P);
}

/* statements until one of the end words; returns which (its tag's name
 * token is consumed, its close is not) */
static nlist p_body(parser *P, const char *const *ends, int *which);

static node *p_stmt(parser *P)
{
    tok *kw = expect_name(P);
    int line = kw->line;
    if (is_name(kw, "if")) {
        node *n = mk(P, N_IF, line);
        n->a = p_expr(P);
        expect_bclose(P);
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        int w;
        n->body = p_body(P, ends, &w);
        if (w == 0) { /* elif: a nested if in the else branch */
            P->pos--;
            P->t[P->pos].s = "if", P->t[P->pos].n = 2; /* reparse "elif" as "if" */
            node *inner = p_stmt(P);
            nvec e = {0};
            nv_push(P->A, &e, inner);
            n->els = nv_list(&e);
            return n; /* the nested if consumed endif */
        }
        if (w == 1) {
            expect_bclose(P);
            static const char *const ends2[] = {"endif", NULL};
            n->els = p_body(P, ends2, &w);
        }
        expect_bclose(P);
        return n;
    }
    if (is_name(kw, "for")) {
        node *n = mk(P, N_FOR, line);
        namev names = {0};
        do {
            accept_op(P, "(");
            tok *t = expect_name(P);
            nm_push(P->A, &names, a_strndup(P->A, t->s, t->n), t->n);
            accept_op(P, ")");
        } while (accept_op(P, ","));
        n->names = names.s, n->name_n = names.n, n->n_names = names.cnt;
        if (!accept_name(P, "in")) p_fail(P, pk(P)->line, "expected 'in' in for");
        n->a = p_or(P); /* iterable (no ternary: "if" filters) */
        if (is_op(pk(P), ",")) { /* for x in a, b */
            nvec items = {0};
            nv_push(P->A, &items, n->a);
            while (accept_op(P, ",")) nv_push(P->A, &items, p_or(P));
            n->a = mk(P, E_LIST, line), n->a->body = nv_list(&items);
        }
        if (accept_name(P, "if")) n->b = p_or(P);
        accept_name(P, "recursive");
        expect_bclose(P);
        static const char *const ends[] = {"else", "endfor", NULL};
        int w;
        n->body = p_body(P, ends, &w);
        if (w == 0) {
            expect_bclose(P);
            static const char *const ends2[] = {"endfor", NULL};
            n->els = p_body(P, ends2, &w);
        }
        expect_bclose(P);
        return n;
    }
    if (is_name(kw, "set")) {
        /* targets: name | name.attr | a, b */
        node *target = p_postfix(P, p_primary(P));
        nvec targets = {0};
        nv_push(P->A, &targets, target);
        while (accept_op(P, ",")) nv_push(P->A, &targets, p_postfix(P, p_primary(P)));
        for (int i = 0; i < targets.n; i++)
            if (targets.v[i]->kind != E_NAME && targets.v[i]->kind != E_ATTR && targets.v[i]->kind != E_INDEX)
                p_fail(P, line, "cannot assign to this expression");
        if (accept_op(P, "=")) {
            node *n = mk(P, N_SET, line);
            n->body = nv_list(&targets);
            n->a = p_tuple(P);
            expect_bclose(P);
            return n;
        }
        if (targets.n != 1 || target->kind != E_NAME) p_fail(P, line, "block set needs one name");
        node *n = mk(P, N_SETBLOCK, line);
        n->s = target->s, n->n = target->n;
        /* optional filters on the block: {% set x | trim %} */
        node *f = NULL;
        if (is_op(pk(P), "|")) {
            node *ph = mk(P, E_LIT, line);
            ph->lit = V_undef();
            f = p_filters(P, ph);
        }
        n->a = f;
        expect_bclose(P);
        static const char *const ends[] = {"endset", NULL};
        int w;
        n->body = p_body(P, ends, &w);
        expect_bclose(P);
        return n;
    }
    if (is_name(kw, "macro")) {
        node *n = mk(P, N_MACRO, line);
        tok *nm = expect_name(P);
        n->s = a_strndup(P->A, nm->s, nm->n), n->n = nm->n;
        namev params = {0};
        nvec defs = {0};
        expect_op(P, "(");
        while (!accept_op(P, ")")) {
            tok *p = expect_name(P);
            nm_push(P->A, &params, a_strndup(P->A, p->s, p->n), p->n);
            nv_push(P->A, &defs, accept_op(P, "=") ? p_expr(P) : NULL);
            if (!accept_op(P, ",")) {
                expect_op(P, ")");
                break;
            }
        }
        n->names = params.s, n->name_n = params.n, n->n_names = params.cnt;
        n->kw = nv_list(&defs);
        expect_bclose(P);
        static const char *const ends[] = {"endmacro", NULL};
        int w;
        n->body = p_body(P, ends, &w);
        if (pk(P)->k == K_NAME) nx(P); /* {% endmacro name %} */
        expect_bclose(P);
        return n;
    }
    if (is_name(kw, "filter")) {
        node *n = mk(P, N_FILTERBLOCK, line);
        node *ph = mk(P, E_LIT, line);
        ph->lit = V_undef();
        /* reuse the filter-chain parser on a placeholder */
        P->pos--;
        P->t[P->pos].k = K_OP, P->t[P->pos].s = "|", P->t[P->pos].n = 1;
        n->a = p_filters(P, ph);
        expect_bclose(P);
        static const char *const ends[] = {"endfilter", NULL};
        int w;
        n->body = p_body(P, ends, &w);
        expect_bclose(P);
        return n;
    }
    if (is_name(kw, "break") || is_name(kw, "continue")) {
        node *n = mk(P, is_name(kw, "break") ? N_BREAK : N_CONTINUE, line);
        expect_bclose(P);
        return n;
    }
    if (is_name(kw, "generation") || is_name(kw, "endgeneration")) {
        /* transformers' assistant-mask markers: no output */
        expect_bclose(P);
        return NULL;
    }
    if (is_name(kw, "do")) {
        node *n = mk(P, N_SET, line); /* evaluate, discard */
        n->a = p_expr(P);
        expect_bclose(P);
        return n;
    }
    p_fail(P, line, "unknown tag '%.*s'", (int)kw->n, kw->s);
}

static nlist p_body(parser *P, const char *const *ends, int *which)
{
    nvec v = {0};
    for (;;) {
        tok *t = pk(P);
        if (t->k == K_EOF) {
            if (ends) p_fail(P, t->line, "missing {%% %s %%}", ends[0]);
            *which = -1;
            return nv_list(&v);
        }
        if (t->k == K_TEXT) {
            nx(P);
            node *n = mk(P, N_TEXT, t->line);
            n->s = t->s, n->n = t->n;
            nv_push(P->A, &v, n);
        } else if (t->k == K_VOPEN) {
            nx(P);
            node *n = mk(P, N_OUT, t->line);
            n->a = p_tuple(P);
            if (pk(P)->k != K_VCLOSE) p_fail(P, pk(P)->line, "expected '}}'");
            nx(P);
            nv_push(P->A, &v, n);
        } else if (t->k == K_BOPEN) {
            nx(P);
            tok *kw = pk(P);
            if (ends && kw->k == K_NAME)
                for (int i = 0; ends[i]; i++)
                    if (is_name(kw, ends[i])) {
                        nx(P);
                        *which = i;
                        return nv_list(&v);
                    }
            if (kw->k == K_NAME && (is_name(kw, "endif") || is_name(kw, "endfor") || is_name(kw, "else") ||
                                    is_name(kw, "elif") || is_name(kw, "endmacro") || is_name(kw, "endset")))
                p_fail(P, kw->line, "unexpected {%% %.*s %%}", (int)kw->n, kw->s);
            node *n = p_stmt(P);
            if (n) nv_push(P->A, &v, n);
        } else {
            p_fail(P, t->line, "unexpected token");
        }
    }
}

tj_template_t *tj_parse(const char *src, size_t len, g4_err_t *err)
{
    tj_template_t *t = g4_calloc(1, sizeof *t);
    if (!t) {
        g4_err_set(err, G4_ERR_NOMEM, "template: out of memory");
        return NULL;
    }
    jmp_buf jb;
    t->A.jb = &jb, t->A.err = err;
    if (setjmp(jb)) {
        a_free(&t->A);
        g4_free(t);
        return NULL;
    }
    parser P = {.A = &t->A};
    size_t plen;
    char *pre = preprocess(&t->A, src, len, &plen);
    tokv tv = {0};
    lex(&P, pre, plen, &tv);
    P.t = tv.v, P.n = tv.n;
    int w;
    t->body = p_body(&P, NULL, &w);
    t->A.jb = NULL;
    return t;
}

void tj_free(tj_template_t **t)
{
    if (!t || !*t) return;
    a_free(&(*t)->A);
    g4_free(*t);
    *t = NULL;
}

/* ---- rendering ------------------------------------------------------------ */

typedef struct scope {
    vdict *vars;
    struct scope *parent;
} scope;

typedef struct rctx {
    arena *A;
    int depth;
    uint64_t steps; /* expressions evaluated: bounded by s_max_steps */
} rctx;

static _Noreturn void r_fail(rctx *R, int line, const char *fmt, ...)
{
    char m[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    g4_err_set(R->A->err, G4_ERR_FORMAT, "template line %d: %s", line, m);
    longjmp(*R->A->jb, 1);
}

static val *lookup(scope *s, const char *k, size_t n)
{
    for (; s; s = s->parent) {
        val *v = d_find(s->vars, k, n);
        if (v) return v;
    }
    return NULL;
}

static int truthy(val v)
{
    switch (v.t) {
    case V_UNDEF: case V_NONE: return 0;
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0;
    case V_STR: return v.u.s.n != 0;
    case V_LIST: return v.u.l->n != 0;
    case V_DICT: return v.u.d->n != 0;
    case V_MACRO: return 1;
    }
    return 0;
}

/* JavaScript's Number.prototype.toString */
static void fmt_number(char *buf, size_t size, double f)
{
    if (isnan(f)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, size, f < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (f == 0) {
        snprintf(buf, size, "0");
        return;
    }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp: [-]d[.ddd]e[+-]XX -> digits and exponent */
    char digits[24];
    int nd = 0, neg = tmp[0] == '-';
    const char *p = tmp + neg;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int e = atoi(p + 1); /* value = 0.d1d2.. * 10^(e+1) */
    int n = e + 1;
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (nd <= n && n <= 21) {
        memcpy(out + o, digits, (size_t)nd), o += (size_t)nd;
        for (int i = nd; i < n; i++) out[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(out + o, digits, (size_t)n), o += (size_t)n;
        out[o++] = '.';
        memcpy(out + o, digits + n, (size_t)(nd - n)), o += (size_t)(nd - n);
    } else if (-6 < n && n <= 0) {
        out[o++] = '0', out[o++] = '.';
        for (int i = 0; i < -n; i++) out[o++] = '0';
        memcpy(out + o, digits, (size_t)nd), o += (size_t)nd;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, (size_t)(nd - 1)), o += (size_t)(nd - 1);
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    out[o] = 0;
    snprintf(buf, size, "%s", out);
}

static void to_str_buf(rctx *R, sbuf *b, val v, int repr);

static void repr_str(rctx *R, sbuf *b, const char *s, size_t n)
{
    char q = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
    sb_put(R->A, b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == q || c == '\\') sb_put(R->A, b, "\\", 1), sb_put(R->A, b, &c, 1);
        else if (c == '\n') sb_puts(R->A, b, "\\n");
        else if (c == '\t') sb_puts(R->A, b, "\\t");
        else if (c == '\r') sb_puts(R->A, b, "\\r");
        else sb_put(R->A, b, &c, 1);
    }
    sb_put(R->A, b, &q, 1);
}

static void to_str_buf(rctx *R, sbuf *b, val v, int repr)
{
    char num[64];
    switch (v.t) {
    case V_UNDEF: break;
    case V_NONE: if (repr) sb_puts(R->A, b, "None"); break;
    case V_BOOL: sb_puts(R->A, b, repr ? (v.u.b ? "True" : "False") : (v.u.b ? "true" : "false")); break;
    case V_INT: snprintf(num, sizeof num, "%lld", (long long)v.u.i), sb_puts(R->A, b, num); break;
    case V_FLOAT: fmt_number(num, sizeof num, v.u.f), sb_puts(R->A, b, num); break;
    case V_STR:
        if (repr) repr_str(R, b, v.u.s.s, v.u.s.n);
        else sb_put(R->A, b, v.u.s.s, v.u.s.n);
        break;
    case V_LIST:
        sb_puts(R->A, b, "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) sb_puts(R->A, b, ", ");
            to_str_buf(R, b, v.u.l->v[i], 1);
        }
        sb_puts(R->A, b, "]");
        break;
    case V_DICT:
        sb_puts(R->A, b, "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) sb_puts(R->A, b, ", ");
            repr_str(R, b, v.u.d->k[i], v.u.d->kn[i]);
            sb_puts(R->A, b, ": ");
            to_str_buf(R, b, v.u.d->v[i], 1);
        }
        sb_puts(R->A, b, "}");
        break;
    case V_MACRO: sb_puts(R->A, b, "<macro>"); break;
    }
}

static val to_str(rctx *R, val v)
{
    if (v.t == V_STR) return v;
    sbuf b = {0};
    to_str_buf(R, &b, v, 0);
    return V_str(b.p ? b.p : "", b.n);
}

static const char *type_name(val v)
{
    static const char *n[] = {"undefined", "none", "boolean", "integer", "float", "string", "list", "mapping", "macro"};
    return n[v.t];
}

static int is_num(val v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double num_f(val v) { return v.t == V_FLOAT ? v.u.f : v.t == V_INT ? (double)v.u.i : (double)v.u.b; }

static int v_eq(val a, val b)
{
    if (is_num(a) && is_num(b)) {
        if (a.t == V_BOOL && b.t == V_BOOL) return a.u.b == b.u.b;
        if ((a.t == V_BOOL) != (b.t == V_BOOL)) return 0;
        return num_f(a) == num_f(b);
    }
    if (a.t != b.t) return 0;
    switch (a.t) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.s, b.u.s.s, a.u.s.n) == 0;
    case V_LIST:
        if (a.u.l->n != b.u.l->n) return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!v_eq(a.u.l->v[i], b.u.l->v[i])) return 0;
        return 1;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            val *o = d_find(b.u.d, a.u.d->k[i], a.u.d->kn[i]);
            if (!o || !v_eq(a.u.d->v[i], *o)) return 0;
        }
        return 1;
    case V_MACRO: return a.u.m == b.u.m;
    default: return 0;
    }
}

static int cmp_str(const char *a, size_t an, const char *b, size_t bn, int fold)
{
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++) {
        int x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (fold) x = tolower(x), y = tolower(y);
        if (x != y) return x < y ? -1 : 1;
    }
    return an < bn ? -1 : an > bn;
}

static int v_cmp(rctx *R, val a, val b, int line, int fold)
{
    if (is_num(a) && is_num(b)) {
        double x = num_f(a), y = num_f(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == V_STR && b.t == V_STR) return cmp_str(a.u.s.s, a.u.s.n, b.u.s.s, b.u.s.n, fold);
    r_fail(R, line, "cannot compare %s with %s", type_name(a), type_name(b));
}

/* UTF-8 code point boundaries, for string indexing and slicing */
static size_t u8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}
static size_t u8_offset(const char *s, size_t n, size_t cp)
{
    size_t i = 0, c = 0;
    while (i < n) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (c == cp) return i;
            c++;
        }
        i++;
    }
    return n;
}

/* JavaScript's String.prototype.trim whitespace set (what the reference engine uses) */
static size_t ws_len_at(const char *s, size_t n, size_t i)
{
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || (c >= 9 && c <= 13)) return 1;
    if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] == 0xA0) return 2;
    if (c == 0xEF && i + 2 < n && (unsigned char)s[i + 1] == 0xBB && (unsigned char)s[i + 2] == 0xBF) return 3;
    if (c == 0xE1 && i + 2 < n && (unsigned char)s[i + 1] == 0x9A && (unsigned char)s[i + 2] == 0x80) return 3;
    if (c == 0xE3 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 && (unsigned char)s[i + 2] == 0x80) return 3;
    if (c == 0xE2 && i + 2 < n) {
        unsigned char d = (unsigned char)s[i + 1], e = (unsigned char)s[i + 2];
        if (d == 0x80 && ((e >= 0x80 && e <= 0x8A) || e == 0xA8 || e == 0xA9 || e == 0xAF)) return 3;
        if (d == 0x81 && e == 0x9F) return 3;
    }
    return 0;
}
static size_t ws_len_before(const char *s, size_t n, size_t end)
{
    for (size_t k = 1; k <= 3 && k <= end; k++) {
        size_t w = ws_len_at(s, n, end - k);
        if (w == k) return k;
    }
    return 0;
}

static val str_strip(val v, const char *chars, size_t cn, int left, int right)
{
    const char *s = v.u.s.s;
    size_t a = 0, b = v.u.s.n, w;
    if (chars) {
        while (left && a < b && memchr(chars, s[a], cn)) a++;
        while (right && b > a && memchr(chars, s[b - 1], cn)) b--;
    } else {
        while (left && a < b && (w = ws_len_at(s, b, a)) > 0) a += w;
        while (right && b > a && (w = ws_len_before(s, b, b)) > 0) b -= w;
    }
    return V_str(s + a, b - a);
}

static val mk_list(rctx *R) { return (val){.t = V_LIST, .u.l = l_new(R->A)}; }
static val mk_dict(rctx *R) { return (val){.t = V_DICT, .u.d = d_new(R->A)}; }

/* iteration: lists as they are, dicts by key, strings by code point */
static vlist *iter_of(rctx *R, val v, int line)
{
    if (v.t == V_LIST) return v.u.l;
    vlist *l = l_new(R->A);
    if (v.t == V_DICT) {
        for (size_t i = 0; i < v.u.d->n; i++) l_push(R->A, l, V_str(v.u.d->k[i], v.u.d->kn[i]));
    } else if (v.t == V_STR) {
        const char *s = v.u.s.s;
        size_t n = v.u.s.n;
        for (size_t i = 0; i < n;) {
            size_t j = i + 1;
            while (j < n && ((unsigned char)s[j] & 0xC0) == 0x80) j++;
            l_push(R->A, l, V_str(s + i, j - i));
            i = j;
        }
    } else if (v.t != V_UNDEF && v.t != V_NONE) {
        r_fail(R, line, "%s is not iterable", type_name(v));
    }
    return l;
}

static val eval(rctx *R, const node *e, scope *S);
static int exec_body(rctx *R, nlist body, scope *S, sbuf *out);

typedef struct args {
    val *pos;
    int npos;
    const char **kn;
    size_t *kl;
    val *kv;
    int nkw;
} args;

static args eval_args(rctx *R, const node *c, scope *S)
{
    args a = {0};
    a.npos = c->body.n, a.nkw = c->kw.n;
    a.pos = a_alloc(R->A, sizeof(val) * (size_t)(a.npos + 1));
    a.kv = a_alloc(R->A, sizeof(val) * (size_t)(a.nkw + 1));
    for (int i = 0; i < a.npos; i++) a.pos[i] = eval(R, c->body.v[i], S);
    for (int i = 0; i < a.nkw; i++) a.kv[i] = eval(R, c->kw.v[i], S);
    a.kn = c->names, a.kl = c->name_n;
    return a;
}

/* argument i or keyword name, else undefined */
static val arg(const args *a, int i, const char *name)
{
    if (name)
        for (int k = 0; k < a->nkw; k++)
            if (a->kl[k] == strlen(name) && memcmp(a->kn[k], name, a->kl[k]) == 0) return a->kv[k];
    if (i >= 0 && i < a->npos) return a->pos[i];
    return V_undef();
}

static val call_macro(rctx *R, val m, const args *a, scope *caller, int line)
{
    const node *def = m.u.m;
    if (++R->depth > 200) r_fail(R, line, "macro recursion too deep");
    scope ms = {.vars = d_new(R->A), .parent = caller};
    vlist *varargs = l_new(R->A);
    vdict *kwargs = d_new(R->A);
    for (int i = 0; i < def->n_names; i++) {
        val v = V_undef();
        int found = 0;
        if (i < a->npos) v = a->pos[i], found = 1;
        for (int k = 0; k < a->nkw; k++)
            if (a->kl[k] == def->name_n[i] && memcmp(a->kn[k], def->names[i], a->kl[k]) == 0) v = a->kv[k], found = 1;
        if (!found && def->kw.v[i]) v = eval(R, def->kw.v[i], &ms);
        d_set(R->A, ms.vars, def->names[i], def->name_n[i], v);
    }
    for (int i = def->n_names; i < a->npos; i++) l_push(R->A, varargs, a->pos[i]);
    for (int k = 0; k < a->nkw; k++) {
        int known = 0;
        for (int i = 0; i < def->n_names; i++)
            if (a->kl[k] == def->name_n[i] && memcmp(a->kn[k], def->names[i], a->kl[k]) == 0) known = 1;
        if (!known) d_set(R->A, kwargs, a->kn[k], a->kl[k], a->kv[k]);
    }
    d_set(R->A, ms.vars, "varargs", 7, (val){.t = V_LIST, .u.l = varargs});
    d_set(R->A, ms.vars, "kwargs", 6, (val){.t = V_DICT, .u.d = kwargs});
    sbuf out = {0};
    exec_body(R, def->body, &ms, &out);
    R->depth--;
    return V_str(out.p ? out.p : "", out.n);
}

static int apply_test(rctx *R, const char *name, val v, const args *a, int line);
static val apply_filter(rctx *R, const char *name, val v, const args *a, scope *S, int line);

static int name_is(const char *a, const char *b) { return strcmp(a, b) == 0; }

static val str_method(rctx *R, val v, const char *m, const args *a, int line)
{
    const char *s = v.u.s.s;
    size_t n = v.u.s.n;
    if (name_is(m, "strip") || name_is(m, "lstrip") || name_is(m, "rstrip")) {
        val c = arg(a, 0, "chars");
        int l = m[0] != 'r', r = m[0] != 'l';
        if (c.t == V_STR) return str_strip(v, c.u.s.s, c.u.s.n, l, r);
        return str_strip(v, NULL, 0, l, r);
    }
    if (name_is(m, "upper") || name_is(m, "lower") || name_is(m, "title") || name_is(m, "capitalize")) {
        char *o = a_strndup(R->A, s, n);
        int start = 1;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)o[i];
            if (name_is(m, "upper")) o[i] = (char)toupper(c);
            else if (name_is(m, "lower")) o[i] = (char)tolower(c);
            else if (name_is(m, "title")) {
                o[i] = (char)(start ? toupper(c) : tolower(c));
                start = !isalnum(c) && c < 0x80;
            } else
                o[i] = (char)(i == 0 ? toupper(c) : tolower(c));
        }
        return V_str(o, n);
    }
    if (name_is(m, "startswith") || name_is(m, "endswith")) {
        val p = arg(a, 0, NULL);
        vlist one = {&p, 1, 1};
        vlist *cands = p.t == V_LIST ? p.u.l : &one;
        for (size_t k = 0; k < cands->n; k++) {
            val q = cands->v[k];
            if (q.t != V_STR) r_fail(R, line, "%s() takes a string", m);
            if (q.u.s.n <= n &&
                memcmp(m[0] == 's' ? s : s + n - q.u.s.n, q.u.s.s, q.u.s.n) == 0)
                return V_bool(1);
        }
        return V_bool(0);
    }
    if (name_is(m, "split") || name_is(m, "rsplit")) {
        val sep = arg(a, 0, "sep"), mx = arg(a, 1, "maxsplit");
        int64_t maxsplit = mx.t == V_INT ? mx.u.i : -1;
        val out = mk_list(R);
        if (sep.t == V_STR && sep.u.s.n == 0) r_fail(R, line, "empty separator");
        if (sep.t != V_STR) { /* whitespace runs */
            size_t i = 0;
            int64_t cnt = 0;
            while (i < n) {
                while (i < n && is_ws(s[i])) i++;
                if (i >= n) break;
                size_t j = i;
                if (maxsplit >= 0 && cnt >= maxsplit) {
                    size_t e = n;
                    while (e > i && is_ws(s[e - 1])) e--;
                    l_push(R->A, out.u.l, V_str(s + i, e - i));
                    break;
                }
                while (j < n && !is_ws(s[j])) j++;
                l_push(R->A, out.u.l, V_str(s + i, j - i));
                cnt++;
                i = j;
            }
            return out;
        }
        size_t i = 0;
        int64_t cnt = 0;
        for (;;) {
            const char *hit = NULL;
            if (maxsplit < 0 || cnt < maxsplit)
                for (size_t j = i; j + sep.u.s.n <= n; j++)
                    if (memcmp(s + j, sep.u.s.s, sep.u.s.n) == 0) {
                        hit = s + j;
                        break;
                    }
            if (!hit) {
                l_push(R->A, out.u.l, V_str(s + i, n - i));
                break;
            }
            l_push(R->A, out.u.l, V_str(s + i, (size_t)(hit - (s + i))));
            i = (size_t)(hit - s) + sep.u.s.n;
            cnt++;
        }
        return out;
    }
    if (name_is(m, "replace")) {
        return apply_filter(R, "replace", v, a, NULL, line);
    }
    if (name_is(m, "find") || name_is(m, "count")) {
        val p = arg(a, 0, NULL);
        if (p.t != V_STR) r_fail(R, line, "%s() takes a string", m);
        int64_t cnt = 0;
        for (size_t j = 0; j + p.u.s.n <= n; j++)
            if (memcmp(s + j, p.u.s.s, p.u.s.n) == 0) {
                if (m[0] == 'f') return V_int((int64_t)u8_count(s, j));
                cnt++;
                if (p.u.s.n) j += p.u.s.n - 1;
            }
        return V_int(m[0] == 'f' ? -1 : cnt);
    }
    if (name_is(m, "join")) {
        val it = arg(a, 0, NULL);
        vlist *l = iter_of(R, it, line);
        sbuf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i) sb_put(R->A, &b, s, n);
            to_str_buf(R, &b, l->v[i], 0);
        }
        return V_str(b.p ? b.p : "", b.n);
    }
    if (name_is(m, "format")) {
        /* "%s"-less Python str.format with {} / {0} / {name} fields */
        sbuf b = {0};
        int auto_i = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '{' && i + 1 < n && s[i + 1] == '{') { sb_put(R->A, &b, "{", 1), i++; continue; }
            if (s[i] == '}' && i + 1 < n && s[i + 1] == '}') { sb_put(R->A, &b, "}", 1), i++; continue; }
            if (s[i] == '{') {
                size_t j = i + 1;
                while (j < n && s[j] != '}') j++;
                char key[64];
                size_t kl = j - i - 1 < sizeof key - 1 ? j - i - 1 : sizeof key - 1;
                memcpy(key, s + i + 1, kl), key[kl] = 0;
                val x = kl == 0 ? arg(a, auto_i++, NULL) : isdigit((unsigned char)key[0]) ? arg(a, atoi(key), NULL)
                                                                                          : arg(a, -1, key);
                to_str_buf(R, &b, x, 0);
                i = j;
                continue;
            }
            sb_put(R->A, &b, s + i, 1);
        }
        return V_str(b.p ? b.p : "", b.n);
    }
    if (name_is(m, "isdigit") || name_is(m, "isalpha") || name_is(m, "isspace") || name_is(m, "isalnum")) {
        if (!n) return V_bool(0);
        for (size_t i = 0; i < n; i++) {
            int c = (unsigned char)s[i];
            int ok = m[2] == 'd' ? isdigit(c) : m[2] == 'a' && m[4] == 'p' ? isalpha(c) : m[2] == 's' ? is_ws((char)c)
                                                                                                     : isalnum(c);
            if (!ok) return V_bool(0);
        }
        return V_bool(1);
    }
    if (name_is(m, "splitlines")) {
        val out = mk_list(R);
        size_t i = 0;
        while (i < n) {
            size_t j = i;
            while (j < n && s[j] != '\n' && s[j] != '\r') j++;
            l_push(R->A, out.u.l, V_str(s + i, j - i));
            if (j < n && s[j] == '\r' && j + 1 < n && s[j + 1] == '\n') j++;
            i = j + 1;
        }
        return out;
    }
    r_fail(R, line, "string has no method '%s'", m);
}

static val call_method(rctx *R, val obj, const char *m, const args *a, int line)
{
    if (obj.t == V_STR) return str_method(R, obj, m, a, line);
    if (obj.t == V_DICT) {
        vdict *d = obj.u.d;
        if (name_is(m, "get")) {
            val k = arg(a, 0, NULL), def = a->npos > 1 ? a->pos[1] : arg(a, -1, "default");
            if (k.t != V_STR) return def.t == V_UNDEF ? V_none() : def;
            val *v = d_find(d, k.u.s.s, k.u.s.n);
            if (v) return *v;
            return def.t == V_UNDEF ? V_none() : def;
        }
        if (name_is(m, "items") || name_is(m, "keys") || name_is(m, "values")) {
            val out = mk_list(R);
            for (size_t i = 0; i < d->n; i++) {
                val k = V_str(d->k[i], d->kn[i]);
                if (m[0] == 'i') {
                    val p = mk_list(R);
                    l_push(R->A, p.u.l, k);
                    l_push(R->A, p.u.l, d->v[i]);
                    l_push(R->A, out.u.l, p);
                } else {
                    l_push(R->A, out.u.l, m[0] == 'k' ? k : d->v[i]);
                }
            }
            return out;
        }
        if (name_is(m, "update")) {
            val o = arg(a, 0, NULL);
            if (o.t == V_DICT)
                for (size_t i = 0; i < o.u.d->n; i++) d_set(R->A, d, o.u.d->k[i], o.u.d->kn[i], o.u.d->v[i]);
            for (int k = 0; k < a->nkw; k++) d_set(R->A, d, a->kn[k], a->kl[k], a->kv[k]);
            return V_none();
        }
        if (name_is(m, "pop")) {
            val k = arg(a, 0, NULL);
            if (k.t == V_STR)
                for (size_t i = 0; i < d->n; i++)
                    if (d->kn[i] == k.u.s.n && memcmp(d->k[i], k.u.s.s, k.u.s.n) == 0) {
                        val v = d->v[i];
                        memmove(d->k + i, d->k + i + 1, (d->n - i - 1) * sizeof *d->k);
                        memmove(d->kn + i, d->kn + i + 1, (d->n - i - 1) * sizeof *d->kn);
                        memmove(d->v + i, d->v + i + 1, (d->n - i - 1) * sizeof *d->v);
                        d->n--;
                        return v;
                    }
            return a->npos > 1 ? a->pos[1] : V_none();
        }
        val *f = d_find(d, m, strlen(m));
        if (f && f->t == V_MACRO) return call_macro(R, *f, a, NULL, line);
        r_fail(R, line, "mapping has no method '%s'", m);
    }
    if (obj.t == V_LIST) {
        vlist *l = obj.u.l;
        if (name_is(m, "append")) {
            l_push(R->A, l, arg(a, 0, NULL));
            return V_none();
        }
        if (name_is(m, "extend")) {
            vlist *o = iter_of(R, arg(a, 0, NULL), line);
            for (size_t i = 0; i < o->n; i++) l_push(R->A, l, o->v[i]);
            return V_none();
        }
        if (name_is(m, "pop")) {
            if (!l->n) r_fail(R, line, "pop from an empty list");
            val i = arg(a, 0, NULL);
            int64_t k = i.t == V_INT ? i.u.i : (int64_t)l->n - 1;
            if (k < 0) k += (int64_t)l->n;
            if (k < 0 || k >= (int64_t)l->n) r_fail(R, line, "pop index out of range");
            val v = l->v[k];
            memmove(l->v + k, l->v + k + 1, (l->n - (size_t)k - 1) * sizeof(val));
            l->n--;
            return v;
        }
        if (name_is(m, "index")) {
            val x = arg(a, 0, NULL);
            for (size_t i = 0; i < l->n; i++)
                if (v_eq(l->v[i], x)) return V_int((int64_t)i);
            r_fail(R, line, "value not in list");
        }
        r_fail(R, line, "list has no method '%s'", m);
    }
    r_fail(R, line, "%s has no method '%s'", type_name(obj), m);
}

static val get_attr(val obj, const char *k, size_t n)
{
    if (obj.t == V_DICT) {
        val *v = d_find(obj.u.d, k, n);
        if (v) return *v;
    }
    return V_undef();
}

static val get_index(rctx *R, val obj, val idx, int line)
{
    if (obj.t == V_DICT) {
        if (idx.t == V_STR) return get_attr(obj, idx.u.s.s, idx.u.s.n);
        val k = to_str(R, idx);
        return get_attr(obj, k.u.s.s, k.u.s.n);
    }
    if (obj.t == V_LIST || obj.t == V_STR) {
        if (idx.t != V_INT) return V_undef();
        int64_t n = obj.t == V_LIST ? (int64_t)obj.u.l->n : (int64_t)u8_count(obj.u.s.s, obj.u.s.n);
        int64_t i = idx.u.i < 0 ? idx.u.i + n : idx.u.i;
        if (i < 0 || i >= n) return V_undef();
        if (obj.t == V_LIST) return obj.u.l->v[i];
        size_t a = u8_offset(obj.u.s.s, obj.u.s.n, (size_t)i), b = u8_offset(obj.u.s.s, obj.u.s.n, (size_t)i + 1);
        return V_str(obj.u.s.s + a, b - a);
    }
    (void)R, (void)line;
    return V_undef();
}

static val do_slice(rctx *R, val obj, val lo, val hi, val st, int line)
{
    if (obj.t != V_LIST && obj.t != V_STR) {
        if (obj.t == V_UNDEF || obj.t == V_NONE) return V_undef();
        r_fail(R, line, "cannot slice %s", type_name(obj));
    }
    int64_t n = obj.t == V_LIST ? (int64_t)obj.u.l->n : (int64_t)u8_count(obj.u.s.s, obj.u.s.n);
    int64_t step = st.t == V_INT ? st.u.i : 1;
    if (step == 0) r_fail(R, line, "slice step cannot be zero");
    int64_t a, b;
    if (step > 0) {
        a = lo.t == V_INT ? lo.u.i : 0, b = hi.t == V_INT ? hi.u.i : n;
        if (a < 0) a += n;
        if (b < 0) b += n;
        a = a < 0 ? 0 : a > n ? n : a, b = b < 0 ? 0 : b > n ? n : b;
    } else {
        a = lo.t == V_INT ? lo.u.i : n - 1, b = hi.t == V_INT ? hi.u.i : -n - 1;
        if (a < 0) a += n;
        if (b < 0) b += n;
        a = a < -1 ? -1 : a > n - 1 ? n - 1 : a, b = b < -1 ? -1 : b > n - 1 ? n - 1 : b;
    }
    vlist *src = obj.t == V_LIST ? obj.u.l : iter_of(R, obj, line);
    val out = mk_list(R);
    for (int64_t i = a; step > 0 ? i < b : i > b; i += step) l_push(R->A, out.u.l, src->v[i]);
    if (obj.t == V_LIST) return out;
    sbuf sb = {0};
    for (size_t i = 0; i < out.u.l->n; i++) sb_put(R->A, &sb, out.u.l->v[i].u.s.s, out.u.l->v[i].u.s.n);
    return V_str(sb.p ? sb.p : "", sb.n);
}

static void json_str(rctx *R, sbuf *b, const char *s, size_t n)
{
    sb_puts(R->A, b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"') sb_puts(R->A, b, "\\\"");
        else if (c == '\\') sb_puts(R->A, b, "\\\\");
        else if (c == '\n') sb_puts(R->A, b, "\\n");
        else if (c == '\r') sb_puts(R->A, b, "\\r");
        else if (c == '\t') sb_puts(R->A, b, "\\t");
        else if (c == '\b') sb_puts(R->A, b, "\\b");
        else if (c == '\f') sb_puts(R->A, b, "\\f");
        else if (c < 0x20) snprintf(e, sizeof e, "\\u%04x", c), sb_puts(R->A, b, e);
        else sb_put(R->A, b, (const char *)&c, 1);
    }
    sb_puts(R->A, b, "\"");
}

/* tojson as the reference engine writes it: ", " and ": " separators without
 * indent, newline + indent per level with it; non-ASCII kept */
static void to_json(rctx *R, sbuf *b, val v, int indent, int depth, int line)
{
    char num[64];
    switch (v.t) {
    case V_UNDEF: case V_NONE: sb_puts(R->A, b, "null"); break;
    case V_BOOL: sb_puts(R->A, b, v.u.b ? "true" : "false"); break;
    case V_INT: snprintf(num, sizeof num, "%lld", (long long)v.u.i), sb_puts(R->A, b, num); break;
    case V_FLOAT: fmt_number(num, sizeof num, v.u.f), sb_puts(R->A, b, num); break;
    case V_STR: json_str(R, b, v.u.s.s, v.u.s.n); break;
    case V_LIST: case V_DICT: {
        int isl = v.t == V_LIST;
        size_t n = isl ? v.u.l->n : v.u.d->n;
        sb_puts(R->A, b, isl ? "[" : "{");
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(R->A, b, indent ? "," : ", ");
            if (indent) {
                sb_puts(R->A, b, "\n");
                for (int k = 0; k < indent * (depth + 1); k++) sb_puts(R->A, b, " ");
            }
            if (!isl) {
                json_str(R, b, v.u.d->k[i], v.u.d->kn[i]);
                sb_puts(R->A, b, ": ");
            }
            to_json(R, b, isl ? v.u.l->v[i] : v.u.d->v[i], indent, depth + 1, line);
        }
        if (indent && n) {
            sb_puts(R->A, b, "\n");
            for (int k = 0; k < indent * depth; k++) sb_puts(R->A, b, " ");
        }
        sb_puts(R->A, b, isl ? "]" : "}");
        break;
    }
    case V_MACRO: r_fail(R, line, "cannot serialize a macro");
    }
}

/* stable merge sort of values with a comparator */
typedef struct sortspec {
    rctx *R;
    int line, fold, by_value, reverse;
    const char *attr;
} sortspec;

static int sort_cmp(sortspec *sp, val a, val b)
{
    if (sp->by_value >= 0) { /* pairs */
        a = a.u.l->v[sp->by_value], b = b.u.l->v[sp->by_value];
    }
    if (sp->attr) a = get_attr(a, sp->attr, strlen(sp->attr)), b = get_attr(b, sp->attr, strlen(sp->attr));
    int c = v_cmp(sp->R, a, b, sp->line, sp->fold);
    return sp->reverse ? -c : c;
}

static void msort(sortspec *sp, val *v, val *tmp, size_t n)
{
    if (n < 2) return;
    size_t h = n / 2;
    msort(sp, v, tmp, h);
    msort(sp, v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = sort_cmp(sp, v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof(val));
}

static val sorted_copy(rctx *R, vlist *src, sortspec *sp)
{
    val out = mk_list(R);
    for (size_t i = 0; i < src->n; i++) l_push(R->A, out.u.l, src->v[i]);
    val *tmp = a_alloc(R->A, (src->n + 1) * sizeof(val));
    msort(sp, out.u.l->v, tmp, out.u.l->n);
    return out;
}

static val apply_filter(rctx *R, const char *f, val v, const args *a, scope *S, int line)
{
    (void)S;
    if (name_is(f, "trim") || name_is(f, "strip")) {
        if (v.t != V_STR) v = to_str(R, v);
        val c = arg(a, 0, "chars");
        return c.t == V_STR ? str_strip(v, c.u.s.s, c.u.s.n, 1, 1) : str_strip(v, NULL, 0, 1, 1);
    }
    if (name_is(f, "upper") || name_is(f, "lower") || name_is(f, "title") || name_is(f, "capitalize")) {
        if (v.t == V_UNDEF) r_fail(R, line, "cannot apply '%s' to undefined", f);
        return str_method(R, to_str(R, v), f, a, line);
    }
    if (name_is(f, "default") || name_is(f, "d")) {
        val def = arg(a, 0, "default_value"), bl = arg(a, 1, "boolean");
        if (v.t == V_UNDEF || (truthy(bl) && !truthy(v))) return def.t == V_UNDEF ? V_str("", 0) : def;
        return v;
    }
    if (name_is(f, "length") || name_is(f, "count")) {
        if (v.t == V_STR) return V_int((int64_t)u8_count(v.u.s.s, v.u.s.n));
        if (v.t == V_LIST) return V_int((int64_t)v.u.l->n);
        if (v.t == V_DICT) return V_int((int64_t)v.u.d->n);
        if (v.t == V_UNDEF) return V_int(0);
        r_fail(R, line, "%s has no length", type_name(v));
    }
    if (name_is(f, "list")) {
        vlist *l = iter_of(R, v, line);
        val out = mk_list(R);
        for (size_t i = 0; i < l->n; i++) l_push(R->A, out.u.l, l->v[i]);
        return out;
    }
    if (name_is(f, "first") || name_is(f, "last")) {
        vlist *l = iter_of(R, v, line);
        if (!l->n) return V_undef();
        return f[0] == 'f' ? l->v[0] : l->v[l->n - 1];
    }
    if (name_is(f, "reverse")) {
        if (v.t == V_STR) {
            vlist *l = iter_of(R, v, line);
            sbuf b = {0};
            for (size_t i = l->n; i-- > 0;) sb_put(R->A, &b, l->v[i].u.s.s, l->v[i].u.s.n);
            return V_str(b.p ? b.p : "", b.n);
        }
        vlist *l = iter_of(R, v, line);
        val out = mk_list(R);
        for (size_t i = l->n; i-- > 0;) l_push(R->A, out.u.l, l->v[i]);
        return out;
    }
    if (name_is(f, "join")) {
        val sep = arg(a, 0, "d"), attr = arg(a, 1, "attribute");
        vlist *l = iter_of(R, v, line);
        sbuf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i && sep.t == V_STR) sb_put(R->A, &b, sep.u.s.s, sep.u.s.n);
            val x = l->v[i];
            if (attr.t == V_STR) x = get_attr(x, attr.u.s.s, attr.u.s.n);
            to_str_buf(R, &b, x, 0);
        }
        return V_str(b.p ? b.p : "", b.n);
    }
    if (name_is(f, "string")) return to_str(R, v);
    if (name_is(f, "int")) {
        if (v.t == V_INT) return v;
        if (v.t == V_FLOAT) return V_int((int64_t)v.u.f);
        if (v.t == V_BOOL) return V_int(v.u.b);
        if (v.t == V_STR) {
            char *e;
            char *t = a_strndup(R->A, v.u.s.s, v.u.s.n);
            long long x = strtoll(t, &e, 10);
            if (*e == '.') return V_int((int64_t)strtod(t, NULL));
            return V_int(e == t ? 0 : x);
        }
        return V_int(0);
    }
    if (name_is(f, "float")) {
        if (is_num(v)) return V_float(num_f(v));
        if (v.t == V_STR) return V_float(strtod(a_strndup(R->A, v.u.s.s, v.u.s.n), NULL));
        return V_float(0);
    }
    if (name_is(f, "abs")) {
        if (v.t == V_INT) return V_int(v.u.i < 0 ? -v.u.i : v.u.i);
        if (v.t == V_FLOAT) return V_float(fabs(v.u.f));
        r_fail(R, line, "abs of %s", type_name(v));
    }
    if (name_is(f, "round")) {
        val p = arg(a, 0, "precision");
        double x = num_f(v), m = pow(10, p.t == V_INT ? (double)p.u.i : 0);
        return V_float(round(x * m) / m);
    }
    if (name_is(f, "tojson")) {
        val ind = arg(a, 0, "indent");
        sbuf b = {0};
        to_json(R, &b, v, ind.t == V_INT ? (int)ind.u.i : 0, 0, line);
        return V_str(b.p ? b.p : "", b.n);
    }
    if (name_is(f, "items")) {
        if (v.t == V_UNDEF) return mk_list(R);
        if (v.t != V_DICT) r_fail(R, line, "items of %s", type_name(v));
        args none = {0};
        return call_method(R, v, "items", &none, line);
    }
    if (name_is(f, "dictsort")) {
        if (v.t != V_DICT) r_fail(R, line, "dictsort of %s", type_name(v));
        args none = {0};
        val items = call_method(R, v, "items", &none, line);
        val cs = arg(a, 0, "case_sensitive"), by = arg(a, 1, "by"), rev = arg(a, 2, "reverse");
        sortspec sp = {R, line, !truthy(cs), 0, truthy(rev), NULL};
        if (by.t == V_STR && by.u.s.n == 5 && memcmp(by.u.s.s, "value", 5) == 0) sp.by_value = 1;
        return sorted_copy(R, items.u.l, &sp);
    }
    if (name_is(f, "sort")) {
        val rev = arg(a, 0, "reverse"), cs = arg(a, 1, "case_sensitive"), at = arg(a, 2, "attribute");
        sortspec sp = {R, line, !truthy(cs), -1, truthy(rev), at.t == V_STR ? a_strndup(R->A, at.u.s.s, at.u.s.n) : NULL};
        return sorted_copy(R, iter_of(R, v, line), &sp);
    }
    if (name_is(f, "unique")) {
        vlist *l = iter_of(R, v, line);
        val out = mk_list(R);
        for (size_t i = 0; i < l->n; i++) {
            int seen = 0;
            for (size_t j = 0; j < out.u.l->n && !seen; j++) seen = v_eq(out.u.l->v[j], l->v[i]);
            if (!seen) l_push(R->A, out.u.l, l->v[i]);
        }
        return out;
    }
    if (name_is(f, "sum") || name_is(f, "min") || name_is(f, "max")) {
        vlist *l = iter_of(R, v, line);
        if (f[1] == 'u') {
            val st = arg(a, 1, "start");
            int64_t si = st.t == V_INT ? st.u.i : 0;
            double sf = 0;
            int isf = 0;
            for (size_t i = 0; i < l->n; i++) {
                if (l->v[i].t == V_FLOAT) isf = 1;
                sf += num_f(l->v[i]);
                if (l->v[i].t == V_INT) si += l->v[i].u.i;
            }
            return isf ? V_float(sf + (st.t == V_INT ? (double)st.u.i : 0)) : V_int(si);
        }
        if (!l->n) return V_undef();
        val best = l->v[0];
        for (size_t i = 1; i < l->n; i++) {
            int c = v_cmp(R, l->v[i], best, line, 1);
            if (f[1] == 'i' ? c < 0 : c > 0) best = l->v[i];
        }
        return best;
    }
    if (name_is(f, "map")) {
        val attr = arg(a, -1, "attribute");
        vlist *l = iter_of(R, v, line);
        val out = mk_list(R);
        if (attr.t == V_STR) {
            val def = arg(a, -1, "default");
            for (size_t i = 0; i < l->n; i++) {
                val x = get_attr(l->v[i], attr.u.s.s, attr.u.s.n);
                l_push(R->A, out.u.l, x.t == V_UNDEF && def.t != V_UNDEF ? def : x);
            }
            return out;
        }
        val fname = arg(a, 0, NULL);
        if (fname.t != V_STR) r_fail(R, line, "map needs a filter name or attribute=");
        args rest = *a;
        rest.pos = a->pos + 1, rest.npos = a->npos > 0 ? a->npos - 1 : 0;
        const char *fn = a_strndup(R->A, fname.u.s.s, fname.u.s.n);
        for (size_t i = 0; i < l->n; i++) l_push(R->A, out.u.l, apply_filter(R, fn, l->v[i], &rest, S, line));
        return out;
    }
    if (name_is(f, "select") || name_is(f, "reject") || name_is(f, "selectattr") || name_is(f, "rejectattr")) {
        int attr_mode = strstr(f, "attr") != NULL, keep = f[0] == 's';
        vlist *l = iter_of(R, v, line);
        val out = mk_list(R);
        int ti = attr_mode ? 1 : 0;
        val attr = attr_mode ? arg(a, 0, NULL) : V_undef();
        val tname = arg(a, ti, NULL);
        args rest = *a;
        rest.pos = a->pos + ti + 1, rest.npos = a->npos > ti + 1 ? a->npos - ti - 1 : 0;
        const char *tn = tname.t == V_STR ? a_strndup(R->A, tname.u.s.s, tname.u.s.n) : NULL;
        for (size_t i = 0; i < l->n; i++) {
            val x = l->v[i];
            if (attr_mode) {
                if (attr.t != V_STR) r_fail(R, line, "%s needs an attribute name", f);
                x = get_attr(x, attr.u.s.s, attr.u.s.n);
            }
            int ok = tn ? apply_test(R, tn, x, &rest, line) : truthy(x);
            if (ok == keep) l_push(R->A, out.u.l, l->v[i]);
        }
        return out;
    }
    if (name_is(f, "replace")) {
        val s = to_str(R, v), o = arg(a, 0, "old"), nw = arg(a, 1, "new"), c = arg(a, 2, "count");
        if (o.t != V_STR || nw.t != V_STR) r_fail(R, line, "replace needs two strings");
        int64_t max = c.t == V_INT ? c.u.i : -1, cnt = 0;
        sbuf b = {0};
        size_t i = 0, n = s.u.s.n;
        while (i < n) {
            if ((max < 0 || cnt < max) && o.u.s.n && i + o.u.s.n <= n && memcmp(s.u.s.s + i, o.u.s.s, o.u.s.n) == 0) {
                sb_put(R->A, &b, nw.u.s.s, nw.u.s.n);
                i += o.u.s.n, cnt++;
            } else {
                sb_put(R->A, &b, s.u.s.s + i, 1);
                i++;
            }
        }
        return V_str(b.p ? b.p : "", b.n);
    }
    if (name_is(f, "indent")) {
        val w = arg(a, 0, "width"), first = arg(a, 1, "first"), blank = arg(a, 2, "blank");
        val s = to_str(R, v);
        sbuf pad = {0}, b = {0};
        if (w.t == V_STR) sb_put(R->A, &pad, w.u.s.s, w.u.s.n);
        else for (int64_t k = 0; k < (w.t == V_INT ? w.u.i : 4); k++) sb_put(R->A, &pad, " ", 1);
        size_t i = 0, n = s.u.s.n;
        int first_line = 1;
        while (i <= n) {
            size_t j = i;
            while (j < n && s.u.s.s[j] != '\n') j++;
            int empty = j == i;
            if ((!first_line || truthy(first)) && (!empty || truthy(blank)) && pad.n) sb_put(R->A, &b, pad.p, pad.n);
            sb_put(R->A, &b, s.u.s.s + i, j - i);
            if (j < n) sb_put(R->A, &b, "\n", 1);
            first_line = 0;
            i = j + 1;
        }
        return V_str(b.p ? b.p : "", b.n);
    }
    if (name_is(f, "safe") || name_is(f, "e") || name_is(f, "escape") || name_is(f, "forceescape")) {
        if (f[0] == 's') return v;
        val s = to_str(R, v);
        sbuf b = {0};
        for (size_t i = 0; i < s.u.s.n; i++) {
            char c = s.u.s.s[i];
            if (c == '&') sb_puts(R->A, &b, "&amp;");
            else if (c == '<') sb_puts(R->A, &b, "&lt;");
            else if (c == '>') sb_puts(R->A, &b, "&gt;");
            else if (c == '"') sb_puts(R->A, &b, "&#34;");
            else if (c == '\'') sb_puts(R->A, &b, "&#39;");
            else sb_put(R->A, &b, &c, 1);
        }
        return V_str(b.p ? b.p : "", b.n);
    }
    if (name_is(f, "wordcount")) {
        args none = {0};
        val parts = str_method(R, to_str(R, v), "split", &none, line);
        return V_int((int64_t)parts.u.l->n);
    }
    if (name_is(f, "batch")) {
        val sz = arg(a, 0, "linecount");
        int64_t k = sz.t == V_INT && sz.u.i > 0 ? sz.u.i : 1;
        vlist *l = iter_of(R, v, line);
        val out = mk_list(R), cur = V_undef();
        for (size_t i = 0; i < l->n; i++) {
            if (i % (size_t)k == 0) cur = mk_list(R), l_push(R->A, out.u.l, cur);
            l_push(R->A, cur.u.l, l->v[i]);
        }
        return out;
    }
    r_fail(R, line, "unknown filter '%s'", f);
}

static int apply_test(rctx *R, const char *t, val v, const args *a, int line)
{
    if (name_is(t, "defined")) return v.t != V_UNDEF;
    if (name_is(t, "undefined")) return v.t == V_UNDEF;
    if (name_is(t, "none")) return v.t == V_NONE;
    if (name_is(t, "boolean")) return v.t == V_BOOL;
    if (name_is(t, "true")) return v.t == V_BOOL && v.u.b;
    if (name_is(t, "false")) return v.t == V_BOOL && !v.u.b;
    if (name_is(t, "string")) return v.t == V_STR;
    if (name_is(t, "number")) return v.t == V_INT || v.t == V_FLOAT;
    if (name_is(t, "integer")) return v.t == V_INT;
    if (name_is(t, "float")) return v.t == V_FLOAT;
    if (name_is(t, "mapping")) return v.t == V_DICT;
    if (name_is(t, "sequence") || name_is(t, "iterable")) return v.t == V_LIST || v.t == V_STR || v.t == V_DICT;
    if (name_is(t, "callable")) return v.t == V_MACRO;
    if (name_is(t, "odd") || name_is(t, "even")) {
        if (v.t != V_INT) r_fail(R, line, "'%s' needs an integer", t);
        return (int)(v.u.i & 1) == (t[0] == 'o');
    }
    if (name_is(t, "divisibleby")) {
        val d = arg(a, 0, NULL);
        if (v.t != V_INT || d.t != V_INT || d.u.i == 0) r_fail(R, line, "divisibleby needs integers");
        return v.u.i % d.u.i == 0;
    }
    if (name_is(t, "eq") || name_is(t, "equalto") || name_is(t, "==") || name_is(t, "sameas"))
        return v_eq(v, arg(a, 0, NULL));
    if (name_is(t, "ne") || name_is(t, "!=")) return !v_eq(v, arg(a, 0, NULL));
    if (name_is(t, "lt") || name_is(t, "lessthan")) return v_cmp(R, v, arg(a, 0, NULL), line, 0) < 0;
    if (name_is(t, "gt") || name_is(t, "greaterthan")) return v_cmp(R, v, arg(a, 0, NULL), line, 0) > 0;
    if (name_is(t, "le")) return v_cmp(R, v, arg(a, 0, NULL), line, 0) <= 0;
    if (name_is(t, "ge")) return v_cmp(R, v, arg(a, 0, NULL), line, 0) >= 0;
    if (name_is(t, "lower") || name_is(t, "upper")) {
        if (v.t != V_STR) return 0;
        for (size_t i = 0; i < v.u.s.n; i++) {
            int c = (unsigned char)v.u.s.s[i];
            if (t[0] == 'l' ? isupper(c) : islower(c)) return 0;
        }
        return 1;
    }
    if (name_is(t, "in")) {
        val c = arg(a, 0, NULL);
        vlist *l = iter_of(R, c, line);
        for (size_t i = 0; i < l->n; i++)
            if (v_eq(l->v[i], v)) return 1;
        return 0;
    }
    r_fail(R, line, "unknown test '%s'", t);
}

static int contains(rctx *R, val hay, val x, int line)
{
    if (hay.t == V_STR) {
        if (x.t != V_STR) r_fail(R, line, "'in <string>' needs a string on the left");
        if (!x.u.s.n) return 1;
        for (size_t i = 0; i + x.u.s.n <= hay.u.s.n; i++)
            if (memcmp(hay.u.s.s + i, x.u.s.s, x.u.s.n) == 0) return 1;
        return 0;
    }
    if (hay.t == V_DICT) return x.t == V_STR && d_find(hay.u.d, x.u.s.s, x.u.s.n) != NULL;
    if (hay.t == V_LIST) {
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (v_eq(hay.u.l->v[i], x)) return 1;
        return 0;
    }
    if (hay.t == V_UNDEF || hay.t == V_NONE) return 0;
    r_fail(R, line, "'in' on %s", type_name(hay));
}

static val arith(rctx *R, const char *op, val a, val b, int line)
{
    if (op[0] == '~') {
        sbuf s = {0};
        to_str_buf(R, &s, a, 0);
        to_str_buf(R, &s, b, 0);
        return V_str(s.p ? s.p : "", s.n);
    }
    if (op[0] == '+' && (a.t == V_STR || b.t == V_STR)) {
        if ((a.t != V_STR && !is_num(a) && a.t != V_UNDEF && a.t != V_NONE) ||
            (b.t != V_STR && !is_num(b) && b.t != V_UNDEF && b.t != V_NONE))
            r_fail(R, line, "cannot add %s and %s", type_name(a), type_name(b));
        return arith(R, "~", a, b, line);
    }
    if (op[0] == '+' && a.t == V_LIST && b.t == V_LIST) {
        val out = mk_list(R);
        for (size_t i = 0; i < a.u.l->n; i++) l_push(R->A, out.u.l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++) l_push(R->A, out.u.l, b.u.l->v[i]);
        return out;
    }
    if (op[0] == '*' && op[1] == 0 && ((a.t == V_STR && b.t == V_INT) || (a.t == V_INT && b.t == V_STR))) {
        val s = a.t == V_STR ? a : b;
        int64_t k = a.t == V_INT ? a.u.i : b.u.i;
        sbuf o = {0};
        for (int64_t i = 0; i < k && i < 1000000; i++) sb_put(R->A, &o, s.u.s.s, s.u.s.n);
        return V_str(o.p ? o.p : "", o.n);
    }
    if (!is_num(a) || !is_num(b)) r_fail(R, line, "cannot apply '%s' to %s and %s", op, type_name(a), type_name(b));
    int ints = a.t != V_FLOAT && b.t != V_FLOAT;
    int64_t x = a.t == V_INT ? a.u.i : a.t == V_BOOL ? a.u.b : 0, y = b.t == V_INT ? b.u.i : b.t == V_BOOL ? b.u.b : 0;
    double fx = num_f(a), fy = num_f(b);
    switch (op[0]) {
    case '+': return ints ? V_int((int64_t)((uint64_t)x + (uint64_t)y)) : V_float(fx + fy);
    case '-': return ints ? V_int((int64_t)((uint64_t)x - (uint64_t)y)) : V_float(fx - fy);
    case '*':
        if (op[1] == '*') {
            if (ints && y >= 0) {
                int64_t r = 1;
                for (int64_t i = 0; i < y && i < 64; i++) r = (int64_t)((uint64_t)r * (uint64_t)x);
                return V_int(r);
            }
            return V_float(pow(fx, fy));
        }
        return ints ? V_int((int64_t)((uint64_t)x * (uint64_t)y)) : V_float(fx * fy);
    case '/':
        if (op[1] == '/') {
            if (ints) {
                if (y == 0) r_fail(R, line, "division by zero");
                if (x == INT64_MIN && y == -1) return V_int(INT64_MIN);
                int64_t q = x / y;
                if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
                return V_int(q);
            }
            if (fy == 0) r_fail(R, line, "division by zero");
            return V_float(floor(fx / fy));
        }
        if (fy == 0) r_fail(R, line, "division by zero");
        return V_float(fx / fy);
    case '%':
        if (ints) {
            if (y == 0) r_fail(R, line, "modulo by zero");
            if (y == -1) return V_int(0);
            int64_t m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            return V_int(m);
        }
        if (fy == 0) r_fail(R, line, "modulo by zero");
        return V_float(fx - floor(fx / fy) * fy);
    }
    r_fail(R, line, "bad operator");
}

static val call_global(rctx *R, const char *name, const args *a, int line)
{
    if (name_is(name, "range")) {
        int64_t st = 0, en, step = 1;
        val x = arg(a, 0, NULL), y = arg(a, 1, NULL), z = arg(a, 2, NULL);
        if (a->npos == 1) en = x.t == V_INT ? x.u.i : 0;
        else st = x.t == V_INT ? x.u.i : 0, en = y.t == V_INT ? y.u.i : 0;
        if (z.t == V_INT) step = z.u.i;
        if (step == 0) r_fail(R, line, "range() step cannot be zero");
        val out = mk_list(R);
        for (int64_t i = st; step > 0 ? i < en : i > en; i += step) {
            if (out.u.l->n > 10000000) r_fail(R, line, "range() too long");
            l_push(R->A, out.u.l, V_int(i));
        }
        return out;
    }
    if (name_is(name, "namespace") || name_is(name, "dict")) {
        val d = mk_dict(R);
        d.u.d->ns = name[0] == 'n';
        for (int i = 0; i < a->npos; i++)
            if (a->pos[i].t == V_DICT)
                for (size_t k = 0; k < a->pos[i].u.d->n; k++)
                    d_set(R->A, d.u.d, a->pos[i].u.d->k[k], a->pos[i].u.d->kn[k], a->pos[i].u.d->v[k]);
        for (int k = 0; k < a->nkw; k++) d_set(R->A, d.u.d, a->kn[k], a->kl[k], a->kv[k]);
        return d;
    }
    if (name_is(name, "raise_exception")) {
        val m = to_str(R, arg(a, 0, NULL));
        r_fail(R, line, "%.*s", (int)m.u.s.n, m.u.s.s);
    }
    if (name_is(name, "strftime_now")) {
        val f = arg(a, 0, NULL);
        if (f.t != V_STR) r_fail(R, line, "strftime_now needs a format");
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char buf[256];
        size_t n = strftime(buf, sizeof buf, a_strndup(R->A, f.u.s.s, f.u.s.n), &tm);
        return V_str(a_strndup(R->A, buf, n), n);
    }
    r_fail(R, line, "'%s' is not callable", name);
}

static val eval(rctx *R, const node *e, scope *S)
{
    if (++R->steps > s_max_steps)
        r_fail(R, e->line, "rendering takes more than %llu steps (a limit of tokenizerd: --max-render-steps)",
               (unsigned long long)s_max_steps);
    switch (e->kind) {
    case E_LIT: return e->lit;
    case E_NAME: {
        val *v = lookup(S, e->s, e->n);
        return v ? *v : V_undef();
    }
    case E_ATTR: {
        val o = eval(R, e->a, S);
        return get_attr(o, e->s, e->n);
    }
    case E_INDEX: return get_index(R, eval(R, e->a, S), eval(R, e->b, S), e->line);
    case E_SLICE:
        return do_slice(R, eval(R, e->a, S), e->b ? eval(R, e->b, S) : V_undef(), e->c ? eval(R, e->c, S) : V_undef(),
                        e->d ? eval(R, e->d, S) : V_undef(), e->line);
    case E_CALL: {
        args a = eval_args(R, e, S);
        if (e->a->kind == E_ATTR) {
            val o = eval(R, e->a->a, S);
            if (o.t == V_DICT) {
                val *f = d_find(o.u.d, e->a->s, e->a->n);
                if (f && f->t == V_MACRO) return call_macro(R, *f, &a, S, e->line);
            }
            return call_method(R, o, e->a->s, &a, e->line);
        }
        if (e->a->kind == E_NAME) {
            val *f = lookup(S, e->a->s, e->a->n);
            if (f && f->t == V_MACRO) return call_macro(R, *f, &a, S, e->line);
            return call_global(R, e->a->s, &a, e->line);
        }
        val f = eval(R, e->a, S);
        if (f.t == V_MACRO) return call_macro(R, f, &a, S, e->line);
        r_fail(R, e->line, "%s is not callable", type_name(f));
    }
    case E_FILTER: {
        val v = eval(R, e->a, S);
        args a = eval_args(R, e, S);
        return apply_filter(R, e->s, v, &a, S, e->line);
    }
    case E_TEST: {
        val v = eval(R, e->a, S);
        args a = eval_args(R, e, S);
        int r = apply_test(R, e->s, v, &a, e->line);
        return V_bool(e->neg ? !r : r);
    }
    case E_NEG: case E_POS: {
        val v = eval(R, e->a, S);
        if (v.t == V_INT) return V_int(e->kind == E_NEG ? (int64_t)(0 - (uint64_t)v.u.i) : v.u.i);
        if (v.t == V_FLOAT) return V_float(e->kind == E_NEG ? -v.u.f : v.u.f);
        r_fail(R, e->line, "unary minus on %s", type_name(v));
    }
    case E_NOT: return V_bool(!truthy(eval(R, e->a, S)));
    case E_AND: {
        val a = eval(R, e->a, S);
        return truthy(a) ? eval(R, e->b, S) : a;
    }
    case E_OR: {
        val a = eval(R, e->a, S);
        return truthy(a) ? a : eval(R, e->b, S);
    }
    case E_COND:
        if (truthy(eval(R, e->b, S))) return eval(R, e->a, S);
        return e->c ? eval(R, e->c, S) : V_undef();
    case E_LIST: {
        val out = mk_list(R);
        for (int i = 0; i < e->body.n; i++) l_push(R->A, out.u.l, eval(R, e->body.v[i], S));
        return out;
    }
    case E_DICT: {
        val out = mk_dict(R);
        for (int i = 0; i < e->body.n; i++) {
            val k = to_str(R, eval(R, e->body.v[i], S));
            d_set(R->A, out.u.d, k.u.s.s, k.u.s.n, eval(R, e->els.v[i], S));
        }
        return out;
    }
    case E_BIN: {
        const char *op = e->s;
        val a = eval(R, e->a, S), b = eval(R, e->b, S);
        if (!strcmp(op, "==")) return V_bool(v_eq(a, b));
        if (!strcmp(op, "!=")) return V_bool(!v_eq(a, b));
        if (!strcmp(op, "in")) return V_bool(contains(R, b, a, e->line));
        if (!strcmp(op, "not in")) return V_bool(!contains(R, b, a, e->line));
        if (op[0] == '<' || op[0] == '>') {
            int c = v_cmp(R, a, b, e->line, 0);
            if (op[0] == '<') return V_bool(op[1] ? c <= 0 : c < 0);
            return V_bool(op[1] ? c >= 0 : c > 0);
        }
        return arith(R, op, a, b, e->line);
    }
    default: break;
    }
    r_fail(R, e->line, "bad expression");
}

static void assign(rctx *R, const node *t, val v, scope *S)
{
    if (t->kind == E_NAME) {
        d_set(R->A, S->vars, t->s, t->n, v);
    } else if (t->kind == E_ATTR) {
        val o = eval(R, t->a, S);
        if (o.t != V_DICT || !o.u.d->ns) r_fail(R, t->line, "can only set attributes of a namespace");
        d_set(R->A, o.u.d, t->s, t->n, v);
    } else {
        r_fail(R, t->line, "cannot assign to this expression");
    }
}

enum { FLOW_NONE, FLOW_BREAK, FLOW_CONTINUE };

static int exec_node(rctx *R, const node *n, scope *S, sbuf *out)
{
    switch (n->kind) {
    case N_TEXT: sb_put(R->A, out, n->s, n->n); return FLOW_NONE;
    case N_OUT: to_str_buf(R, out, eval(R, n->a, S), 0); return FLOW_NONE;
    case N_IF:
        if (truthy(eval(R, n->a, S))) return exec_body(R, n->body, S, out);
        return exec_body(R, n->els, S, out);
    case N_FOR: {
        val it = eval(R, n->a, S);
        vlist *l = iter_of(R, it, n->line);
        /* filter first so loop.length / last count what runs */
        vlist *items = l;
        if (n->b) {
            items = l_new(R->A);
            for (size_t i = 0; i < l->n; i++) {
                scope fs = {.vars = d_new(R->A), .parent = S};
                if (n->n_names == 1) d_set(R->A, fs.vars, n->names[0], n->name_n[0], l->v[i]);
                else if (l->v[i].t == V_LIST)
                    for (int k = 0; k < n->n_names && (size_t)k < l->v[i].u.l->n; k++)
                        d_set(R->A, fs.vars, n->names[k], n->name_n[k], l->v[i].u.l->v[k]);
                if (truthy(eval(R, n->b, &fs))) l_push(R->A, items, l->v[i]);
            }
        } else {
            /* iterate over a snapshot: the body may append to the list */
            items = l_new(R->A);
            for (size_t i = 0; i < l->n; i++) l_push(R->A, items, l->v[i]);
        }
        if (!items->n) return exec_body(R, n->els, S, out);
        for (size_t i = 0; i < items->n; i++) {
            scope ls = {.vars = d_new(R->A), .parent = S};
            val x = items->v[i];
            if (n->n_names == 1) {
                d_set(R->A, ls.vars, n->names[0], n->name_n[0], x);
            } else {
                vlist *parts = iter_of(R, x, n->line);
                if ((int)parts->n != n->n_names) r_fail(R, n->line, "cannot unpack %zu values into %d", parts->n, n->n_names);
                for (int k = 0; k < n->n_names; k++) d_set(R->A, ls.vars, n->names[k], n->name_n[k], parts->v[k]);
            }
            val loop = mk_dict(R);
            int64_t len = (int64_t)items->n, k = (int64_t)i;
            d_set(R->A, loop.u.d, "index", 5, V_int(k + 1));
            d_set(R->A, loop.u.d, "index0", 6, V_int(k));
            d_set(R->A, loop.u.d, "revindex", 8, V_int(len - k));
            d_set(R->A, loop.u.d, "revindex0", 9, V_int(len - k - 1));
            d_set(R->A, loop.u.d, "first", 5, V_bool(k == 0));
            d_set(R->A, loop.u.d, "last", 4, V_bool(k == len - 1));
            d_set(R->A, loop.u.d, "length", 6, V_int(len));
            d_set(R->A, loop.u.d, "previtem", 8, k > 0 ? items->v[k - 1] : V_undef());
            d_set(R->A, loop.u.d, "nextitem", 8, k < len - 1 ? items->v[k + 1] : V_undef());
            d_set(R->A, ls.vars, "loop", 4, loop);
            int fl = exec_body(R, n->body, &ls, out);
            if (fl == FLOW_BREAK) break;
        }
        return FLOW_NONE;
    }
    case N_SET: {
        val v = eval(R, n->a, S);
        if (n->body.n == 1) {
            assign(R, n->body.v[0], v, S);
        } else if (n->body.n > 1) {
            vlist *parts = iter_of(R, v, n->line);
            if ((int)parts->n != n->body.n) r_fail(R, n->line, "cannot unpack %zu values into %d", parts->n, n->body.n);
            for (int i = 0; i < n->body.n; i++) assign(R, n->body.v[i], parts->v[i], S);
        }
        return FLOW_NONE;
    }
    case N_SETBLOCK: {
        sbuf b = {0};
        exec_body(R, n->body, S, &b);
        val v = V_str(b.p ? b.p : "", b.n);
        if (n->a) { /* filters on a placeholder: substitute the block's text */
            const node *chain[32];
            int k = 0;
            for (const node *f = n->a; f && f->kind == E_FILTER && k < 32; f = f->a) chain[k++] = f;
            while (k-- > 0) {
                args a = eval_args(R, chain[k], S);
                v = apply_filter(R, chain[k]->s, v, &a, S, chain[k]->line);
            }
        }
        d_set(R->A, S->vars, n->s, n->n, v);
        return FLOW_NONE;
    }
    case N_FILTERBLOCK: {
        sbuf b = {0};
        exec_body(R, n->body, S, &b);
        val v = V_str(b.p ? b.p : "", b.n);
        const node *chain[32];
        int k = 0;
        for (const node *f = n->a; f && f->kind == E_FILTER && k < 32; f = f->a) chain[k++] = f;
        while (k-- > 0) {
            args a = eval_args(R, chain[k], S);
            v = apply_filter(R, chain[k]->s, v, &a, S, chain[k]->line);
        }
        to_str_buf(R, out, v, 0);
        return FLOW_NONE;
    }
    case N_MACRO:
        d_set(R->A, S->vars, n->s, n->n, (val){.t = V_MACRO, .u.m = n});
        return FLOW_NONE;
    case N_BREAK: return FLOW_BREAK;
    case N_CONTINUE: return FLOW_CONTINUE;
    default: break;
    }
    r_fail(R, n->line, "bad statement");
}

static int exec_body(rctx *R, nlist body, scope *S, sbuf *out)
{
    for (int i = 0; i < body.n; i++) {
        int fl = exec_node(R, body.v[i], S, out);
        if (fl != FLOW_NONE) return fl;
    }
    return FLOW_NONE;
}

/* JSON -> values; integral numbers become integers */
static val from_json(rctx *R, const cJSON *j)
{
    if (cJSON_IsNull(j)) return V_none();
    if (cJSON_IsBool(j)) return V_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double f = j->valuedouble;
        if (f == floor(f) && fabs(f) < 9.007199254740992e15) return V_int((int64_t)f);
        return V_float(f);
    }
    if (cJSON_IsString(j)) return V_str(j->valuestring, strlen(j->valuestring));
    if (cJSON_IsArray(j)) {
        val l = mk_list(R);
        for (const cJSON *c = j->child; c; c = c->next) l_push(R->A, l.u.l, from_json(R, c));
        return l;
    }
    if (cJSON_IsObject(j)) {
        val d = mk_dict(R);
        for (const cJSON *c = j->child; c; c = c->next)
            d_set(R->A, d.u.d, c->string, strlen(c->string), from_json(R, c));
        return d;
    }
    return V_undef();
}

char *tj_render(const tj_template_t *t, const cJSON *ctx, size_t *len, g4_err_t *err)
{
    arena A = {0};
    jmp_buf jb;
    A.jb = &jb, A.err = err, A.max_total = s_max_bytes;
    volatile char *result = NULL;
    if (setjmp(jb)) {
        a_free(&A);
        return NULL;
    }
    rctx R = {.A = &A};
    scope G = {.vars = d_new(&A)};
    if (ctx && cJSON_IsObject(ctx))
        for (const cJSON *c = ctx->child; c; c = c->next)
            d_set(&A, G.vars, c->string, strlen(c->string), from_json(&R, c));
    sbuf out = {0};
    exec_body(&R, t->body, &G, &out);
    result = g4_malloc(out.n + 1);
    if (!result) {
        g4_err_set(err, G4_ERR_NOMEM, "template: out of memory");
        a_free(&A);
        return NULL;
    }
    if (out.n) memcpy((char *)result, out.p, out.n);
    result[out.n] = 0;
    if (len) *len = out.n;
    a_free(&A);
    return (char *)result;
}
