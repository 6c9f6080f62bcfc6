/* Secret key files (an HS256 JWT key, the peers' shared key): read whole at
 * load, so that a missing or short file is an error at its key. */
#include "config/config.h"
#include "config/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_read_secret_file(struct config_diag *d, const char *owner, const char *path,
                            const struct config_node *n, unsigned char **out, size_t *out_len)
{
    unsigned char buf[1024];
    const char *s;
    size_t len;
    FILE *f;
    int rc = -1;

    if (config_want_string(d, owner, path, n, &s) < 0 ||
        config_want_regular_file(d, owner, path, n, s, "a key file (a regular file)", 0) < 0)
        return -1;
    if (!(f = fopen(s, "r"))) {
        config_diag_error(d, n->line, n->col, "%s: %s: cannot read '%s': %s", owner, path, s,
                          strerror(errno));
        return -1;
    }
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    /* A trailing newline is how editors and `echo` end files, not key. */
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    if (len < 32 || len >= sizeof(buf) - 1)
        config_diag_error(d, n->line, n->col, "%s: %s: '%s' must hold 32 to 1000 bytes (a key "
                          "shorter than its hash is guessable)", owner, path, s);
    else if (!(*out = malloc(len)))
        config_diag_error(d, n->line, n->col, "out of memory");
    else {
        memcpy(*out, buf, len);
        *out_len = len;
        rc = 0;
    }
    explicit_bzero(buf, sizeof(buf));
    return rc;
}
