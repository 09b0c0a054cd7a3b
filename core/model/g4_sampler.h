/* g4_sampler — turns a row of logits into a token id.
 *
 * The chain and defaults follow llama.cpp's common sampler:
 *   penalties (repeat / presence / frequency over the last N ids)
 *   -> top-k (40) -> top-p (0.95) -> min-p (0.05) -> temperature (0.8) -> draw (seed)
 * temperature <= 0 is greedy (argmax, first index on ties). The random
 * stream is our own (splitmix64), so sampled ids are reproducible per seed
 * but not identical to llama.cpp's std::mt19937 draws. */
#ifndef G4_SAMPLER_H
#define G4_SAMPLER_H

#include <stdint.h>

#include "g4_err.h"

typedef struct g4_sampler_params {
    float temp;
    int top_k;             /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off    */
    int repeat_last_n;
    float presence_penalty, frequency_penalty;
    uint64_t seed;
} g4_sampler_params_t;

/* The one set of defaults (the chain above; seed 0xFFFFFFFF): g4 run, g4 chat
 * (seed 0 unless --seed), g4 bench (temperature 0), the shards (temperature 0
 * when a request sends no parameters) and the HTTP gateway (temperature and
 * top_p 1, OpenAI's documented defaults; a fresh seed) all start from it and
 * override only what they say. */
void g4_sampler_params_default(g4_sampler_params_t *p);

typedef struct g4_sampler g4_sampler_t;

g4_sampler_t *g4_sampler_new(const g4_sampler_params_t *p, int n_vocab, g4_err_t *err);
void g4_sampler_destroy(g4_sampler_t **s);
/* Records an id for the penalties (prompt ids and sampled ids). */
void g4_sampler_accept(g4_sampler_t *s, int32_t id);
/* Samples from logits[n_vocab] (modified in place). */
int32_t g4_sampler_sample(g4_sampler_t *s, float *logits);
/* The distribution g4_sampler_sample would draw from (probs[n_vocab], 0
 * outside the kept candidates; greedy: 1 at the argmax), without drawing;
 * returns its most likely id. logits are modified in place. */
int32_t g4_sampler_probs(g4_sampler_t *s, float *logits, float *probs);
/* The parameters the sampler was made with. */
const g4_sampler_params_t *g4_sampler_params(const g4_sampler_t *s);
/* A draw from the sampler's random stream: uniform in [0, 1). */
double g4_sampler_uniform(g4_sampler_t *s);
/* An id drawn from probs[n_vocab] (non-negative weights, normalised here). */
int32_t g4_sampler_draw(g4_sampler_t *s, const float *probs);

/* The k most likely ids of a logit row with their log-probabilities (float64
 * log-sum-exp over the whole row), most likely first. */
typedef struct g4_logprob {
    int32_t id;
    float logprob;
} g4_logprob_t;
void g4_top_logprobs(const float *logits, int n_vocab, int k, g4_logprob_t *out);

#endif
