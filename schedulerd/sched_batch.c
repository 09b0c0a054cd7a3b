/* sched_batch — see sched_batch.h: which requests get slots, which rows go
 * into the next micro-batch. Pure: reads the caller's structs, writes the
 * caller's arrays. */
#include "sched_batch.h"

#include <string.h>

#include "g4_media.h"

int sched_batch_admit(const sched_seq_t *seq, int n_seq, const uint8_t *slot_used, int n_slots, int n_ctx,
                      sched_admit_t *out)
{
    int n = 0, next_slot = 0;
    uint64_t after = 0; /* orders are unique: the next oldest is the least order above the last one */
    int have_after = 0;
    for (;;) {
        int oldest = -1;
        for (int i = 0; i < n_seq; i++)
            if (seq[i].state == SCHED_SEQ_QUEUED && (!have_after || seq[i].order > after) &&
                (oldest < 0 || seq[i].order < seq[oldest].order))
                oldest = i;
        if (oldest < 0) break;
        after = seq[oldest].order, have_after = 1;
        if (n_ctx > 0 && seq[oldest].n_tok >= n_ctx) {
            out[n++] = (sched_admit_t){oldest, -1};
            continue;
        }
        while (next_slot < n_slots && slot_used[next_slot]) next_slot++;
        if (next_slot >= n_slots) break; /* the rest wait, in order */
        out[n++] = (sched_admit_t){oldest, next_slot++};
    }
    return n;
}

int sched_batch_max_seqs(int n_running, int n_stages)
{
    if (n_stages < 1) n_stages = 1;
    return n_running > 0 ? (n_running + n_stages - 1) / n_stages : 1;
}

int sched_batch_need(const sched_seq_t *q, int n_ubatch)
{
    if (q->n_fed >= q->n_tok) return 0;
    if (q->n_fed < q->n_prompt) {
        /* a prompt goes in the same ubatches from position 0 whatever the prefix cache restored */
        const int from = q->n_fed - (q->vrows > 0 && q->vrows <= q->n_fed ? q->vrows : 0);
        return g4_prefill_chunk(q->rflag, from, q->n_prompt, n_ubatch) - (q->n_fed - from);
    }
    if (q->n_draft > 0 && q->n_fed == q->n_tok - 1) /* the last id and the drafts after it */
        return 1 + q->n_draft < n_ubatch ? 1 + q->n_draft : n_ubatch;
    /* generated tokens: one per step, or up to 63 when fed again after a
     * pipeline change (fewer than 64 rows of one sequence use the same
     * attention kernel as one row, so the numbers come out the same) */
    return q->n_tok - q->n_fed < 63 ? q->n_tok - q->n_fed : 63;
}

int sched_batch_form(const sched_seq_t *seq, int n_seq, int start, int max_seqs, int n_ubatch, sched_pick_t *pick,
                     sched_rows_t *rows)
{
    int n_pick = 0;
    rows->n_rows = rows->n_sample = rows->has_flags = rows->n_embd_rows = rows->n_embd = 0;
    memset(rows->flags, 0, (size_t)n_ubatch);
    for (int k = 0; k < n_seq && n_pick < max_seqs; k++) {
        const int i = (start + k) % n_seq;
        const sched_seq_t *q = &seq[i];
        if (q->state != SCHED_SEQ_RUNNING || q->in_flight) continue;
        const int need = sched_batch_need(q, n_ubatch);
        if (!need || rows->n_rows + need > n_ubatch) continue;
        const int at = rows->n_rows;
        sched_pick_t pk = {i, need, q->n_fed, -1, 0, 0};
        if (q->rflag && q->n_fed < q->n_prompt) {
            /* soft-token rows: their flags, and which embeddings go into the frame */
            for (int p = 0; p < q->n_fed; p++) pk.embd_first += (q->rflag[p] & G4_ROW_EMBD) != 0;
            for (int j = 0; j < need && q->n_fed + j < q->n_prompt; j++)
                pk.n_embd_rows += (q->rflag[q->n_fed + j] & G4_ROW_EMBD) != 0;
            if (pk.n_embd_rows && rows->n_embd && rows->n_embd != q->n_embd) continue; /* (one width per model) */
            if (pk.n_embd_rows) rows->n_embd_rows += pk.n_embd_rows, rows->n_embd = q->n_embd;
            for (int j = 0; j < need && q->n_fed + j < q->n_prompt; j++) rows->flags[at + j] = q->rflag[q->n_fed + j];
            rows->has_flags = 1;
        }
        for (int j = 0; j < need; j++) {
            const int p = q->n_fed + j;
            if (p >= q->n_prompt && need > 1) /* generated ids fed again (or verified): each a step of its own */
                rows->flags[at + j] = G4_ROW_STEP, rows->has_flags = 1;
            if (p >= q->n_tok) rows->flags[at + j] |= G4_ROW_DRAFT; /* a drafted id */
            rows->tok[at + j] = p < q->n_tok ? q->tok[p] : q->draft[p - q->n_tok];
            rows->pos[at + j] = p;
            rows->slot[at + j] = (uint32_t)q->slot;
            if (p >= q->n_prompt - 1) { /* every row from the last prompt row on is sampled */
                if (pk.sample_pos < 0) pk.sample_pos = p;
                rows->sample[rows->n_sample++] = (uint32_t)(at + j);
            }
        }
        rows->n_rows += need;
        pick[n_pick++] = pk;
    }
    return n_pick;
}
