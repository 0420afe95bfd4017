#ifndef STARLING_CCURL_H
#define STARLING_CCURL_H
#include <curl/curl.h>

/* curl_easy_setopt / curl_easy_getinfo are variadic, which Swift cannot call: one typed wrapper per
 * argument kind. */
static inline CURLcode starling_curl_setopt_long(CURL *c, CURLoption o, long v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode starling_curl_setopt_string(CURL *c, CURLoption o, const char *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode starling_curl_setopt_pointer(CURL *c, CURLoption o, void *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode starling_curl_setopt_slist(CURL *c, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode starling_curl_setopt_writer(CURL *c, size_t (*f)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, f);
}
static inline long starling_curl_response_code(CURL *c) {
    long v = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &v);
    return v;
}
static inline CURLcode starling_curl_setopt_header_writer(CURL *c, size_t (*f)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, f);
}
static inline long long starling_curl_info_off(CURL *c, CURLINFO i) {
    curl_off_t v = 0;
    if (curl_easy_getinfo(c, i, &v) != CURLE_OK) return 0;
    return (long long)v;
}
static inline void *starling_curl_private(CURL *c) {
    char *p = NULL;
    curl_easy_getinfo(c, CURLINFO_PRIVATE, &p);
    return p;
}
/* The next finished transfer of a multi handle: its easy handle and result; NULL when none. */
static inline CURL *starling_curl_multi_done(CURLM *m, CURLcode *result) {
    int left = 0;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE) {
            *result = msg->data.result;
            return msg->easy_handle;
        }
    }
    return NULL;
}
#endif
