/* The `admin` block: where the admin API listens and the token that guards
 * its mutating calls. The token file is read here, at load, so a missing or
 * unreadable file is an error at its position, not a surprise at the first
 * `sluice ctl drain`. */
#include "config/config.h"
#include "config/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A token is one line of printable text; anything longer is not a token. */
#define CONFIG_TOKEN_MAX 4096

static bool config_addr_loopback(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && s6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

/* Reads the token file into cfg->admin.token, or reports why not at n. */
static void config_read_token(struct config_diag *d, struct config *cfg,
                              const struct config_node *n, const char *path)
{
    char buf[CONFIG_TOKEN_MAX + 2], shown[96];
    struct stat st;
    ssize_t len = 0, r;
    int fd;

    config_show(shown, sizeof(shown), path);
    /* Non-blocking: opening a FIFO would otherwise wait for a writer, before
     * the check below can refuse it. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        config_diag_error(d, n->line, n->col, "admin.token_file: cannot read '%s': %s",
                          shown, strerror(errno));
        return;
    }
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        config_diag_error(d, n->line, n->col, "admin.token_file: '%s' is not a regular file",
                          shown);
        return;
    }
    while (len < (ssize_t)sizeof(buf) - 1 &&
           (r = read(fd, buf + len, sizeof(buf) - 1 - (size_t)len)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            close(fd);
            config_diag_error(d, n->line, n->col, "admin.token_file: cannot read '%s': %s",
                              shown, strerror(err));
            return;
        }
        len += r;
    }
    close(fd);
    /* A trailing newline is how editors and `echo` end files; it is not part
     * of the token. */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        len--;
    buf[len] = '\0';
    if (len > CONFIG_TOKEN_MAX) {
        config_diag_error(d, n->line, n->col,
                          "admin.token_file: '%s' is longer than %d bytes; is it the token?",
                          shown, CONFIG_TOKEN_MAX);
    } else if (len == 0) {
        config_diag_error(d, n->line, n->col, "admin.token_file: '%s' is empty", shown);
    } else {
        /* It travels in an Authorization header: visible ASCII only. */
        for (ssize_t i = 0; i < len; i++) {
            if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f) {
                config_diag_error(d, n->line, n->col,
                                  "admin.token_file: '%s' must hold one line of printable "
                                  "characters without spaces", shown);
                explicit_bzero(buf, sizeof(buf));
                return;
            }
        }
        cfg->admin.token = config_strdup(d, buf);
        if (st.st_mode & S_IROTH)
            config_diag_warning(d, n->line, n->col,
                                "admin.token_file: '%s' is readable by every user", shown);
    }
    explicit_bzero(buf, sizeof(buf));
}

void config_read_admin(struct config_diag *d, struct config *cfg, const struct config_node *map)
{
    struct conf_admin *a = &cfg->admin;
    const struct config_node *listen, *tf;
    char shown[96];
    const char *s, *why;

    if (config_want_map(d, NULL, "admin", map) < 0)
        return;
    config_schema_check_keys(d, map, "admin", "admin");
    a->enabled = true;

    if ((tf = config_map_get(map, "token_file")) &&
        config_want_string(d, NULL, "admin.token_file", tf, &s) == 0) {
        if (s[0] != '/') {
            /* As for log.access: a relative path would depend on the
             * directory sluice happens to start in. */
            config_diag_error(d, tf->line, tf->col,
                              "admin.token_file: expected an absolute path, got '%s'",
                              config_show(shown, sizeof(shown), s));
        } else {
            a->token_file = config_strdup(d, s);
            config_read_token(d, cfg, tf, s);
        }
    }

    if (!(listen = config_map_get(map, "listen"))) {
        config_missing(d, "admin", map, "listen");
        return;
    }
    if (config_want_string(d, NULL, "admin.listen", listen, &s) < 0)
        return;
    config_pos_set(&a->listen_pos, cfg, listen);
    config_show(shown, sizeof(shown), s);
    if (addr_parse(s, &a->listen, &why) < 0) {
        config_diag_error(d, listen->line, listen->col, "admin.listen: bad address '%s': %s",
                          shown, why);
        return;
    }
    if (addr_port(&a->listen) == 0) {
        config_diag_error(d, listen->line, listen->col,
                          "admin.listen: port 0 is refused; give the port to listen on");
        return;
    }
    a->listen_text = config_strdup(d, s);
    a->loopback = config_addr_loopback(&a->listen);
    /* Off loopback, anyone who can reach the port could drain every
     * backend: refuse to start without a token rather than warn. */
    if (!a->loopback && !tf)
        config_diag_error(d, listen->line, listen->col,
                          "admin.listen: %s is not a loopback address; set admin.token_file "
                          "so that changes need a token", shown);
}

void config_free_admin(struct config *cfg)
{
    struct conf_admin *a = &cfg->admin;

    if (a->token) {
        explicit_bzero(a->token, strlen(a->token));
        free(a->token);
    }
    free(a->token_file);
    free(a->listen_text);
    memset(a, 0, sizeof(*a));
}
