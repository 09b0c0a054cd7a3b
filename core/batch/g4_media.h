/* g4_media — a prompt's rows before the model sees them: the row flags, the
 * media placeholders spliced into soft-token rows, and the prefill chunks.
 * Pure arithmetic on token ids and flags; knows no weights, no sockets.
 * Used by schedulerd (which forms the batches of a pipeline) and by the
 * in-process path of `g4 run` (cli_run.c), so both chunk and splice alike;
 * the model reads the flags (g4_batch_t.flags, g4_model.h). */
#ifndef G4_MEDIA_H
#define G4_MEDIA_H

#include <stdint.h>

#include "g4_err.h"

/* Per-row flags of a batch (g4_batch_t.flags):
 * G4_ROW_EMBD  the row is a soft token: its input is the next embedding row
 *              (no sqrt(H) scale, per-layer input of token 0);
 * G4_ROW_BIDIR on sliding-window layers the row also sees the later rows of
 *              the adjacent run of BIDIR rows of its sequence in the call;
 * G4_ROW_STEP  the row was a decode step of its own (a one-row call) and is
 *              fed again with others after a pipeline change: attention
 *              computes it as that one-row call did (the cache as it stood
 *              after that row, the split-KV decode), so the numbers come out
 *              the same as the first time;
 * G4_ROW_DRAFT (with STEP; the pipeline's marker, the model ignores it) a
 *              drafted id to verify: the slot's rows are [its last sampled
 *              id, drafts...] (speculative decoding, shardd/shard_spec.h). */
#define G4_ROW_EMBD 1
#define G4_ROW_BIDIR 2
#define G4_ROW_STEP 4
#define G4_ROW_DRAFT 8

/* ---- media placeholders ---------------------------------------------------
 * The k-th <|image|> (<|audio|>) of a prompt stands for the k-th image
 * (audio clip) of the request and becomes <|image> + its soft tokens +
 * <image|>. mid: ids of <|image|> <|image> <image|> <|audio|> <|audio> <audio|>
 * (-1 where the vocabulary has none); kind[i]: G4_MEDIA_*. */
enum { G4_MEDIA_IMAGE = 1, G4_MEDIA_AUDIO = 2 };

/* Image soft tokens see each other both ways on sliding layers except on
 * E2B / E4B (text width 1536 / 2560), as llama.cpp's mtmd decides it. */
static inline int g4_media_bidir(int n_embd) { return n_embd != 1536 && n_embd != 2560; }

/* G4_OK when the prompt has one placeholder per medium of each kind. */
int g4_media_check(const int32_t *ids, int n, const int32_t mid[6], const int *kind, int n_media, g4_err_t *err);
/* Writes the spliced prompt (n + sum(n_tok[i] + 1) rows: soft-token rows get
 * id -1 and G4_ROW_EMBD, image rows also G4_ROW_BIDIR when bidir) and
 * order[j] = the medium whose soft tokens come j-th (their embeddings go in
 * that order). Returns the new length, or a negative G4_ERR_*. */
int g4_media_splice(const int32_t *ids, int n, const int32_t mid[6], const int *kind, const int *n_tok, int n_media,
                    int bidir, int32_t *out, int8_t *flags, int *order, g4_err_t *err);

/* Rows of the next prefill chunk of a prompt from row n_fed: n_ubatch at
 * most, ending before a run of BIDIR rows that would be cut (a run longer
 * than a chunk is cut, as llama.cpp cuts an image by its batch size). The
 * scheduler and the in-process path chunk alike, so they compute the same. */
static inline int g4_prefill_chunk(const int8_t *flags, int n_fed, int n_prompt, int n_ubatch)
{
    int need = n_prompt - n_fed < n_ubatch ? n_prompt - n_fed : n_ubatch;
    if (flags && n_fed + need < n_prompt && (flags[n_fed + need - 1] & G4_ROW_BIDIR) &&
        (flags[n_fed + need] & G4_ROW_BIDIR)) {
        int a = n_fed + need - 1;
        while (a > n_fed && (flags[a - 1] & G4_ROW_BIDIR)) a--;
        if (a > n_fed) need = a - n_fed;
    }
    return need;
}

#endif
