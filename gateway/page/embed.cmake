# cmake -DIN=index.html -DOUT=gw_page_data.c -P embed.cmake
# The chat page as a C array (gw_page.c serves it): the binary needs no files
# beside it, and the page no network.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUT}" "/* generated from gateway/page/index.html by embed.cmake */\n#include <stddef.h>\nconst unsigned char gw_page_html[] = {${bytes}};\nconst size_t gw_page_html_len = ${n};\n")
