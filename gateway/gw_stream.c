/* gw_stream — a completion as server-sent events ("stream": true): chunks
 * of what the parsed output gained (content, reasoning; tool calls at the
 * end), then one with usage, then "data: [DONE]". The response pulls events
 * from the scheduler as microhttpd asks for bytes. */
#include <string.h>

#include "g4_alloc.h"
#include "gw_internal.h"
#include "tok_chat.h"

static void s_sse(gw_gen_t *g, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    gw_append(&g->out, &g->out_len, "data: ", 6);
    gw_append(&g->out, &g->out_len, s, strlen(s));
    gw_append(&g->out, &g->out_len, "\n\n", 2);
    cJSON_free(s);
    cJSON_Delete(j);
}

static cJSON *s_chunk(gw_gen_t *g, cJSON *delta, const char *finish)
{
    cJSON *ch, *j = gw_gen_object(g, g->chat ? "chat.completion.chunk" : "text_completion", &ch);
    if (g->chat) cJSON_AddItemToObject(ch, "delta", delta);
    else {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(delta, "content");
        cJSON_AddStringToObject(ch, "text", cJSON_IsString(t) ? t->valuestring : "");
        cJSON_Delete(delta);
    }
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    return j;
}

/* Emits what the parsed output gained since the last chunk (content and
 * reasoning grow append-only because markers are whole tokens). */
void gw_stream_progress(gw_gen_t *g, int final)
{
    if (!g->chat) {
        const size_t n = g->text_len - g->sent_content;
        if (n || final) {
            cJSON *d = cJSON_CreateObject();
            char *piece = g4_strndup(g->text ? g->text + g->sent_content : "", n);
            cJSON_AddStringToObject(d, "content", piece ? piece : "");
            g4_free(piece);
            g->sent_content = g->text_len;
            cJSON *c = s_chunk(g, d, final ? g->finish : NULL);
            if (final) cJSON_AddItemToObject(c, "usage", gw_gen_usage(g));
            s_sse(g, c);
        }
        return;
    }
    g4_err_t err;
    cJSON *p = tok_chat_parse_output(g->text ? g->text : "", g->text_len, &err);
    if (!p && !final) return; /* a tool call still being written */
    const cJSON *content = p ? cJSON_GetObjectItemCaseSensitive(p, "content") : NULL;
    const cJSON *reasoning = p ? cJSON_GetObjectItemCaseSensitive(p, "reasoning_content") : NULL;
    const char *cs = cJSON_IsString(content) ? content->valuestring : (p ? "" : (g->text ? g->text : ""));
    const char *rs = cJSON_IsString(reasoning) ? reasoning->valuestring : "";
    /* content is trimmed by the parser: hold back until more text arrives unless final */
    size_t cl = strlen(cs), rl = strlen(rs);
    cJSON *delta = cJSON_CreateObject();
    int any = 0;
    if (!g->sent_role) cJSON_AddStringToObject(delta, "role", "assistant"), g->sent_role = 1, any = 1;
    if (rl > g->sent_reasoning) {
        cJSON_AddStringToObject(delta, "reasoning_content", rs + g->sent_reasoning);
        g->sent_reasoning = rl, any = 1;
    }
    if (cl > g->sent_content && !strncmp(cs, cs, g->sent_content)) {
        cJSON_AddStringToObject(delta, "content", cs + g->sent_content);
        g->sent_content = cl, any = 1;
    }
    const char *finish = NULL;
    if (final) {
        cJSON *msg = gw_gen_chat_message(g, &finish);
        cJSON *calls = cJSON_DetachItemFromObject(msg, "tool_calls");
        if (calls) {
            int k = 0;
            cJSON *c;
            cJSON_ArrayForEach(c, calls) cJSON_AddNumberToObject(c, "index", k++);
            cJSON_AddItemToObject(delta, "tool_calls", calls), any = 1;
        }
        cJSON_Delete(msg);
        if (!finish) finish = g->finish;
    }
    if (any || final) {
        cJSON *c = s_chunk(g, delta, final ? finish : NULL);
        if (final) cJSON_AddItemToObject(c, "usage", gw_gen_usage(g));
        s_sse(g, c);
    } else {
        cJSON_Delete(delta);
    }
    cJSON_Delete(p);
}

static ssize_t s_stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    gw_gen_t *g = cls;
    while (g->out_off == g->out_len) {
        g->out_len = g->out_off = 0;
        if (g->sent_done_marker) return MHD_CONTENT_READER_END_OF_STREAM;
        if (g->done || g->failed) {
            gw_append(&g->out, &g->out_len, "data: [DONE]\n\n", 14);
            g->sent_done_marker = 1;
            break;
        }
        const int r = gw_gen_next(g);
        if (r < 0) {
            g->failed = 1;
            cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
            cJSON_AddStringToObject(e, "message", g->req.err.msg);
            cJSON_AddStringToObject(e, "type", g->req.err.code == G4_ERR_UNAVAILABLE ? "service_unavailable" : "server_error");
            s_sse(g, j);
            atomic_fetch_add(&g->sv->m.n_req_err, 1);
        } else if (r == 1) {
            gw_stream_progress(g, 0);
        } else if (r == 2) {
            gw_stream_progress(g, 1);
            gw_metrics_done(&g->sv->m, g);
        }
    }
    size_t n = g->out_len - g->out_off < max ? g->out_len - g->out_off : max;
    memcpy(buf, g->out + g->out_off, n);
    g->out_off += n;
    return (ssize_t)n;
}

static void s_stream_free(void *cls) { gw_gen_end(cls); }

struct MHD_Response *gw_stream_response(gw_gen_t *g)
{
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, s_stream_reader, g, s_stream_free);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    return r;
}
