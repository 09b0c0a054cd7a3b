/* shard_spec — see shard_spec.h. The drafting steps are cli/cli_spec.c's,
 * per slot: the same picks (top id among the 10 most likely, --draft-p-min),
 * the same draft sampler (the slot's parameters without penalties, seed ^
 * 0x5bd1e995), the same draft-model feeding. */
#include "shard_spec.h"

#include <string.h>

#include "g4_alloc.h"
#include "g4_log.h"
#include "g4_media.h"

typedef struct s_slot {
    int on, cap, greedy;
    g4_sampler_t *dsmp; /* the draft's distributions (temperature) */
    float *q;           /* [n_max][V] (temperature) */
    int32_t *dtok;      /* [n_max] the last proposals, at positions dpos + 1 .. */
    int n_d, dpos;
    /* a draft model: its sequence, rows fed, the slot's ids by position */
    int dseq, d_past, known, lost; /* known: ids at [0, known) are here; lost: a soft token (no draft model) */
    int32_t *hist;                 /* [n_ctx + 1] */
} s_slot_t;

struct shard_spec {
    shard_spec_params_t p;
    const g4_model_t *m;
    g4_ctx_t *tctx;
    g4_draft_t *assistant;
    g4_model_t *draft;
    g4_ctx_t *dctx;
    int n_slots, n_ctx, V, H;
    s_slot_t *slot;
    float *dlog, *h;
    int32_t *dpos, *dseq_rows;
    int8_t *dwant;
};

shard_spec_t *shard_spec_new(const shard_spec_params_t *p, const g4_model_t *target, g4_ctx_t *tctx, int n_slots,
                             int kv_type, g4_err_t *err)
{
    shard_spec_t *sp = g4_calloc(1, sizeof *sp);
    if (!sp) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sp->p = *p;
    if (sp->p.n_max < 0) sp->p.n_max = 0;
    if (sp->p.n_max > 64) sp->p.n_max = 64;
    sp->m = target, sp->tctx = tctx, sp->n_slots = n_slots, sp->n_ctx = g4_ctx_n_ctx(tctx);
    const g4_hparams_t *hp = g4_model_hparams(target);
    sp->V = (int)hp->n_vocab, sp->H = (int)hp->n_embd;
    g4_gguf_t *g = g4_gguf_open(p->path, err);
    if (!g) goto fail;
    const int assistant = g4_draft_is_assistant(g);
    g4_gguf_destroy(&g);
    if (assistant) {
        if (kv_type == G4_KV_Q8_0) {
            g4_err_set(err, G4_ERR_STATE, "the assistant reads the target's KV cache as F16 or F32, not q8_0 (--kv-type)");
            goto fail;
        }
        if (!(sp->assistant = g4_draft_load(p->path, target, err))) goto fail;
    } else {
        if (!(sp->draft = g4_model_load(p->path, 0, -1, err))) goto fail;
        if (g4_model_hparams(sp->draft)->n_vocab != hp->n_vocab) {
            g4_err_set(err, G4_ERR_FORMAT, "%s: a vocabulary of %u tokens, the model's has %u", p->path,
                       g4_model_hparams(sp->draft)->n_vocab, hp->n_vocab);
            goto fail;
        }
        g4_model_warm(sp->draft, G4_WEIGHTS_MAP);
        g4_ctx_params_t cp = {.n_ctx = sp->n_ctx, .n_ubatch = 512, .n_seq_max = n_slots, .kv_type = kv_type};
        if (!(sp->dctx = g4_ctx_new(sp->draft, &cp, err))) goto fail;
    }
    const size_t N = (size_t)sp->n_ctx + 1;
    sp->slot = g4_calloc((size_t)n_slots, sizeof *sp->slot);
    sp->dlog = g4_malloc((size_t)sp->V * sizeof *sp->dlog);
    sp->h = g4_malloc((size_t)sp->H * sizeof *sp->h);
    sp->dpos = g4_malloc(N * sizeof *sp->dpos), sp->dseq_rows = g4_malloc(N * sizeof *sp->dseq_rows);
    sp->dwant = g4_malloc(N);
    if (!sp->slot || !sp->dlog || !sp->h || !sp->dpos || !sp->dseq_rows || !sp->dwant) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n_slots; i++) sp->slot[i].dseq = -1;
    return sp;
fail:
    shard_spec_free(&sp);
    return NULL;
}

static void s_slot_clear(shard_spec_t *sp, s_slot_t *sl)
{
    g4_sampler_destroy(&sl->dsmp);
    if (sl->dseq >= 0 && sp->dctx) g4_seq_release(sp->dctx, sl->dseq);
    g4_free(sl->q), g4_free(sl->dtok), g4_free(sl->hist);
    memset(sl, 0, sizeof *sl);
    sl->dseq = -1;
}

void shard_spec_free(shard_spec_t **psp)
{
    shard_spec_t *sp = psp ? *psp : NULL;
    if (!sp) return;
    for (int i = 0; sp->slot && i < sp->n_slots; i++) s_slot_clear(sp, &sp->slot[i]);
    g4_free(sp->slot), g4_free(sp->dlog), g4_free(sp->h), g4_free(sp->dpos), g4_free(sp->dseq_rows), g4_free(sp->dwant);
    g4_draft_destroy(&sp->assistant);
    g4_ctx_destroy(&sp->dctx);
    g4_model_destroy(&sp->draft);
    g4_free(sp);
    *psp = NULL;
}

const char *shard_spec_kind(const shard_spec_t *sp) { return sp->assistant ? "assistant" : "model"; }
int shard_spec_max(const shard_spec_t *sp) { return sp->p.n_max; }

void shard_spec_slot_reset(shard_spec_t *sp, int slot)
{
    if (sp && slot >= 0 && slot < sp->n_slots) s_slot_clear(sp, &sp->slot[slot]);
}

int shard_spec_slot_params(shard_spec_t *sp, int slot, const g4_sampler_params_t *p, int draft_max, g4_err_t *err)
{
    if (!sp || slot < 0 || slot >= sp->n_slots) return G4_OK;
    s_slot_t *sl = &sp->slot[slot];
    g4_sampler_destroy(&sl->dsmp);
    sl->cap = draft_max < 0 ? 0 : draft_max == 0 || draft_max > sp->p.n_max ? sp->p.n_max : draft_max;
    sl->greedy = p->temp <= 0;
    sl->on = sl->cap > 0;
    sl->n_d = 0;
    if (!sl->on) return G4_OK;
    if (!sl->dtok && !(sl->dtok = g4_malloc((size_t)sp->p.n_max * sizeof *sl->dtok)))
        return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    if (!sl->greedy) {
        g4_sampler_params_t dp = *p; /* the draft's own: no penalties, its own stream */
        dp.repeat_penalty = 1, dp.presence_penalty = dp.frequency_penalty = 0, dp.seed ^= 0x5bd1e995u;
        if (!(sl->dsmp = g4_sampler_new(&dp, sp->V, err))) return err->code;
        if (!sl->q && !(sl->q = g4_malloc((size_t)sp->p.n_max * sp->V * sizeof *sl->q)))
            return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    }
    if (sp->draft && !sl->hist && !(sl->hist = g4_malloc(((size_t)sp->n_ctx + 1) * sizeof *sl->hist)))
        return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    return G4_OK;
}

void shard_spec_slot_ids(shard_spec_t *sp, int slot, const int32_t *tok, const int32_t *pos, const int8_t *flags, int n)
{
    if (!sp || !sp->draft || slot < 0 || slot >= sp->n_slots) return;
    s_slot_t *sl = &sp->slot[slot];
    if (!sl->hist) return;
    for (int i = 0; i < n; i++) {
        if (pos[i] < 0 || pos[i] > sp->n_ctx) continue;
        if (flags && (flags[i] & G4_ROW_EMBD)) sl->lost = 1; /* a draft model does not take media */
        if (pos[i] > sl->known) continue;                     /* (a gap: the ids before it are not here) */
        sl->hist[pos[i]] = tok[i];
        if (pos[i] == sl->known) sl->known++;
    }
}

const float *shard_spec_q(const shard_spec_t *sp, int slot, int pos, int32_t tok)
{
    if (!sp || slot < 0 || slot >= sp->n_slots) return NULL;
    const s_slot_t *sl = &sp->slot[slot];
    const int i = pos - sl->dpos - 1;
    if (!sl->q || i < 0 || i >= sl->n_d || sl->dtok[i] != tok) return NULL;
    return sl->q + (size_t)i * sp->V;
}


static int32_t s_pick(shard_spec_t *sp, s_slot_t *sl, int i)
{
    float p_top;
    const int32_t best = g4_draft_top10(sp->dlog, sp->V, &p_top);
    if (p_top < sp->p.p_min) return -1;
    if (sl->greedy) return best;
    float *q = sl->q + (size_t)i * sp->V;
    g4_sampler_probs(sl->dsmp, sp->dlog, q);
    return g4_sampler_draw(sl->dsmp, q);
}

/* the draft model's logits after feeding the slot's ids [d_past, upto] */
static int s_dfeed(shard_spec_t *sp, s_slot_t *sl, int upto, g4_err_t *err)
{
    const int n = upto + 1 - sl->d_past;
    if (n <= 0) return g4_err_set(err, G4_ERR_STATE, "draft model: nothing to feed");
    for (int i = 0; i < n; i++) sp->dpos[i] = sl->d_past + i, sp->dseq_rows[i] = sl->dseq, sp->dwant[i] = i == n - 1;
    g4_batch_t b = {n, sl->hist + sl->d_past, NULL, sp->dpos, sp->dseq_rows, sp->dwant, NULL};
    const int rc = g4_ctx_forward(sp->dctx, &b, NULL, NULL, NULL, sp->dlog, err);
    if (!rc) sl->d_past = upto + 1;
    return rc;
}

int shard_spec_draft(shard_spec_t *sp, int slot, int seq, int32_t id, int P, const float *x, int cap, int32_t *out,
                     g4_err_t *err)
{
    if (!sp || slot < 0 || slot >= sp->n_slots) return 0;
    s_slot_t *sl = &sp->slot[slot];
    sl->n_d = 0;
    if (!sl->on) return 0;
    int kcap = sl->cap < cap ? sl->cap : cap;
    if (sp->n_ctx - P - 1 < kcap) kcap = sp->n_ctx - P - 1;
    if (kcap <= 0) return 0;
    int k = 0, rc = G4_OK;
    if (sp->assistant) {
        g4_draft_target_h(sp->m, x, sp->h);
        for (int32_t tok = id; k < kcap; k++) {
            if ((rc = g4_draft_step(sp->assistant, sp->tctx, seq, tok, sp->h, P, sp->dlog, sp->h, err))) return rc;
            if ((tok = s_pick(sp, sl, k)) < 0) break;
            sl->dtok[k] = tok;
        }
    } else {
        if (sl->lost || !sl->hist || sl->known < P) return 0; /* the draft model cannot follow this slot */
        sl->hist[P] = id;
        if (sl->known < P + 1) sl->known = P + 1;
        if (sl->dseq < 0 && (sl->dseq = g4_seq_new(sp->dctx, err)) < 0) {
            sl->dseq = -1;
            return err->code;
        }
        if (sl->d_past > P) { /* drafts past the kept rows leave the draft model */
            if ((rc = g4_seq_truncate(sp->dctx, sl->dseq, P, err))) return rc;
            sl->d_past = P;
        }
        /* the prompt as the in-process run feeds it: all but its last id, then the rest */
        if (sl->d_past == 0 && P >= 2 && (rc = s_dfeed(sp, sl, P - 2, err))) return rc;
        if ((rc = s_dfeed(sp, sl, P, err))) return rc;
        for (; k < kcap; k++) {
            const int32_t tok = s_pick(sp, sl, k);
            if (tok < 0) break;
            sl->dtok[k] = tok;
            if (k + 1 == kcap) {
                k++;
                break;
            }
            sl->hist[P + 1 + k] = tok; /* fed past the confirmed ids; overwritten as ids come */
            if ((rc = s_dfeed(sp, sl, P + 1 + k, err))) return rc;
        }
    }
    if (k < sp->p.n_min) k = 0;
    memcpy(out, sl->dtok, (size_t)k * sizeof *out);
    sl->n_d = k, sl->dpos = P;
    return k;
}
