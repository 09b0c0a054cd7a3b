/* g4_pack — the packed layouts (see g4_pack.h) and their dispatch.
 *
 * Per group of 16 rows and GGUF block index i, the bytes of the 16 blocks
 * are rearranged as below (r = row in the group, k = byte in a 4-byte word;
 * "word v" = 64 bytes: word v of row r at 64·v + 4·r):
 *
 *   Q8_0 (34 B/row):  d[16] f16 | words 0-7: qs[4v + k] + 128 (as u8)
 *   Q4_K (144 B/row): d[16] f16 | dmin[16] f16 | words 0-2: scales[4v + k]
 *                     | words 0-31 (v = 8c + g): qs[32c + 4g + k]
 *   Q6_K (210 B/row): d[16] f16 | scales: [8 p][16 r][2] s8 (scales 2p, 2p+1)
 *                     | ql words 0-31 (v = 16h + 8s + g): ql[64h + 32s + 4g + k]
 *                     | qh words 0-15 (v = 8h + g): qh[32h + 4g + k]
 *
 * Q8_0's quants are stored offset by 128 so that they are the unsigned
 * operand of vpdpbusd; the kernel starts each block's sum at -128·Σa. */
#include "g4_pack.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static g4_pack_ops_t s_ops[G4_DTYPE_COUNT];
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static int s_off;

static void s_init(void)
{
    s_off = getenv("G4_NO_PACK") != NULL;
#if defined(__x86_64__)
    if (!s_off) g4_pack_fill_x86(s_ops);
#endif
}

const g4_pack_ops_t *g4_pack_ops(uint32_t t)
{
    pthread_once(&s_once, s_init);
    if (s_off || t >= G4_DTYPE_COUNT || !s_ops[t].gemm) return NULL;
    return &s_ops[t];
}

int g4_pack_able(uint32_t t, int64_t K, int64_t N)
{
    const g4_dtype_traits_t *tr = g4_dtype_traits(t);
    return g4_pack_ops(t) && tr && K > 0 && K % tr->block_size == 0 && N > 0 && N % G4_PACK_ROWS == 0;
}

/* where byte o of row r's block lands in the group's block (bytes from its
 * start), and whether it is stored offset by 128 */
static uint32_t s_map(uint32_t t, uint32_t r, uint32_t o, int *flip)
{
    *flip = 0;
    switch (t) {
    case G4_DTYPE_Q8_0:
        if (o < 2) return 2 * r + o;
        o -= 2;
        *flip = 1;
        return 32 + 64 * (o / 4) + 4 * r + o % 4;
    case G4_DTYPE_Q4_K:
        if (o < 4) return (o < 2 ? 0 : 32) + 2 * r + o % 2;
        if (o < 16) return 64 + 64 * ((o - 4) / 4) + 4 * r + (o - 4) % 4;
        o -= 16;
        return 256 + 64 * (o / 4) + 4 * r + o % 4; /* o = 32c + 4g + k: word 8c + g */
    case G4_DTYPE_Q6_K:
        if (o < 128) { /* ql[64h + 32s + 4g + k]: word 16h + 8s + g */
            return 288 + 64 * (o / 4) + 4 * r + o % 4;
        }
        if (o < 192) {
            o -= 128;
            return 2336 + 64 * (o / 4) + 4 * r + o % 4;
        }
        if (o < 208) return 32 + 32 * ((o - 192) / 2) + 2 * r + (o - 192) % 2; /* scale pairs */
        return 2 * r + (o - 208);
    default: return 0;
    }
}

/* n 4-byte words of a row's block to their places (word v at 64·v + 4·r) */
static inline void s_words(uint8_t *d, const uint8_t *b, int n, uint32_t r, uint32_t flip)
{
    for (int v = 0; v < n; v++) {
        uint32_t w;
        memcpy(&w, b + 4 * v, 4);
        w ^= flip;
        memcpy(d + 64 * v + 4 * r, &w, 4);
    }
}

void g4_pack_rows(uint32_t t, int64_t K, const void *src, uint64_t stride, int64_t n_groups, void *dst)
{
    const g4_dtype_traits_t *tr = g4_dtype_traits(t);
    const uint32_t bs = tr->type_size;
    const int64_t nb = K / tr->block_size;
    uint8_t *d = dst;
    /* the layouts of s_map, written out per type (this runs over every
     * weight byte while the model loads) */
    for (int64_t gi = 0; gi < n_groups; gi++) {
        const uint8_t *s = (const uint8_t *)src + (uint64_t)gi * G4_PACK_ROWS * stride;
        for (int64_t i = 0; i < nb; i++, d += (uint64_t)G4_PACK_ROWS * bs)
            for (uint32_t r = 0; r < G4_PACK_ROWS; r++) {
                const uint8_t *b = s + r * stride + (uint64_t)i * bs;
                switch (t) {
                case G4_DTYPE_Q8_0:
                    memcpy(d + 2 * r, b, 2);
                    s_words(d + 32, b + 2, 8, r, 0x80808080u);
                    break;
                case G4_DTYPE_Q4_K:
                    memcpy(d + 2 * r, b, 2), memcpy(d + 32 + 2 * r, b + 2, 2);
                    s_words(d + 64, b + 4, 3, r, 0);
                    s_words(d + 256, b + 16, 32, r, 0);
                    break;
                case G4_DTYPE_Q6_K:
                    s_words(d + 288, b, 32, r, 0);
                    s_words(d + 2336, b + 128, 16, r, 0);
                    for (int p = 0; p < 8; p++) memcpy(d + 32 + 32 * p + 2 * r, b + 192 + 2 * p, 2);
                    memcpy(d + 2 * r, b + 208, 2);
                    break;
                default:
                    for (uint32_t o = 0; o < bs; o++) {
                        int flip;
                        const uint32_t at = s_map(t, r, o, &flip);
                        d[at] = flip ? (uint8_t)(b[o] ^ 0x80) : b[o];
                    }
                }
            }
    }
}

void g4_pack_unpack_row(uint32_t t, int64_t K, const void *packed, int64_t row, void *dst)
{
    const g4_dtype_traits_t *tr = g4_dtype_traits(t);
    const uint32_t bs = tr->type_size;
    const int64_t nb = K / tr->block_size;
    const uint8_t *g = (const uint8_t *)packed + (uint64_t)(row / G4_PACK_ROWS) * G4_PACK_ROWS * (uint64_t)nb * bs;
    const uint32_t r = (uint32_t)(row % G4_PACK_ROWS);
    uint8_t *d = dst;
    for (int64_t i = 0; i < nb; i++, g += (uint64_t)G4_PACK_ROWS * bs)
        for (uint32_t o = 0; o < bs; o++) {
            int flip;
            const uint8_t v = g[s_map(t, r, o, &flip)];
            d[(uint64_t)i * bs + o] = flip ? (uint8_t)(v ^ 0x80) : v;
        }
}
