/* Tests of schedulerd's pure pieces, without sockets or daemons:
 *   sched_batch  (schedulerd/sched_batch.h) admission into slots (oldest
 *                first, slot limits, prompts longer than the context),
 *                continuous batching (a new request joins the decoding ones
 *                in the next batch; one batch per pipeline stage), prompt
 *                chunks of --ubatch rows (1,000 rows at 256: 256/256/256/232),
 *                runs of bidirectional soft-token rows kept whole, sampled rows;
 *   sched_stop   (schedulerd/sched_text.h) the stop-string holder: text held
 *                while it may still become a stop string, released when it
 *                cannot, cut at a match, UTF-8 characters never split;
 *   sched_prefix (schedulerd/sched_prefix.h) the prefix cache's index: the
 *                longest exact restore (inside a chunk, at a chunk start when
 *                the kernels differ), waiting for a chunk being computed,
 *                chunks kept once, LRU leaves evicted to the budget. */
#include <string.h>

#include "g4_media.h"
#include "g4_test.h"
#include "sched_batch.h"
#include "sched_prefix.h"
#include "sched_text.h"

#define S_U 512 /* rows of the batch arrays (>= every n_ubatch used here) */

static int32_t s_tok[S_U], s_pos[S_U];
static uint32_t s_slot[S_U], s_sample[S_U];
static int8_t s_flags[S_U];
static int32_t s_ids[2048]; /* ids of every test sequence: id = position */

static sched_rows_t s_rows(void) { return (sched_rows_t){.tok = s_tok, .pos = s_pos, .slot = s_slot, .sample = s_sample, .flags = s_flags}; }

static sched_seq_t s_seq(int state, uint64_t order, int slot, int n_prompt, int n_tok, int n_fed)
{
    return (sched_seq_t){.state = state, .order = order, .slot = slot, .n_prompt = n_prompt, .n_tok = n_tok,
                         .n_fed = n_fed, .tok = s_ids};
}

/* Which seq a pick of the last batch was, -1 if none. */
static int s_picked(const sched_pick_t *pick, int n_pick, int seq)
{
    for (int k = 0; k < n_pick; k++)
        if (pick[k].seq == seq) return k;
    return -1;
}

static int s_test_admit(void)
{
    /* slot 0 is taken; queued requests arrive in order 5, 3, 9, 7 (ids) */
    sched_seq_t q[5] = {s_seq(SCHED_SEQ_QUEUED, 5, -1, 10, 10, 0), s_seq(SCHED_SEQ_QUEUED, 3, -1, 10, 10, 0),
                        s_seq(SCHED_SEQ_QUEUED, 9, -1, 10, 10, 0), s_seq(SCHED_SEQ_QUEUED, 7, -1, 10, 10, 0),
                        s_seq(SCHED_SEQ_RUNNING, 1, 0, 10, 12, 11)};
    uint8_t used[3] = {1, 0, 0};
    sched_admit_t a[5];
    int n = sched_batch_admit(q, 5, used, 3, 0, a);
    /* two free slots: the two oldest get them, lowest slot first; the rest wait */
    CHECKF(n == 2, "%d admissions", n);
    CHECK(a[0].seq == 1 && a[0].slot == 1);
    CHECK(a[1].seq == 0 && a[1].slot == 2);
    /* a prompt that does not fit the context is refused, and the next one gets the slot */
    q[0].n_tok = 100;
    n = sched_batch_admit(q, 5, used, 3, 64, a);
    CHECKF(n == 3, "%d admissions", n);
    CHECK(a[0].seq == 1 && a[0].slot == 1);
    CHECK(a[1].seq == 0 && a[1].slot == -1);
    CHECK(a[2].seq == 3 && a[2].slot == 2);
    /* no free slot: nobody is admitted, not even refused (it waits its turn) */
    uint8_t full[3] = {1, 1, 1};
    CHECK(sched_batch_admit(q, 5, full, 3, 64, a) == 0);
    CHECK(sched_batch_admit(q, 5, used, 0, 0, a) == 0);
    return 0;
}

static int s_test_chunks(void)
{
    /* a 1,000-row prompt at --ubatch 256: 256, 256, 256, 232; only the last
     * prompt row is sampled (its sample is the first generated id) */
    sched_seq_t q = s_seq(SCHED_SEQ_RUNNING, 1, 3, 1000, 1000, 0);
    sched_rows_t rows = s_rows();
    sched_pick_t pick[1];
    const int want[4] = {256, 256, 256, 232};
    for (int c = 0; c < 4; c++) {
        CHECK(sched_batch_need(&q, 256) == want[c]);
        REQUIRE(sched_batch_form(&q, 1, 0, 1, 256, pick, &rows) == 1);
        CHECKF(rows.n_rows == want[c] && pick[0].n_rows == want[c], "chunk %d: %d rows", c, rows.n_rows);
        CHECK(pick[0].first_pos == 256 * c && rows.pos[0] == 256 * c && rows.tok[0] == 256 * c);
        CHECK(rows.pos[rows.n_rows - 1] == 256 * c + want[c] - 1 && rows.slot[rows.n_rows - 1] == 3);
        CHECK(!rows.has_flags && rows.n_embd_rows == 0);
        if (c < 3) CHECK(rows.n_sample == 0 && pick[0].sample_pos == -1);
        else CHECK(rows.n_sample == 1 && rows.sample[0] == 231 && pick[0].sample_pos == 999);
        q.n_fed += pick[0].n_rows;
    }
    CHECK(sched_batch_need(&q, 256) == 0); /* all fed, nothing sampled yet */
    REQUIRE(sched_batch_form(&q, 1, 0, 1, 256, pick, &rows) == 0);
    CHECK(rows.n_rows == 0);
    /* decoding: one row per step, sampled */
    q.n_tok = 1001;
    REQUIRE(sched_batch_form(&q, 1, 0, 1, 256, pick, &rows) == 1);
    CHECK(rows.n_rows == 1 && rows.pos[0] == 1000 && rows.n_sample == 1 && pick[0].sample_pos == 1000);
    CHECK(!rows.has_flags && rows.flags[0] == 0);
    /* fed again after a pipeline change: generated ids up to 63 rows at a time,
     * every one sampled, each marked as the decode step it was (G4_ROW_STEP) */
    q.n_fed = 1000, q.n_tok = 1100;
    CHECK(sched_batch_need(&q, 256) == 63);
    REQUIRE(sched_batch_form(&q, 1, 0, 1, 256, pick, &rows) == 1);
    CHECK(rows.n_rows == 63 && rows.n_sample == 63);
    CHECK(rows.has_flags && rows.flags[0] == G4_ROW_STEP && rows.flags[62] == G4_ROW_STEP);
    return 0;
}

static int s_test_media_rows(void)
{
    /* 600 rows with 200 image rows (soft tokens, bidirectional) at [200, 400),
     * --ubatch 256: the first chunk stops before the image rather than cut it */
    static int8_t fl[600];
    memset(fl, 0, sizeof fl);
    for (int p = 200; p < 400; p++) fl[p] = G4_ROW_EMBD | G4_ROW_BIDIR;
    sched_seq_t q = s_seq(SCHED_SEQ_RUNNING, 1, 0, 600, 600, 0);
    q.rflag = fl, q.n_embd = 8;
    sched_rows_t rows = s_rows();
    sched_pick_t pick[1];
    const int want[3] = {200, 256, 144}, want_e[3] = {0, 200, 0}, want_e0[3] = {0, 0, 200};
    for (int c = 0; c < 3; c++) {
        REQUIRE(sched_batch_form(&q, 1, 0, 1, 256, pick, &rows) == 1);
        CHECKF(rows.n_rows == want[c], "chunk %d: %d rows", c, rows.n_rows);
        CHECK(rows.has_flags);
        CHECKF(pick[0].n_embd_rows == want_e[c] && rows.n_embd_rows == want_e[c], "chunk %d: %d soft rows", c,
               pick[0].n_embd_rows);
        CHECK(pick[0].embd_first == want_e0[c]);
        if (want_e[c]) CHECK(rows.n_embd == 8);
        for (int j = 0; j < rows.n_rows; j++)
            if (rows.flags[j] != fl[q.n_fed + j]) {
                CHECKF(0, "chunk %d row %d: flag %d", c, j, rows.flags[j]);
                break;
            }
        q.n_fed += pick[0].n_rows;
    }
    /* a run longer than a chunk is cut at n_ubatch (as llama.cpp cuts an image) */
    memset(fl, G4_ROW_EMBD | G4_ROW_BIDIR, 300);
    q.n_fed = 0;
    CHECK(sched_batch_need(&q, 256) == 256);
    /* two requests whose soft rows differ in width never share a batch */
    sched_seq_t two[2] = {q, q};
    two[1].n_embd = 16, two[1].slot = 1;
    two[0].n_prompt = two[0].n_tok = two[1].n_prompt = two[1].n_tok = 100;
    REQUIRE(sched_batch_form(two, 2, 0, 2, 256, pick, &rows) == 1);
    CHECK(pick[0].seq == 0 && rows.n_rows == 100 && rows.n_embd == 8);
    return 0;
}

static int s_test_continuous(void)
{
    /* three requests decode (one row each); a fourth has just got a slot */
    sched_seq_t q[4] = {s_seq(SCHED_SEQ_RUNNING, 1, 0, 20, 25, 24), s_seq(SCHED_SEQ_RUNNING, 2, 1, 20, 30, 29),
                        s_seq(SCHED_SEQ_RUNNING, 3, 2, 20, 22, 21), s_seq(SCHED_SEQ_RUNNING, 4, 3, 100, 100, 0)};
    sched_rows_t rows = s_rows();
    sched_pick_t pick[4];
    /* one stage: one batch with every request: three decoding rows and the whole prompt */
    CHECK(sched_batch_max_seqs(4, 1) == 4);
    int n = sched_batch_form(q, 4, 0, 4, 256, pick, &rows);
    CHECKF(n == 4 && rows.n_rows == 103, "%d requests, %d rows", n, rows.n_rows);
    for (int i = 0; i < 3; i++) CHECK(s_picked(pick, n, i) >= 0 && pick[s_picked(pick, n, i)].n_rows == 1);
    const int k = s_picked(pick, n, 3);
    REQUIRE(k >= 0);
    CHECK(pick[k].n_rows == 100 && pick[k].first_pos == 0 && pick[k].sample_pos == 99);
    CHECKF(rows.n_sample == 4, "%d sampled rows", rows.n_sample); /* 3 decoding + the last prompt row */
    /* a prompt chunk that does not fit beside the decoding rows waits ... */
    q[3].n_prompt = q[3].n_tok = 1000;
    n = sched_batch_form(q, 4, 0, 4, 256, pick, &rows);
    CHECK(n == 3 && rows.n_rows == 3 && s_picked(pick, n, 3) < 0);
    /* ... until the round robin starts at it: a full chunk, decoding rows where room is left */
    n = sched_batch_form(q, 4, 3, 4, 256, pick, &rows);
    CHECK(n >= 1 && pick[0].seq == 3 && pick[0].n_rows == 256 && rows.n_rows == 256);
    q[3].n_fed = 800; /* the last chunk, 200 rows: the decoding rows fit beside it */
    n = sched_batch_form(q, 4, 3, 4, 256, pick, &rows);
    CHECKF(n == 4 && rows.n_rows == 203 && pick[0].seq == 3, "%d requests, %d rows", n, rows.n_rows);
    /* two stages: two requests a batch, so each stage has one; the requests in
     * flight wait and the others form the second batch */
    q[3].n_prompt = q[3].n_tok = 100, q[3].n_fed = 0;
    CHECK(sched_batch_max_seqs(4, 2) == 2 && sched_batch_max_seqs(3, 2) == 2 && sched_batch_max_seqs(0, 2) == 1);
    n = sched_batch_form(q, 4, 0, 2, 256, pick, &rows);
    REQUIRE(n == 2);
    CHECK(pick[0].seq == 0 && pick[1].seq == 1);
    q[0].in_flight = q[1].in_flight = 1;
    n = sched_batch_form(q, 4, 1, 2, 256, pick, &rows);
    REQUIRE(n == 2);
    CHECK(pick[0].seq == 2 && pick[1].seq == 3 && rows.n_rows == 101);
    /* queued, ending or fully fed requests never go into a batch */
    q[2].in_flight = q[3].in_flight = 1;
    q[0].state = SCHED_SEQ_QUEUED, q[1].state = SCHED_SEQ_OTHER;
    q[0].in_flight = q[1].in_flight = 0;
    CHECK(sched_batch_form(q, 4, 0, 4, 256, pick, &rows) == 0 && rows.n_rows == 0);
    return 0;
}

int test_sched_batch(void)
{
    for (int i = 0; i < (int)(sizeof s_ids / sizeof s_ids[0]); i++) s_ids[i] = i;
    int rc = s_test_admit();
    rc |= s_test_chunks();
    rc |= s_test_media_rows();
    rc |= s_test_continuous();
    return rc;
}

/* ---- stop strings --------------------------------------------------------- */

static size_t s_hold(const char *text, const char *const *stops, int n, int last, int *matched)
{
    size_t len[8];
    for (int i = 0; i < n; i++) len[i] = strlen(stops[i]);
    return sched_text_stop_hold(text, strlen(text), (char *const *)stops, len, n, last, matched);
}

/* Streams chunks through the holder as sched_text.c does; returns what went
 * out; checks that no cut falls inside a UTF-8 character. */
static const char *s_stream(const char *const *chunks, int n_chunks, const char *const *stops, int n_stops, int *matched)
{
    static char out[256], held[256];
    size_t n_out = 0, n_held = 0;
    *matched = 0;
    for (int c = 0; c < n_chunks && !*matched; c++) {
        const size_t n = strlen(chunks[c]);
        memcpy(held + n_held, chunks[c], n);
        n_held += n;
        held[n_held] = 0;
        const size_t cut = s_hold(held, stops, n_stops, c == n_chunks - 1, matched);
        CHECKF(cut == n_held || (held[cut] & 0xC0) != 0x80, "cut %zu of \"%s\" splits a character", cut, held);
        memcpy(out + n_out, held, cut);
        n_out += cut;
        memmove(held, held + cut, n_held - cut);
        n_held -= cut;
    }
    out[n_out] = 0;
    return out;
}

int test_sched_stop(void)
{
    const char *end[] = {"END"};
    int m;
    /* a tail that may become the stop string is held; released when it cannot */
    CHECK(s_hold("hello E", end, 1, 0, &m) == 6 && !m);
    CHECK(s_hold("hello EN", end, 1, 0, &m) == 6 && !m);
    CHECK(s_hold("hello ENx", end, 1, 0, &m) == 9 && !m);
    CHECK(s_hold("hello", end, 1, 0, &m) == 5 && !m);
    /* the match cuts: what precedes it goes out, it and the rest never */
    CHECK(s_hold("hello END more", end, 1, 0, &m) == 6 && m);
    CHECK(s_hold("END", end, 1, 0, &m) == 0 && m);
    /* the last text holds nothing back (but a match still cuts) */
    CHECK(s_hold("hello EN", end, 1, 1, &m) == 8 && !m);
    CHECK(s_hold("a END b", end, 1, 1, &m) == 2 && m);
    /* several stop strings: the earliest match wins; the longest possible start is held */
    const char *two[] = {"xyz", "b"};
    CHECK(s_hold("axyzb", two, 2, 0, &m) == 1 && m);
    const char *pre[] = {"abcd", "cx"};
    CHECK(s_hold("zzabc", pre, 2, 0, &m) == 2 && !m);
    /* empty stop strings are ignored; no stop strings: everything goes */
    const char *empty[] = {""};
    CHECK(s_hold("abc", empty, 1, 0, &m) == 3 && !m);
    CHECK(s_hold("abc", NULL, 0, 0, &m) == 3 && !m);
    /* UTF-8: a stop string starting with a two-byte character holds that whole character */
    const char *und[] = {"\xc3\xbcnd"}; /* "ünd" */
    CHECK(s_hold("gr\xc3\xbc", und, 1, 0, &m) == 2 && !m);
    CHECK(s_hold("gr\xc3\xbc\xc3\xa9", und, 1, 0, &m) == 6 && !m); /* "grüé": no stop can start there */
    const char *chunks[] = {"na", "\xc3\xaf", "ve caf", "\xc3\xa9", " ", "\xc3\xbc", "nd!"};
    const char *sp[] = {"\xc3\xa9 \xc3\xbc"}; /* "é ü" */
    const char *out = s_stream(chunks, 7, sp, 1, &m);
    CHECKF(m && !strcmp(out, "na\xc3\xafve caf"), "out \"%s\"", out);
    const char *sp2[] = {"\xe2\x82\xac\xe2\x82\xac"}; /* "€€": a three-byte character held, released */
    const char *chunks2[] = {"5 ", "\xe2\x82\xac", " ", "\xe2\x82\xac", "\xe2\x82\xac", "x"};
    out = s_stream(chunks2, 6, sp2, 1, &m);
    CHECKF(m && !strcmp(out, "5 \xe2\x82\xac "), "out \"%s\"", out);
    return 0;
}

/* ---- sched_prefix: the prefix cache's index ------------------------------------------ */

/* starts of ubatches of U rows from 0 for n rows */
static int s_starts(int n, int U, int *st)
{
    int k = 0;
    for (int p = 0; p < n; p += U) st[k++] = p;
    return k;
}

int test_sched_prefix(void)
{
    enum { U = 512 };
    static uint64_t a[2048], b[2048];
    for (int i = 0; i < 2048; i++) a[i] = b[i] = (uint64_t)(1000 + i);
    spx_t x;
    spx_init(&x);
    const spx_stage_t st[2] = {{1 << 20, 100, 10}, {1 << 20, 50, 10}};
    uint64_t drop[64];
    int n_drop = 0, same = 0, starts[16], path[16];
    CHECK(spx_reset(&x, st, 2, drop, 64) == 0);
    /* nothing kept: nothing to restore */
    spx_match_t m = spx_match(&x, a, 700, starts, s_starts(700, U, starts), path, NULL, 0);
    CHECK(m.n_keep == 0 && !m.wait);
    /* prompt a (700 rows) kept as [0,512) [512,700); the second still pending */
    const int n0 = spx_add(&x, -1, 0, 0, 512, a, &same, drop, &n_drop, 64);
    CHECK(n0 >= 0 && !same && x.bytes[0] == 10 + 512 * 100 && x.bytes[1] == 10 + 512 * 50);
    spx_ready(&x, n0);
    const int n1 = spx_add(&x, n0, x.n[n0].id, 512, 700, a + 512, &same, drop, &n_drop, 64);
    CHECK(n1 >= 0 && !same);
    /* b shares 650 rows: the pending chunk would give more, so it waits */
    b[650] = 7;
    m = spx_match(&x, b, 900, starts, s_starts(900, U, starts), path, NULL, 0);
    CHECK(m.wait);
    spx_ready(&x, n1);
    /* restored inside [512,700): the cold ubatch [512,900) starts at 512 */
    m = spx_match(&x, b, 900, starts, s_starts(900, U, starts), path, NULL, 0);
    CHECKF(m.n_keep == 650 && m.vstart == 512 && m.n_path == 2 && path[0] == n0 && path[1] == n1 && !m.wait,
           "keep %d vstart %d path %d", m.n_keep, m.vstart, m.n_path);
    /* the same prompt again: all but its last row, which is computed for its logits */
    m = spx_match(&x, a, 700, starts, s_starts(700, U, starts), path, NULL, 0);
    CHECK(m.n_keep == 699 && m.vstart == 512);
    /* a 520-row prompt sharing 515: its ubatch [512,520) has 8 rows (another
     * attention kernel than the kept 188-row chunk): restored at 512 only */
    m = spx_match(&x, a, 520, starts, s_starts(520, U, starts), path, NULL, 0);
    CHECK(m.n_keep == 512 && m.vstart == 512);
    /* a match ending where another request computes its next chunk waits for it */
    m = spx_match(&x, a, 700, starts, s_starts(700, U, starts), path, &n0, 1);
    CHECK(!m.wait && m.n_keep == 699); /* (n1 is kept: nothing to wait for) */
    m = spx_match(&x, b, 520, starts, s_starts(520, U, starts), path, &n0, 1);
    CHECK(m.n_keep == 512 && !m.wait); /* (8 rows left: not worth a wait) */
    static uint64_t c3[2048];
    memcpy(c3, a, sizeof c3);
    c3[512] = 5; /* parts from a at 512: its match ends where n0 does */
    m = spx_match(&x, c3, 900, starts, s_starts(900, U, starts), path, &n0, 1);
    CHECK(m.n_keep == 512 && m.wait);
    m = spx_match(&x, c3, 900, starts, s_starts(900, U, starts), path, NULL, 0);
    CHECK(m.n_keep == 512 && !m.wait);
    /* parting inside the first chunk */
    b[300] = 9;
    m = spx_match(&x, b, 900, starts, s_starts(900, U, starts), path, NULL, 0);
    CHECK(m.n_keep == 300 && m.vstart == 0 && m.n_path == 1);
    /* an equal chunk is not kept twice; a chunk under a parent that is gone is not kept */
    CHECK(spx_add(&x, -1, 0, 0, 512, a, &same, drop, &n_drop, 64) == n0 && same);
    CHECK(spx_add(&x, n0, x.n[n0].id + 99, 512, 700, b + 512, &same, drop, &n_drop, 64) < 0);
    /* the budget: a stage of 2 chunks' worth evicts the least recently used leaf, never a parent */
    const spx_stage_t small[2] = {{2 * (10 + 512 * 100), 100, 10}, {1 << 20, 50, 10}};
    spx_reset(&x, small, 2, drop, 64);
    const int r0 = spx_add(&x, -1, 0, 0, 512, a, &same, drop, &n_drop, 64);
    spx_ready(&x, r0);
    const int r1 = spx_add(&x, r0, x.n[r0].id, 512, 1024, a + 512, &same, drop, &n_drop, 64);
    spx_ready(&x, r1);
    n_drop = 0;
    const uint64_t id1 = x.n[r1].id;
    const int r2 = spx_add(&x, -1, 0, 0, 512, b, &same, drop, &n_drop, 64); /* another root */
    CHECKF(r2 >= 0 && n_drop == 1 && drop[0] == id1 && x.evictions == 1 && x.bytes[0] <= small[0].budget,
           "n_drop %d evictions %llu", n_drop, (unsigned long long)x.evictions);
    CHECK(spx_find(&x, id1) < 0 && spx_find(&x, x.n[r0].id) == r0);
    /* a chunk bigger than a budget is refused; removal takes the subtree */
    CHECK(spx_add(&x, -1, 0, 0, 2048, a, &same, drop, &n_drop, 64) < 0);
    n_drop = 0;
    spx_remove(&x, r0, drop, &n_drop, 64);
    CHECK(n_drop == 1 && x.n_live == 1 && x.bytes[0] == 10 + 512 * 100);
    spx_fini(&x);
    return 0;
}
