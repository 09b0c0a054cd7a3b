/* tok_chat — chat prompts and model output for Gemma 4.
 *
 * Rendering runs the model's own Jinja template (tok_jinja) over a JSON
 * context {"messages": […], "tools": […], "add_generation_prompt": bool,
 * "enable_thinking": bool, "bos_token": "<bos>"}; nothing is added around it.
 *
 * Parsing splits what the model generated into its thought channel, its
 * answer, and its tool calls (Gemma's call:NAME{key:value,…} syntax, strings
 * quoted with <|"|>), returned as JSON:
 *   {"reasoning_content": "…", "content": "…",
 *    "tool_calls": [{"type": "function", "function": {"name": "…", "arguments": {…}}}]}
 * (reasoning_content and tool_calls only when present). */
#ifndef TOK_CHAT_H
#define TOK_CHAT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "g4_err.h"
#include "g4_gguf.h"
#include "tok_jinja.h"

/* The GGUF's tokenizer.chat_template compiled; G4_ERR_UNAVAILABLE if absent. */
tj_template_t *tok_chat_template_gguf(const g4_gguf_t *g, g4_err_t *err);
/* A template file compiled. */
tj_template_t *tok_chat_template_file(const char *path, g4_err_t *err);

/* Renders a conversation; the caller g4_free()s the result. */
char *tok_chat_render(const tj_template_t *t, const cJSON *conversation, size_t *len, g4_err_t *err);

/* Templates that fold OpenAI role:"tool" messages into tool responses
 * themselves carry llama.cpp's marker comment "OpenAI Chat Completions". */
int tok_chat_source_native_tools(const char *src, size_t n);

/* For older templates: a copy of the conversation where every assistant
 * message with tool calls absorbs the role:"tool" messages after it as
 * tool_responses [{name (of the call at the same position), response (the
 * content, JSON-parsed when it parses)}], and the assistant answer right
 * after them becomes its content (its own content is dropped) — what
 * llama.cpp does before rendering such templates. */
cJSON *tok_chat_fold_tool_responses(const cJSON *conversation);

/* Parses generated text (special tokens shown). Returns a new cJSON object. */
cJSON *tok_chat_parse_output(const char *text, size_t len, g4_err_t *err);

/* Gemma's argument syntax -> JSON (NULL + err on malformed input); *end is
 * set to the first byte after the value. */
cJSON *tok_chat_parse_value(const char *s, size_t n, size_t *end, g4_err_t *err);

#endif
