/* HTTP/1.1 message heads and chunked bodies (RFC 9110, RFC 9112), parsed in
 * place. This is the code that reads the most hostile bytes sluice sees, so
 * it is strict wherever two implementations could disagree about where a
 * message ends (request smuggling, response splitting), and it never reports
 * success for a message whose framing it did not fully understand.
 *
 * Zero-copy: every field is a slice (pointer + length) into the caller's
 * buffer, valid as long as those bytes stay where they are. Nothing is
 * allocated; the caller lends an array of header slots.
 *
 * Incremental use: call the parser again with the same buffer, grown at its
 * end, each time bytes arrive. A call that returns 0 leaves a small resume
 * point in the struct, so the next call only looks at the new bytes until the
 * head is complete and then parses the whole head once more, from the start
 * (the buffer may have moved in between: only offsets are kept). So a head
 * that arrives in one read is parsed in one pass, one that trickles in costs
 * about two, and a client sending a byte at a time cannot make us quadratic.
 * "0" means no check has failed: every complete line is checked in full as
 * soon as it is complete, the incomplete last line as far as it goes when
 * it is first seen and whenever a CR or LF arrives, and every new byte for
 * control bytes (NUL, bare CR, ...). A bad byte in the middle of a line that
 * is still incomplete may so be reported only once its CR arrives or a limit
 * is reached; the final answer never depends on how the bytes arrived.
 *
 * Decisions where the RFCs leave a choice (all chosen for strictness):
 *  - Line endings are CRLF only. A bare LF or a bare CR anywhere in a head is
 *    an error (400), though RFC 9112 2.2 lets a recipient accept bare LF.
 *  - Content-Length must be one field line holding 1*DIGIT (at most 2^63-1).
 *    A list ("5, 5"), a repeated field line (even with the same value), a
 *    sign, spaces inside or an empty value are all errors.
 *  - Transfer-Encoding (its field lines form one list): no empty elements,
 *    no parameters, "chunked" at most once. In a request: final coding
 *    not chunked → 400, a coding other than gzip/deflate/compress (x-gzip,
 *    x-compress) before chunked → 501, with Content-Length → 400, in
 *    HTTP/1.0 → 400. In a response: final coding not chunked → the body is
 *    close-delimited (RFC 9112 6.3), but chunked twice, Content-Length with
 *    it, or HTTP/1.0 with it → malformed (the proxy answers 502).
 *  - One empty line (CRLF) before a request line is skipped, as RFC 9112 2.2
 *    recommends; more than one, or any before a status line, is an error.
 *  - obs-fold, whitespace before the colon, control bytes (NUL, DEL, ...) in
 *    a name or value, an empty field name → error.
 *  - Request-target: printable ASCII only, no '#', no userinfo; origin-form
 *    must start with "/"; absolute-form only for the http and https schemes
 *    with a non-empty host; authority-form (host:port) only and always for
 *    CONNECT; "*" only for OPTIONS. Percent-encoding is passed through as it
 *    is, unchecked: normalising paths is the router's business.
 *  - Host (and an absolute-form or authority-form authority) must be a valid
 *    uri-host with an optional port of 1 to 5 digits <= 65535; an empty Host
 *    is allowed (RFC 9110 7.2). HTTP/1.1 without Host, or two Host field
 *    lines → 400.
 *  - Versions: HTTP/1.0 and HTTP/1.1. Any other well-formed "HTTP/d.d" in a
 *    request → 505; anything else malformed → 400. A response must be
 *    HTTP/1.0 or HTTP/1.1 with a status code 100..599.
 *  - CONNECT requests must not have a body (Transfer-Encoding or a
 *    Content-Length other than 0 → 400).
 *  - Chunked: chunk-size is 1*HEXDIG (leading zeros fine) up to 2^63-1; the
 *    whitespace (BWS) RFC 9112 allows before ';' and around '=' in chunk
 *    extensions is accepted, whitespace anywhere else in the size line
 *    (before the size, before its CRLF) is not; trailer fields follow the
 *    header field rules.
 *
 * Thread safety: none needed; every call works only on its arguments. */
#ifndef SLUICE_PROTO_HTTP1_H
#define SLUICE_PROTO_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A run of bytes inside the caller's buffer. p is NULL only for a field that
 * is absent (say, query when the target has no '?'). */
struct h1_slice {
    const char *p;
    uint32_t len;
};

struct h1_header {
    struct h1_slice name;   /* a token, as received (any case) */
    struct h1_slice value;  /* leading and trailing SP/HTAB removed */
};

/* Bounds on what one head may cost us. Body size (413) and slow clients (408)
 * are the proxy's to enforce. */
struct h1_limits {
    uint32_t max_request_line;  /* request line without its CRLF; longer → 414 */
    uint32_t max_head;          /* whole head incl. the final CRLF; larger → 431 */
    uint32_t max_headers;       /* field lines; more → 431 (also capped by slots) */
};

#define H1_LIMITS_DEFAULT { .max_request_line = 8192, .max_head = 65536, .max_headers = 100 }

/* The limits used when a parser is given lim == NULL. */
extern const struct h1_limits h1_limits_default;

/* What the parsers return besides a head length: 0 for "need more bytes" and
 * the negated HTTP status to answer with. A response parser only ever gives
 * H1_BAD_RESPONSE, to which the proxy answers 502. */
enum h1_result {
    H1_NEED_MORE = 0,
    H1_BAD_RESPONSE = -1,
    H1_BAD_REQUEST = -400,
    H1_URI_TOO_LONG = -414,
    H1_HEADERS_TOO_LARGE = -431,
    H1_NOT_IMPLEMENTED = -501,       /* a transfer coding we do not know */
    H1_VERSION_NOT_SUPPORTED = -505,
};

enum h1_method {
    H1_GET, H1_HEAD, H1_POST, H1_PUT, H1_DELETE, H1_CONNECT, H1_OPTIONS,
    H1_TRACE, H1_PATCH,
    H1_OTHER,   /* any other token: valid syntax, semantics are the origin's */
};

enum h1_target_form {
    H1_TARGET_ORIGIN,     /* "/path?query" */
    H1_TARGET_ABSOLUTE,   /* "http://host/path?query": host comes from here, and
                             a proxy must send a Host built from it (RFC 9112
                             3.2.2), not forward the received one */
    H1_TARGET_AUTHORITY,  /* "host:port", CONNECT only */
    H1_TARGET_ASTERISK,   /* "*", OPTIONS only */
};

enum h1_body_kind {
    H1_BODY_NONE,      /* no body; content_length is 0 ("Content-Length: 0" too) */
    H1_BODY_LENGTH,    /* content_length (> 0) bytes follow the head */
    H1_BODY_CHUNKED,   /* chunked coding: feed the bytes to h1_chunked_scan */
    H1_BODY_CLOSE,     /* responses only: the body runs until the server closes */
};

/* The parser's resume point between calls (see "Incremental use"). Private:
 * zeroed by h1_*_init and after every call that does not return 0. */
struct h1_scan {
    uint32_t line;    /* offset of the first line not yet checked */
    uint32_t seen;    /* bytes already searched for a LF; 0 = start afresh */
    uint32_t n;       /* header lines checked so far */
    uint8_t phase;    /* 0: start line not yet complete; 1: in the fields */
    uint8_t blank;    /* request: empty lines skipped before the request line */
};

/* One request head. Owner: the connection that parses into it. */
struct h1_request {
    struct h1_slice method;   /* as received; method_id classifies it */
    struct h1_slice target;   /* the whole request-target */
    struct h1_slice path;     /* origin/absolute form: up to '?' (empty for
                                 "http://h" and "http://h?q", meaning "/");
                                 asterisk form: "*"; authority form: empty */
    struct h1_slice query;    /* after '?', without it; p == NULL when no '?' */
    struct h1_slice host;     /* absolute/authority form: the authority; else
                                 the Host value (p == NULL when absent, 1.0) */
    enum h1_method method_id;
    enum h1_target_form form;
    int minor;                /* 0 or 1: HTTP/1.minor */
    enum h1_body_kind body;   /* NONE, LENGTH or CHUNKED, never CLOSE */
    uint64_t content_length;
    bool keep_alive;          /* 1.1: unless "Connection: close";
                                 1.0: only with "Connection: keep-alive" */
    bool upgrade;             /* 1.1, Connection has "upgrade" and an Upgrade
                                 field is present (WebSocket), not offering h2c */
    bool expect_continue;     /* 1.1 and "Expect: 100-continue" */
    struct h1_header *headers;  /* caller's slots, in order of arrival */
    uint32_t nheaders;
    uint32_t max_headers;     /* number of slots */
    uint32_t head_len;        /* bytes of the head incl. the final CRLF */
    const char *error;        /* why the last call failed, for the log (static) */
    struct h1_scan scan;      /* private */
};

/* One response head. Owner: the upstream connection that parses into it. */
struct h1_response {
    int status;               /* 100..599 */
    int minor;
    struct h1_slice reason;   /* may be empty */
    enum h1_body_kind body;
    uint64_t content_length;
    bool keep_alive;          /* false whenever body is H1_BODY_CLOSE */
    bool tunnel;              /* 2xx to CONNECT, or 101: after this head both
                                 directions carry opaque bytes. For 101 the proxy
                                 must check that the request asked to upgrade. */
    struct h1_header *headers;
    uint32_t nheaders;
    uint32_t max_headers;
    uint32_t head_len;
    const char *error;
    struct h1_scan scan;      /* private */
};

/* Zero *req (or *resp) and lend it slots. Call once per message; after a
 * call returned non-zero the struct is ready for the next message anyway,
 * but a connection that throws away a half-received head must init again. */
void h1_request_init(struct h1_request *req, struct h1_header *slots, uint32_t nslots);
void h1_response_init(struct h1_response *resp, struct h1_header *slots, uint32_t nslots);

/* Parse the request head at buf[0..len). Returns head_len (> 0) when a
 * complete valid head is there (bytes after it are body or the next request
 * and are not looked at); H1_NEED_MORE (0) when the bytes so far are a valid
 * beginning within the limits; or a negative enum h1_result, with req->error
 * saying why. Between calls that return 0 the caller may only append to the
 * buffer (it may move). lim NULL: h1_limits_default. */
int h1_parse_request(const char *buf, size_t len, const struct h1_limits *lim,
                     struct h1_request *req);

/* Parse the response head at buf[0..len) to a request with request_method
 * (HEAD: no body; CONNECT with 2xx: tunnel). 1xx, 204 and 304 have no body;
 * after a 1xx other than 101 the real response follows: init and parse again
 * after head_len. Returns head_len, 0, or H1_BAD_RESPONSE (resp->error says
 * why; the proxy answers 502). max_request_line is not used. */
int h1_parse_response(const char *buf, size_t len, enum h1_method request_method,
                      const struct h1_limits *lim, struct h1_response *resp);

/* Chunked body scanning, for a proxy that forwards the chunked framing as it
 * is but must know where the message ends. Chunk extensions are checked
 * against the RFC grammar and skipped; trailer fields are checked like header
 * fields, and Content-Length, Transfer-Encoding and Host are refused there
 * (a recipient that merges trailers into the head must not meet them). */
#define H1_CHUNK_LINE_MAX 4096    /* chunk-size line with extensions and CRLF */
#define H1_TRAILERS_MAX   16384   /* trailer section incl. its final CRLF */

struct h1_chunked {
    uint64_t remain;      /* data bytes left in the current chunk */
    uint64_t size;        /* size of the current chunk */
    uint64_t data;        /* data bytes of all chunks so far (a body's size) */
    uint32_t line_len;    /* bytes of the current chunk-size line so far */
    uint32_t trailer_len; /* bytes of the trailer section so far */
    uint8_t state;
    uint8_t name_len;     /* trailer name bytes kept, lowercased (for checks) */
    char name[18];
    const char *error;    /* why it failed, for the log (static) */
};

void h1_chunked_init(struct h1_chunked *c);

/* Consume up to len bytes of a chunked body. Returns the bytes consumed, all
 * of them part of this message; sets *done once the last chunk and the
 * trailer section have ended, and then the bytes after the returned count
 * belong to the next message (until then everything given is consumed).
 * Returns -1 if the framing is malformed; the state stays failed. Accepts
 * input split at any byte. */
ssize_t h1_chunked_scan(struct h1_chunked *c, const char *p, size_t len, bool *done);

/* The same scan for a recipient that needs the data itself (an HTTP/2
 * client gets DATA frames, not chunks): each call consumes chunk framing,
 * or data, or trailer section bytes, never two of them. Returns the bytes
 * consumed (-1: malformed, as above); *data is the chunk data among them
 * (len 0 otherwise); *trailer says they were (part of) the trailer section,
 * its fields and final CRLF, as received. Call again until it consumes
 * nothing or sets *done. */
ssize_t h1_chunked_decode(struct h1_chunked *c, const char *p, size_t len, struct h1_slice *data,
                          bool *trailer, bool *done);

/* Helpers for the proxy. */

/* First header named name (case-insensitive), or NULL. */
const struct h1_header *h1_find_header(const struct h1_header *h, uint32_t n, const char *name);

/* Does s equal the NUL-terminated lit, ignoring ASCII case? */
bool h1_slice_eq_ci(struct h1_slice s, const char *lit);

/* Does the comma-separated list in value have an element equal to token
 * (case-insensitive, surrounding SP/HTAB ignored)? */
bool h1_has_token(struct h1_slice value, const char *token);

/* Is p[0..len) a uri-host with an optional ":port"? need_port: the port is
 * required (CONNECT's authority-form). Empty is invalid. */
bool h1_authority_valid(const char *p, uint32_t len, bool need_port);

/* Split a host[:port] authority (as in req->host) into the host, brackets
 * kept for IPv6 literals, and the port (-1 when absent). */
void h1_split_host(struct h1_slice authority, struct h1_slice *host, int *port);

#endif
