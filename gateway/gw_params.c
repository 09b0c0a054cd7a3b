/* gw_params — an OpenAI request body as the scheduler wants it: sampling
 * (the sampler's defaults, with OpenAI's documented temperature and top_p of
 * 1 where the body says nothing), max_tokens, stops, logprobs, thinking; and
 * the messages as the chat template's conversation, with image_url /
 * input_audio parts decoded from base64 into Media (g4 fetches nothing). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "g4_alloc.h"
#include "g4_sampler.h"
#include "gw_internal.h"

/* base64 (standard alphabet, padding optional, whitespace ignored) -> bytes */
static uint8_t *s_b64(const char *in, size_t *len)
{
    const size_t n = strlen(in), cap = n / 4 * 3 + 3;
    uint8_t *out = g4_malloc(cap + 1);
    if (!out) return NULL;
    if (sodium_base642bin(out, cap, in, n, " \t\r\n", len, NULL, sodium_base64_VARIANT_ORIGINAL) &&
        sodium_base642bin(out, cap, in, n, " \t\r\n", len, NULL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)) {
        g4_free(out);
        return NULL;
    }
    return out;
}

/* An OpenAI image_url / input_audio part -> a Media of p; NULL or why not. */
static const char *s_media_part(const cJSON *part, int image, gw_params_t *p)
{
    if (p->n_media == GW_MAX_MEDIA) return "at most 16 images / audio clips per request";
    const char *b64 = NULL;
    if (image) {
        const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
        const cJSON *url = cJSON_IsObject(iu) ? cJSON_GetObjectItemCaseSensitive(iu, "url") : iu;
        if (!cJSON_IsString(url)) return "an image_url part needs image_url.url";
        const char *u = url->valuestring, *comma = strchr(u, ',');
        if (strncmp(u, "data:", 5) || !comma || !strstr(u, ";base64"))
            return "images must be given inline as data:<type>;base64,... URLs (g4 fetches nothing)";
        b64 = comma + 1;
    } else {
        const cJSON *ia = cJSON_GetObjectItemCaseSensitive(part, "input_audio");
        const cJSON *d = cJSON_IsObject(ia) ? cJSON_GetObjectItemCaseSensitive(ia, "data") : NULL;
        if (!cJSON_IsString(d)) return "an input_audio part needs input_audio.data (base64 WAV or MP3)";
        b64 = d->valuestring;
    }
    size_t len = 0;
    uint8_t *bytes = s_b64(b64, &len);
    if (!bytes || !len) {
        g4_free(bytes);
        return "the media data is not valid base64";
    }
    G4__V1__Media *m = &p->media[p->n_media];
    g4__v1__media__init(m);
    m->kind = image ? G4__V1__MEDIA_KIND__MEDIA_IMAGE : G4__V1__MEDIA_KIND__MEDIA_AUDIO;
    m->data.data = bytes, m->data.len = len;
    p->mbuf[p->n_media] = bytes;
    p->mediap[p->n_media] = m;
    p->n_media++;
    return NULL;
}

void gw_params_free(gw_params_t *p)
{
    for (int i = 0; i < p->n_media; i++) g4_free(p->mbuf[i]);
    p->n_media = 0;
}

/* Fills params from the body; returns NULL or an error message (param name in *param). */
const char *gw_params_parse(const cJSON *b, gw_params_t *p, const char **param)
{
    /* the sampler's defaults, but OpenAI documents temperature and top_p as 1
     * when not given, and a request without a seed draws differently each time */
    g4_sampler_params_t d;
    g4_sampler_params_default(&d);
    d.temp = 1.0f, d.top_p = 1.0f;
    d.seed = (uint64_t)time(NULL) ^ (uint64_t)rand();
    g4_client_sampling(&d, 0, &p->sp);
    p->n_media = 0;
    p->max_tokens = 0, p->stream = 0, p->logprobs = 0, p->top_logprobs = 0, p->think = 0, p->n_stop = 0;
    p->ignore_eos = 0;
    const cJSON *v;
#define NUM(name, lo, hi, dst)                                                                                      \
    if ((v = cJSON_GetObjectItemCaseSensitive(b, name)) && !cJSON_IsNull(v)) {                                      \
        if (!cJSON_IsNumber(v) || v->valuedouble < (lo) || v->valuedouble > (hi)) {                                 \
            *param = name;                                                                                          \
            return "'" name "' must be a number in [" #lo ", " #hi "]";                                             \
        }                                                                                                           \
        dst;                                                                                                        \
    }
    NUM("temperature", 0, 2, p->sp.temperature = (float)v->valuedouble);
    NUM("top_p", 0, 1, p->sp.top_p = (float)v->valuedouble);
    NUM("top_k", 0, 1000000, p->sp.top_k = (int)v->valuedouble);
    NUM("min_p", 0, 1, p->sp.min_p = (float)v->valuedouble);
    NUM("seed", -9.2e18, 9.2e18, p->sp.seed = (uint64_t)(int64_t)v->valuedouble);
    NUM("presence_penalty", -2, 2, p->sp.presence_penalty = (float)v->valuedouble);
    NUM("frequency_penalty", -2, 2, p->sp.frequency_penalty = (float)v->valuedouble);
    NUM("repeat_penalty", 0, 10, p->sp.repeat_penalty = (float)v->valuedouble);
    NUM("max_tokens", 1, 1e9, p->max_tokens = (int)v->valuedouble);
    NUM("max_completion_tokens", 1, 1e9, p->max_tokens = (int)v->valuedouble);
    NUM("n", 1, 1, (void)0);
#undef NUM
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "stream")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) return *param = "stream", "'stream' must be a boolean";
        p->stream = cJSON_IsTrue(v);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "ignore_eos")) && cJSON_IsBool(v)) p->ignore_eos = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "logprobs")) && !cJSON_IsNull(v)) {
        if (cJSON_IsBool(v)) p->logprobs = cJSON_IsTrue(v);
        else if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 20) /* completions: an int */
            p->logprobs = 1, p->top_logprobs = (int)v->valuedouble;
        else return *param = "logprobs", "'logprobs' must be a boolean (chat) or an integer in [0, 20]";
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "top_logprobs")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 20)
            return *param = "top_logprobs", "'top_logprobs' must be an integer in [0, 20]";
        p->top_logprobs = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "stop")) && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v)) {
            p->stops[p->n_stop++] = v->valuestring;
        } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) <= GW_MAX_STOP) {
            const cJSON *e;
            cJSON_ArrayForEach(e, v)
            {
                if (!cJSON_IsString(e)) return *param = "stop", "'stop' must be a string or a list of strings";
                p->stops[p->n_stop++] = e->valuestring;
            }
        } else {
            return *param = "stop", "'stop' must be a string or a list of at most 16 strings";
        }
    }
    /* thinking: chat_template_kwargs.enable_thinking (llama.cpp) or reasoning_effort != "none" */
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(b, "chat_template_kwargs");
    if (cJSON_IsObject(kw) && (v = cJSON_GetObjectItemCaseSensitive(kw, "enable_thinking")) && cJSON_IsBool(v))
        p->think = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "reasoning_effort")) && cJSON_IsString(v))
        p->think = strcmp(v->valuestring, "none") != 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "enable_thinking")) && cJSON_IsBool(v)) p->think = cJSON_IsTrue(v);
    p->sp.logprobs = p->logprobs ? (p->top_logprobs > 0 ? p->top_logprobs : 1) : 0;
    return NULL;
}

/* OpenAI messages -> the template's conversation (tool call arguments as objects) */
cJSON *gw_params_conversation(const cJSON *body, gw_params_t *p, const char **why, const char **param)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        *param = "messages";
        *why = "'messages' must be a non-empty list";
        return NULL;
    }
    cJSON *conv = cJSON_CreateObject(), *out = cJSON_AddArrayToObject(conv, "messages");
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            *param = "messages", *why = "each message needs a string 'role'";
            cJSON_Delete(conv);
            return NULL;
        }
        const char *r = role->valuestring;
        if (strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "user") && strcmp(r, "assistant") &&
            strcmp(r, "tool")) {
            *param = "messages", *why = "role must be system, developer, user, assistant or tool";
            cJSON_Delete(conv);
            return NULL;
        }
        cJSON *c = cJSON_Duplicate(m, 1);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsArray(content)) {
            cJSON *parts = cJSON_CreateArray();
            const cJSON *part;
            cJSON_ArrayForEach(part, content)
            {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                if (!cJSON_IsString(type)) continue;
                if (!strcmp(type->valuestring, "text")) {
                    cJSON_AddItemToArray(parts, cJSON_Duplicate(part, 1));
                } else if (!strcmp(type->valuestring, "image_url") || !strcmp(type->valuestring, "input_audio")) {
                    /* the template gets a bare {"type": "image"|"audio"}; the bytes go with the request */
                    const int image = !strcmp(type->valuestring, "image_url");
                    const char *w = s_media_part(part, image, p);
                    if (w) {
                        *param = "messages", *why = w;
                        cJSON_Delete(parts), cJSON_Delete(c), cJSON_Delete(conv);
                        return NULL;
                    }
                    cJSON *mp = cJSON_CreateObject();
                    cJSON_AddStringToObject(mp, "type", image ? "image" : "audio");
                    cJSON_AddItemToArray(parts, mp);
                } else if (!strcmp(type->valuestring, "image") || !strcmp(type->valuestring, "audio")) {
                    *param = "messages", *why = "give images as image_url (data: URL) and audio as input_audio parts";
                    cJSON_Delete(parts), cJSON_Delete(c), cJSON_Delete(conv);
                    return NULL;
                }
            }
            cJSON_ReplaceItemInObject(c, "content", parts);
        } else if (content && !cJSON_IsString(content) && !cJSON_IsNull(content)) {
            *param = "messages", *why = "'content' must be a string or a list of parts";
            cJSON_Delete(c), cJSON_Delete(conv);
            return NULL;
        }
        /* arguments arrive as a JSON string; templates want the object */
        cJSON *calls = cJSON_GetObjectItemCaseSensitive(c, "tool_calls"), *call;
        cJSON_ArrayForEach(call, calls)
        {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
            cJSON *args = fn ? cJSON_GetObjectItemCaseSensitive(fn, "arguments") : NULL;
            if (cJSON_IsString(args)) {
                cJSON *parsed = cJSON_Parse(args->valuestring);
                if (parsed) cJSON_ReplaceItemInObject(fn, "arguments", parsed);
            }
        }
        cJSON_AddItemToArray(out, c);
    }
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
    if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools)) cJSON_AddItemToObject(conv, "tools", cJSON_Duplicate(tools, 1));
    cJSON_AddBoolToObject(conv, "add_generation_prompt", 1);
    cJSON_AddBoolToObject(conv, "enable_thinking", p->think);
    cJSON_AddStringToObject(conv, "bos_token", "<bos>");
    return conv;
}
