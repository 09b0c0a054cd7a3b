/* tok_chat — see tok_chat.h. */
#include "tok_chat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"

tj_template_t *tok_chat_template_gguf(const g4_gguf_t *g, g4_err_t *err)
{
    const char *s;
    uint64_t n;
    g4_err_t e2;
    if (g4_gguf_get_str(g, "tokenizer.chat_template", &s, &n, &e2) != 0) {
        g4_err_set(err, G4_ERR_UNAVAILABLE, "%s: no tokenizer.chat_template (give one with --template)",
                   g4_gguf_path(g));
        return NULL;
    }
    return tj_parse(s, (size_t)n, err);
}

tj_template_t *tok_chat_template_file(const char *path, g4_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        g4_err_set(err, G4_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = g4_malloc(cap);
    for (;;) {
        if (!buf) break;
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        if (cap >= (64u << 20)) {
            g4_free(buf);
            fclose(f);
            g4_err_set(err, G4_ERR_RANGE, "%s: template larger than 64 MiB", path);
            return NULL;
        }
        char *nb = g4_realloc(buf, cap * 2);
        if (!nb) g4_free(buf);
        buf = nb, cap *= 2;
    }
    fclose(f);
    if (!buf) {
        g4_err_set(err, G4_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    tj_template_t *t = tj_parse(buf, n, err);
    if (!t) {
        char m[G4_ERR_MSG_MAX];
        snprintf(m, sizeof m, "%s", err->msg);
        g4_err_set(err, err->code, "%s: %s", path, m);
    }
    g4_free(buf);
    return t;
}

char *tok_chat_render(const tj_template_t *t, const cJSON *conversation, size_t *len, g4_err_t *err)
{
    if (!cJSON_IsObject(conversation)) {
        g4_err_set(err, G4_ERR_FORMAT, "conversation: expected a JSON object with \"messages\"");
        return NULL;
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(conversation, "messages");
    if (!cJSON_IsArray(m)) {
        g4_err_set(err, G4_ERR_FORMAT, "conversation: \"messages\" must be a list");
        return NULL;
    }
    return tj_render(t, conversation, len, err);
}

int tok_chat_source_native_tools(const char *src, size_t n)
{
    static const char mark[] = "OpenAI Chat Completions";
    const size_t m = sizeof mark - 1;
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp(src + i, mark, m)) return 1;
    return 0;
}

static int s_role_is(const cJSON *m, const char *role)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
    return cJSON_IsString(r) && !strcmp(r->valuestring, role);
}

static int s_has_calls(const cJSON *m)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    return cJSON_IsArray(c) && cJSON_GetArraySize(c) > 0;
}

cJSON *tok_chat_fold_tool_responses(const cJSON *conversation)
{
    cJSON *out = cJSON_Duplicate(conversation, 1);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(conversation, "messages");
    if (!out || !cJSON_IsArray(msgs)) return out;
    cJSON *folded = cJSON_CreateArray();
    const int n = cJSON_GetArraySize(msgs);
    for (int i = 0; i < n;) {
        const cJSON *m = cJSON_GetArrayItem(msgs, i);
        const cJSON *next = i + 1 < n ? cJSON_GetArrayItem(msgs, i + 1) : NULL;
        if (!(s_role_is(m, "assistant") && s_has_calls(m) && next && s_role_is(next, "tool"))) {
            cJSON_AddItemToArray(folded, cJSON_Duplicate(m, 1));
            i++;
            continue;
        }
        cJSON *nm = cJSON_Duplicate(m, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(nm, "content");
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        cJSON *resp = cJSON_CreateArray();
        int j = i + 1, k = 0;
        for (; j < n && s_role_is(cJSON_GetArrayItem(msgs, j), "tool"); j++, k++) {
            const cJSON *t = cJSON_GetArrayItem(msgs, j);
            const cJSON *call = cJSON_GetArrayItem(calls, k);
            const cJSON *fn = call ? cJSON_GetObjectItemCaseSensitive(call, "function") : NULL;
            const cJSON *name = fn ? cJSON_GetObjectItemCaseSensitive(fn, "name") : NULL;
            if (!cJSON_IsString(name)) name = cJSON_GetObjectItemCaseSensitive(t, "name");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "name", cJSON_IsString(name) ? name->valuestring : "unknown");
            cJSON *parsed = cJSON_IsString(content) ? cJSON_Parse(content->valuestring) : NULL;
            cJSON_AddItemToObject(r, "response", parsed ? parsed : content ? cJSON_Duplicate(content, 1) : cJSON_CreateNull());
            cJSON_AddItemToArray(resp, r);
        }
        cJSON_AddItemToObject(nm, "tool_responses", resp);
        const cJSON *after = j < n ? cJSON_GetArrayItem(msgs, j) : NULL;
        if (after && s_role_is(after, "assistant") && !s_has_calls(after)) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(after, "content");
            if (c) cJSON_AddItemToObject(nm, "content", cJSON_Duplicate(c, 1));
            j++;
        }
        cJSON_AddItemToArray(folded, nm);
        i = j;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(out, "messages", folded);
    return out;
}

/* ---- output parsing --------------------------------------------------------- */

#define Q "<|\"|>"
#define QN 5

static int s_at(const char *s, size_t n, size_t i, const char *lit)
{
    size_t l = strlen(lit);
    return i + l <= n && memcmp(s + i, lit, l) == 0;
}

static const char *s_find(const char *s, size_t n, size_t from, const char *lit)
{
    size_t l = strlen(lit);
    for (size_t i = from; i + l <= n; i++)
        if (memcmp(s + i, lit, l) == 0) return s + i;
    return NULL;
}

static void s_ws(const char *s, size_t n, size_t *i)
{
    while (*i < n && (s[*i] == ' ' || s[*i] == '\n' || s[*i] == '\t' || s[*i] == '\r')) (*i)++;
}

static cJSON *s_value(const char *s, size_t n, size_t *i, int depth, g4_err_t *err);

static char *s_key(const char *s, size_t n, size_t *i, g4_err_t *err)
{
    s_ws(s, n, i);
    size_t a, b;
    if (s_at(s, n, *i, Q)) {
        const char *e = s_find(s, n, *i + QN, Q);
        if (!e) goto bad;
        a = *i + QN, b = (size_t)(e - s);
        *i = b + QN;
    } else if (*i < n && s[*i] == '"') {
        a = ++*i;
        while (*i < n && s[*i] != '"') (*i)++;
        if (*i >= n) goto bad;
        b = (*i)++;
    } else {
        a = *i;
        while (*i < n && s[*i] != ':' && s[*i] != '}' && s[*i] != ',') (*i)++;
        b = *i;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\n')) b--;
        if (b == a) goto bad;
    }
    return g4_strndup(s + a, b - a);
bad:
    g4_err_set(err, G4_ERR_FORMAT, "tool call arguments: bad key at byte %zu", *i);
    return NULL;
}

static cJSON *s_value(const char *s, size_t n, size_t *i, int depth, g4_err_t *err)
{
    if (depth > 64) {
        g4_err_set(err, G4_ERR_RANGE, "tool call arguments nested too deeply");
        return NULL;
    }
    s_ws(s, n, i);
    if (*i >= n) {
        g4_err_set(err, G4_ERR_FORMAT, "tool call arguments: value expected at end");
        return NULL;
    }
    if (s_at(s, n, *i, Q)) {
        const char *e = s_find(s, n, *i + QN, Q);
        if (!e) {
            g4_err_set(err, G4_ERR_FORMAT, "tool call arguments: unterminated string at byte %zu", *i);
            return NULL;
        }
        char *str = g4_strndup(s + *i + QN, (size_t)(e - s) - *i - QN);
        cJSON *v = str ? cJSON_CreateString(str) : NULL;
        g4_free(str);
        *i = (size_t)(e - s) + QN;
        return v;
    }
    char c = s[*i];
    if (c == '{' || c == '[') {
        int obj = c == '{';
        cJSON *v = obj ? cJSON_CreateObject() : cJSON_CreateArray();
        (*i)++;
        s_ws(s, n, i);
        if (*i < n && s[*i] == (obj ? '}' : ']')) {
            (*i)++;
            return v;
        }
        for (;;) {
            char *key = NULL;
            if (obj) {
                key = s_key(s, n, i, err);
                s_ws(s, n, i);
                if (!key || *i >= n || s[*i] != ':') {
                    if (key) g4_err_set(err, G4_ERR_FORMAT, "tool call arguments: ':' expected at byte %zu", *i);
                    g4_free(key);
                    cJSON_Delete(v);
                    return NULL;
                }
                (*i)++;
            }
            cJSON *item = s_value(s, n, i, depth + 1, err);
            if (!item) {
                g4_free(key);
                cJSON_Delete(v);
                return NULL;
            }
            if (obj) cJSON_AddItemToObject(v, key, item);
            else cJSON_AddItemToArray(v, item);
            g4_free(key);
            s_ws(s, n, i);
            if (*i < n && s[*i] == ',') {
                (*i)++;
                continue;
            }
            if (*i < n && s[*i] == (obj ? '}' : ']')) {
                (*i)++;
                return v;
            }
            g4_err_set(err, G4_ERR_FORMAT, "tool call arguments: '%c' expected at byte %zu", obj ? '}' : ']', *i);
            cJSON_Delete(v);
            return NULL;
        }
    }
    /* bare word: number, true/false/null, or unquoted text up to a delimiter */
    size_t a = *i;
    while (*i < n && s[*i] != ',' && s[*i] != '}' && s[*i] != ']') (*i)++;
    size_t b = *i;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\n')) b--;
    char *w = g4_strndup(s + a, b - a);
    if (!w) return NULL;
    cJSON *v;
    char *end;
    double d = strtod(w, &end);
    if (!strcmp(w, "true")) v = cJSON_CreateTrue();
    else if (!strcmp(w, "false")) v = cJSON_CreateFalse();
    else if (!strcmp(w, "null") || !strcmp(w, "None")) v = cJSON_CreateNull();
    else if (*w && !*end) v = cJSON_CreateNumber(d);
    else v = cJSON_CreateString(w);
    g4_free(w);
    return v;
}

cJSON *tok_chat_parse_value(const char *s, size_t n, size_t *end, g4_err_t *err)
{
    size_t i = 0;
    cJSON *v = s_value(s, n, &i, 0, err);
    if (end) *end = i;
    return v;
}

static void s_append(char **buf, size_t *len, const char *s, size_t n)
{
    char *nb = g4_realloc(*buf, *len + n + 1);
    if (!nb) return;
    memcpy(nb + *len, s, n);
    *len += n;
    nb[*len] = 0;
    *buf = nb;
}

static void s_trim(const char **s, size_t *n)
{
    while (*n && strchr(" \t\r\n", (*s)[0])) (*s)++, (*n)--;
    while (*n && strchr(" \t\r\n", (*s)[*n - 1])) (*n)--;
}

cJSON *tok_chat_parse_output(const char *text, size_t len, g4_err_t *err)
{
    char *content = NULL, *thought = NULL;
    size_t clen = 0, tlen = 0;
    cJSON *calls = cJSON_CreateArray();
    size_t i = 0;
    if (s_at(text, len, 0, "<|turn>model\n")) i = 13;
    while (i < len) {
        if (s_at(text, len, i, "<|channel>")) {
            size_t a = i + 10;
            const char *e = s_find(text, len, a, "<channel|>");
            size_t b = e ? (size_t)(e - text) : len;
            /* the channel name ("thought") and its newline are not part of the thought */
            if (s_at(text, len, a, "thought")) a += 7;
            if (a < b && text[a] == '\n') a++;
            if (tlen) s_append(&thought, &tlen, "\n", 1);
            s_append(&thought, &tlen, text + a, b - a);
            i = e ? b + 10 : len;
            continue;
        }
        if (s_at(text, len, i, "<|tool_call>")) {
            size_t a = i + 12;
            const char *e = s_find(text, len, a, "<tool_call|>");
            size_t b = e ? (size_t)(e - text) : len;
            if (s_at(text, len, a, "call:")) a += 5;
            size_t nm = a;
            while (nm < b && text[nm] != '{') nm++;
            cJSON *call = cJSON_CreateObject(), *fn = cJSON_CreateObject();
            char *name = g4_strndup(text + a, nm - a);
            cJSON_AddStringToObject(call, "type", "function");
            cJSON_AddStringToObject(fn, "name", name ? name : "");
            g4_free(name);
            cJSON *args = NULL;
            if (nm < b) {
                size_t end;
                args = tok_chat_parse_value(text + nm, b - nm, &end, err);
                if (!args) {
                    cJSON_Delete(call), cJSON_Delete(fn), cJSON_Delete(calls);
                    g4_free(content), g4_free(thought);
                    return NULL;
                }
            } else {
                args = cJSON_CreateObject();
            }
            cJSON_AddItemToObject(fn, "arguments", args);
            cJSON_AddItemToObject(call, "function", fn);
            cJSON_AddItemToArray(calls, call);
            i = e ? b + 12 : len;
            continue;
        }
        /* end-of-turn markers end the answer */
        if (s_at(text, len, i, "<turn|>") || s_at(text, len, i, "<eos>")) break;
        /* plain text up to the next marker */
        size_t j = i + 1;
        while (j < len && !s_at(text, len, j, "<|channel>") && !s_at(text, len, j, "<|tool_call>") &&
               !s_at(text, len, j, "<turn|>") && !s_at(text, len, j, "<eos>"))
            j++;
        s_append(&content, &clen, text + i, j - i);
        i = j;
    }
    cJSON *out = cJSON_CreateObject();
    const char *c = content ? content : "";
    size_t cn = clen;
    s_trim(&c, &cn);
    char *ct = g4_strndup(c, cn);
    cJSON_AddStringToObject(out, "content", ct ? ct : "");
    g4_free(ct);
    if (thought) {
        const char *t = thought;
        size_t tn = tlen;
        s_trim(&t, &tn);
        char *tt = g4_strndup(t, tn);
        cJSON_AddStringToObject(out, "reasoning_content", tt ? tt : "");
        g4_free(tt);
    }
    if (cJSON_GetArraySize(calls)) cJSON_AddItemToObject(out, "tool_calls", calls);
    else cJSON_Delete(calls);
    g4_free(content), g4_free(thought);
    return out;
}
