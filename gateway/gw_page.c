/* gw_page — GET /: the chat page (gateway/page/index.html, compiled into the
 * binary as gw_page_html by page/embed.cmake), like llama-server's web UI. */
#include "gw_internal.h"

extern const unsigned char gw_page_html[];
extern const size_t gw_page_html_len;

enum MHD_Result gw_page_reply(struct MHD_Connection *c)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(gw_page_html_len, (void *)gw_page_html, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    /* the page only talks to this server */
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                            "img-src 'self' data: blob:; media-src 'self' data: blob:");
    const enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}
