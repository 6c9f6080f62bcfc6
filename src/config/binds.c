/* config_check_binds(): try every listener's address before starting, so a
 * port held by another program is reported at its `bind` line, not as a
 * failure half-way through startup. */
#include "config/config.h"
#include "net/listener.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Binds the way a worker will (SO_REUSEADDR + SO_REUSEPORT, and
 * IP_FREEBIND with `freebind`), so only a
 * socket that would really stop sluice counts: a running sluice of the same
 * user shares the port, anything else holding it does not. */
static int config_try_bind(const struct conf_listener *l)
{
    int type = listener_datagram(l->mode) ? SOCK_DGRAM : SOCK_STREAM;
    int one = 1, fd, err = 0;

    fd = socket(l->bind.ss.ss_family, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        (l->freebind && listener_set_freebind(fd, l->bind.ss.ss_family) < 0) ||
        bind(fd, (const struct sockaddr *)&l->bind.ss, l->bind.len) < 0)
        err = errno;
    close(fd);
    return err;
}

int config_check_binds(const struct config *cfg, FILE *diag)
{
    int errors = 0;

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct conf_listener *l = &cfg->listeners[i];
        int err = config_try_bind(l);

        if (!err)
            continue;
        errors++;
        if (diag)
            fprintf(diag, "%s:%d:%d: error: listener '%s': cannot bind %s: %s%s\n",
                    l->bind_pos.file ? l->bind_pos.file : cfg->file, l->bind_pos.line,
                    l->bind_pos.col, l->name ? l->name : "?",
                    l->bind_text ? l->bind_text : "?", strerror(err), listener_bind_hint(err));
    }
    return errors;
}
