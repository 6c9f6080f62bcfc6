/* HTTP Basic authentication at the edge (route.h has the contract).
 *
 * Reading the header and looking the user up happen on the worker; the
 * slow part, hashing the password with the user's crypt(3) setting (bcrypt
 * and friends take milliseconds on purpose), runs on a helper thread
 * (core/offload.c). A worker remembers credentials that passed, keyed by a
 * keyed hash of the header's value, for AUTH_CACHE_TTL_MS, so a browser's
 * next requests cost one hash lookup and no crypt at all. Failures are
 * never remembered. */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <xxhash.h>

#include "route/internal.h"

#define AUTH_CACHE_SLOTS 1024            /* per worker; a power of two */
#define AUTH_CACHE_TTL_MS (5 * 60 * 1000)

/* Good for conf from from_ms to until_ms, on the clock its caller uses
 * for that block (Basic: monotonic; JWT: the wall clock, as exp is). */
struct auth_cache_slot {
    XXH128_hash_t key;
    const struct conf_auth *conf;
    int64_t from_ms, until_ms;
};

struct auth_cache {
    uint64_t seed;                       /* random per worker: keys cannot be aimed at */
    struct auth_cache_slot slot[AUTH_CACHE_SLOTS];
};

struct auth_cache *auth_cache_new(void)
{
    struct auth_cache *c = calloc(1, sizeof(*c));

    if (c && getrandom(&c->seed, sizeof(c->seed), 0) != sizeof(c->seed))
        c->seed = (uint64_t)(uintptr_t)c * 0x9E3779B97F4A7C15ull;
    return c;
}

void auth_cache_free(struct auth_cache *c)
{
    free(c);
}

XXH128_hash_t auth_cache_key(const struct auth_cache *c, const void *p, size_t len)
{
    return XXH3_128bits_withSeed(p, len, c ? c->seed : 0);
}

static struct auth_cache_slot *cache_slot(struct auth_cache *c, const struct conf_auth *a,
                                          XXH128_hash_t key)
{
    return &c->slot[(key.low64 ^ (uintptr_t)a) & (AUTH_CACHE_SLOTS - 1)];
}

bool auth_cache_hit(struct auth_cache *c, const struct conf_auth *a, XXH128_hash_t key,
                    int64_t now_ms)
{
    const struct auth_cache_slot *slot;

    if (!c)
        return false;
    slot = cache_slot(c, a, key);
    return slot->conf == a && XXH128_isEqual(slot->key, key) && now_ms >= slot->from_ms &&
           now_ms <= slot->until_ms;
}

void auth_cache_store(struct auth_cache *c, const struct conf_auth *a, XXH128_hash_t key,
                      int64_t from_ms, int64_t until_ms)
{
    struct auth_cache_slot *slot;

    if (!c)
        return;
    slot = cache_slot(c, a, key);
    slot->key = key;
    slot->conf = a;
    slot->from_ms = from_ms;
    slot->until_ms = until_ms;
}

int route_b64_digit(unsigned char ch, bool url)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == (url ? '-' : '+'))
        return 62;
    if (ch == (url ? '_' : '/'))
        return 63;
    return -1;
}

int auth_base64_decode(const char *in, size_t len, char *out, size_t size)
{
    size_t n = 0;

    if (len == 0 || len % 4)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;

        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad || (v[k] = route_b64_digit((unsigned char)in[i + k], false)) < 0) {
                return -1;               /* a bad byte, or data after '=' */
            }
        }
        if (n + 3 - (size_t)pad > size)
            return -1;
        out[n++] = (char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2)
            out[n++] = (char)((v[1] & 15) << 4 | v[2] >> 2);
        if (pad < 1)
            out[n++] = (char)((v[2] & 3) << 6 | v[3]);
    }
    return (int)n;
}

const struct h1_header *route_auth_field(const struct h1_request *req, bool *twice)
{
    const struct h1_header *h = h1_find_header(req->headers, req->nheaders, "authorization");
    uint32_t rest = h ? req->nheaders - (uint32_t)(h - req->headers) - 1 : 0;

    *twice = h && h1_find_header(h + 1, rest, "authorization");
    return h;
}

static int user_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct conf_user *)elem)->name);
}

enum auth_result auth_begin(struct auth_cache *cache, const struct conf_auth *a,
                            const struct h1_request *req, uint64_t now_ms, struct auth_request *r)
{
    char creds[sizeof(r->user) + sizeof(r->password)];
    const struct h1_header *h;
    const struct conf_user *u;
    const char *v, *colon;
    size_t len;
    bool twice;
    int n;

    memset(r, 0, sizeof(*r));
    r->conf = a;
    h = route_auth_field(req, &twice);
    if (!h || twice || !h->value.p)
        return AUTH_DENIED;
    v = h->value.p;
    len = h->value.len;
    if (len < 6 || strncasecmp(v, "basic ", 6) != 0)
        return AUTH_DENIED;
    v += 6;
    len -= 6;
    while (len && *v == ' ') {
        v++;
        len--;
    }
    r->key = auth_cache_key(cache, v, len);
    if (auth_cache_hit(cache, a, r->key, (int64_t)now_ms))
        return AUTH_OK;
    n = auth_base64_decode(v, len, creds, sizeof(creds) - 1);
    if (n <= 0)
        return AUTH_DENIED;
    creds[n] = '\0';
    if (strlen(creds) != (size_t)n || !(colon = strchr(creds, ':')) ||
        (size_t)(colon - creds) >= sizeof(r->user) || strlen(colon + 1) >= sizeof(r->password))
        return AUTH_DENIED;
    memcpy(r->user, creds, (size_t)(colon - creds));
    strcpy(r->password, colon + 1);
    explicit_bzero(creds, sizeof(creds));
    u = bsearch(r->user, a->users, a->nusers, sizeof(*a->users), user_cmp);
    /* An unknown user is hashed too, against a real user's setting, so
     * that the time of the answer does not tell which names exist. */
    r->known = u != NULL;
    r->hash = u ? u->hash : a->users[0].hash;
    return AUTH_VERIFY;
}

bool auth_verify(const struct auth_request *r)
{
    static __thread struct crypt_data data;
    const char *out;
    size_t n = strlen(r->hash);
    unsigned char diff = 0;

    memset(&data, 0, sizeof(data));
    out = crypt_rn(r->password, r->hash, &data, sizeof(data));
    if (!out || out[0] == '*' || strlen(out) != n)
        return false;
    for (size_t i = 0; i < n; i++)           /* constant time */
        diff |= (unsigned char)(out[i] ^ r->hash[i]);
    return diff == 0 && r->known;
}

void auth_cache_put(struct auth_cache *cache, const struct auth_request *r, uint64_t now_ms)
{
    /* until is inclusive: now + TTL - 1 keeps the 5 minutes exact. */
    auth_cache_store(cache, r->conf, r->key, INT64_MIN, (int64_t)(now_ms + AUTH_CACHE_TTL_MS) - 1);
}
