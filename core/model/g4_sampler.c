/* g4_sampler — see g4_sampler.h. */
#include "g4_sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"

typedef struct s_cand {
    int32_t id;
    float logit;
    float p;
} s_cand_t;

struct g4_sampler {
    g4_sampler_params_t p;
    int n_vocab;
    int32_t *hist;
    int n_hist, hist_pos;
    s_cand_t *cand;
    uint64_t rng;
};

void g4_sampler_params_default(g4_sampler_params_t *p)
{
    p->temp = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->seed = 0xFFFFFFFFu;
}

g4_sampler_t *g4_sampler_new(const g4_sampler_params_t *p, int n_vocab, g4_err_t *err)
{
    g4_sampler_t *s = g4_calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->p = *p;
    s->n_vocab = n_vocab;
    if (s->p.repeat_last_n < 0) s->p.repeat_last_n = 0;
    s->hist = g4_calloc((size_t)(s->p.repeat_last_n ? s->p.repeat_last_n : 1), sizeof *s->hist);
    s->cand = g4_malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->hist || !s->cand) goto nomem;
    s->rng = p->seed ^ 0x9E3779B97F4A7C15ull;
    return s;
nomem:
    g4_sampler_destroy(&s);
    g4_err_set(err, G4_ERR_NOMEM, "out of memory for the sampler");
    return NULL;
}

void g4_sampler_destroy(g4_sampler_t **ps)
{
    g4_sampler_t *s = ps ? *ps : NULL;
    if (!s) return;
    g4_free(s->hist);
    g4_free(s->cand);
    g4_free(s);
    *ps = NULL;
}

void g4_sampler_accept(g4_sampler_t *s, int32_t id)
{
    if (!s->p.repeat_last_n) return;
    s->hist[s->hist_pos] = id;
    s->hist_pos = (s->hist_pos + 1) % s->p.repeat_last_n;
    if (s->n_hist < s->p.repeat_last_n) s->n_hist++;
}

static uint64_t s_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int s_cmp(const void *a, const void *b)
{
    const s_cand_t *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

static void s_softmax(s_cand_t *c, int n)
{
    float max = c[0].logit;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        c[i].p = expf(c[i].logit - max);
        sum += c[i].p;
    }
    for (int i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
}

/* the chain up to the draw: penalties, then (temperature > 0) the kept
 * candidates s->cand[0, n) with their probabilities; returns n, or 0 for
 * greedy (temperature <= 0: the caller takes the argmax of logits) */
static int s_chain(g4_sampler_t *s, float *logits)
{
    const g4_sampler_params_t *p = &s->p;
    /* penalties (llama.cpp: divide positive / multiply negative logits) */
    if (s->n_hist && (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f)) {
        for (int i = 0; i < s->n_hist; i++) {
            const int32_t id = s->hist[i];
            if (id < 0 || id >= s->n_vocab) continue;
            int seen_before = 0, count = 0;
            for (int j = 0; j < s->n_hist; j++) {
                if (s->hist[j] == id) {
                    count++;
                    if (j < i) seen_before = 1;
                }
            }
            if (seen_before) continue; /* apply once per distinct id */
            float *l = &logits[id];
            if (*l <= 0) *l *= p->repeat_penalty;
            else *l /= p->repeat_penalty;
            *l -= (float)count * p->frequency_penalty + (count > 0 ? p->presence_penalty : 0.0f);
        }
    }
    if (p->temp <= 0.0f) return 0;
    int n = s->n_vocab;
    for (int i = 0; i < n; i++) s->cand[i] = (s_cand_t){i, logits[i], 0};
    qsort(s->cand, (size_t)n, sizeof *s->cand, s_cmp);
    if (p->top_k > 0 && p->top_k < n) n = p->top_k;
    if (p->top_p < 1.0f) {
        s_softmax(s->cand, n);
        double cum = 0;
        for (int i = 0; i < n; i++) {
            cum += s->cand[i].p;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        s_softmax(s->cand, n);
        const float thr = s->cand[0].p * p->min_p;
        int k = 1;
        while (k < n && s->cand[k].p >= thr) k++;
        n = k;
    }
    for (int i = 0; i < n; i++) s->cand[i].logit /= p->temp;
    s_softmax(s->cand, n);
    return n;
}

static int32_t s_argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int32_t g4_sampler_sample(g4_sampler_t *s, float *logits)
{
    const int n = s_chain(s, logits);
    if (!n) return s_argmax(logits, s->n_vocab);
    const double r = (double)(s_next(&s->rng) >> 11) / 9007199254740992.0;
    double cum = 0;
    for (int i = 0; i < n; i++) {
        cum += s->cand[i].p;
        if (r < cum) return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}

int32_t g4_sampler_probs(g4_sampler_t *s, float *logits, float *probs)
{
    const int n = s_chain(s, logits);
    memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
    if (!n) {
        const int32_t best = s_argmax(logits, s->n_vocab);
        probs[best] = 1.0f;
        return best;
    }
    for (int i = 0; i < n; i++) probs[s->cand[i].id] = s->cand[i].p;
    return s->cand[0].id;
}

const g4_sampler_params_t *g4_sampler_params(const g4_sampler_t *s) { return &s->p; }

double g4_sampler_uniform(g4_sampler_t *s) { return (double)(s_next(&s->rng) >> 11) / 9007199254740992.0; }

int32_t g4_sampler_draw(g4_sampler_t *s, const float *probs)
{
    double sum = 0;
    int32_t last = -1;
    for (int i = 0; i < s->n_vocab; i++)
        if (probs[i] > 0) sum += probs[i], last = i;
    if (last < 0) return 0;
    const double r = g4_sampler_uniform(s) * sum;
    double cum = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        cum += probs[i];
        if (probs[i] > 0 && r < cum) return i;
    }
    return last;
}

void g4_top_logprobs(const float *logits, int n_vocab, int k, g4_logprob_t *out)
{
    if (k <= 0) return;
    float max = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - max);
    const double lse = max + log(sum);
    for (int j = 0; j < k; j++) out[j] = (g4_logprob_t){-1, -INFINITY};
    for (int i = 0; i < n_vocab; i++) {
        float lp = (float)(logits[i] - lse);
        if (lp <= out[k - 1].logprob) continue;
        int j = k - 1;
        while (j > 0 && out[j - 1].logprob < lp) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = (g4_logprob_t){i, lp};
    }
}
