/* sched_batch — the batch former of schedulerd, as pure functions: given the
 * requests as plain structs (queued, prefilling with n rows fed, decoding),
 * the free sequence slots and --ubatch, decide which requests get slots and
 * which rows go into the next micro-batch. No sockets, no protobuf, no
 * allocation: s_schedule (sched.c) fills the structs from its requests,
 * calls these and sends the ForwardBatch; tests/unit/test_sched.c checks them.
 *
 * The rules (continuous batching):
 *   - the oldest queued request gets the lowest free slot; one whose prompt
 *     does not fit the context is refused instead; admission stops at the
 *     first request without a free slot (no overtaking);
 *   - a running request joins the next batch as soon as it has no batch out,
 *     whatever the others do: prompts in chunks of at most n_ubatch rows
 *     (g4_prefill_chunk: a run of bidirectional soft-token rows is never
 *     split unless it alone exceeds n_ubatch), decoding sequences one row per
 *     step (up to 63 rows when fed again after a pipeline change), or their
 *     last id and the ids drafted after it (speculative decoding);
 *   - a batch holds at most max_seqs requests, so that each of the n_stages
 *     pipeline stages has a batch of its own (sched_batch_max_seqs), and at
 *     most n_ubatch rows; a request that does not fit waits for the next;
 *   - requests are visited round-robin from `start`, so none starves. */
#ifndef SCHED_BATCH_H
#define SCHED_BATCH_H

#include <stdint.h>

enum { SCHED_SEQ_OTHER, SCHED_SEQ_QUEUED, SCHED_SEQ_RUNNING };

/* A request as the batch former sees it (all borrowed from the caller). */
typedef struct sched_seq {
    int state;            /* SCHED_SEQ_*: OTHER = not schedulable (being tokenized, ending, free) */
    int in_flight;        /* a batch of it is out: nothing more until it returns */
    uint64_t order;       /* arrival order, unique (the request id): oldest queued first */
    int slot;             /* its sequence slot while running */
    int n_prompt;         /* prompt rows (soft tokens included) */
    int n_tok;            /* ids known: prompt, then the generated ones */
    int n_fed;            /* rows the pipeline holds (its KV cache), 0 .. n_tok */
    const int32_t *tok;   /* [n_tok] */
    const int8_t *rflag;  /* [n_prompt] G4_ROW_* flags, NULL for a prompt of ids only */
    int n_embd;           /* width of its soft-token rows (with rflag) */
    int vrows;            /* restored from the prefix cache inside a ubatch: its rows before n_fed
                           * (the next chunk ends where the cold run's ubatch does); else 0 */
    const int32_t *draft; /* [n_draft] ids drafted after its last id (decoding, n_fed = n_tok - 1):
                           * verified in its next step, rows [last id, drafts] (G4_ROW_STEP, drafts
                           * G4_ROW_DRAFT), every one sampled */
    int n_draft;
} sched_seq_t;

/* One admission: seq gets slot, or is refused (slot -1: its prompt does not fit n_ctx). */
typedef struct sched_admit {
    int seq, slot;
} sched_admit_t;

/* One request's part of a micro-batch. */
typedef struct sched_pick {
    int seq;        /* index into the seq array */
    int n_rows;     /* rows it feeds: positions first_pos .. first_pos + n_rows - 1 */
    int first_pos;
    int sample_pos; /* position of its first sampled row (from the last prompt row on), -1 none */
    int embd_first; /* its soft-token rows in this chunk: rows [embd_first, +n_embd_rows) of its embeddings */
    int n_embd_rows;
} sched_pick_t;

/* The rows of one micro-batch: arrays of n_ubatch entries, the caller's. */
typedef struct sched_rows {
    int32_t *tok, *pos;
    uint32_t *slot;
    uint32_t *sample;  /* rows whose next id is sampled */
    int8_t *flags;     /* G4_ROW_* per row (zero for rows of requests without flags) */
    int n_rows, n_sample;
    int has_flags;     /* a request with row flags is in the batch: the flags go with it */
    int n_embd_rows, n_embd; /* soft-token rows in the batch and their width */
} sched_rows_t;

/* Admissions for the queued requests of seq[0, n_seq), oldest first, into the
 * slots not marked in slot_used[0, n_slots) (lowest first); n_ctx <= 0 means
 * no limit. Writes up to n_seq entries to out; returns how many. */
int sched_batch_admit(const sched_seq_t *seq, int n_seq, const uint8_t *slot_used, int n_slots, int n_ctx,
                      sched_admit_t *out);

/* Requests per micro-batch when n_running share n_stages stages (at least 1). */
int sched_batch_max_seqs(int n_running, int n_stages);

/* Rows q feeds next (0 when it has nothing to feed). */
int sched_batch_need(const sched_seq_t *q, int n_ubatch);

/* Forms the next micro-batch from the running requests without a batch out,
 * visited from seq[start % n_seq] on: fills rows (n_ubatch entries at most)
 * and pick[] (n_seq entries at most); returns the number of requests picked
 * (0: nothing to feed). The caller marks the picked ones in flight before it
 * forms another batch. */
int sched_batch_form(const sched_seq_t *seq, int n_seq, int start, int max_seqs, int n_ubatch, sched_pick_t *pick,
                     sched_rows_t *rows);

#endif
